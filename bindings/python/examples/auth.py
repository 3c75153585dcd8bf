"""A service behind an authentication hook, a client whose middleware adds the token, and
what a handler knows of its call (metadata, deadline, connection)."""

import asyncio
from typing import Dict

import qtalk_rs

TOKEN = "s3cr3t"


def auth(info: qtalk_rs.CallInfo) -> None:
    """Server middleware: refuses calls without the token."""
    if info.metadata.get("authorization") != f"Bearer {TOKEN}":
        raise qtalk_rs.RemoteError("unauthenticated")


async def whoami(call: qtalk_rs.Call) -> Dict[str, object]:
    return {
        "address": call.connection.remote_addr,
        "request": call.metadata.get("x-request-id"),
        "seconds left": round(call.remaining or 0),
    }


def add_token(selector: str, metadata: Dict[str, str]) -> None:
    """Client middleware: every call carries the token."""
    metadata["authorization"] = f"Bearer {TOKEN}"


async def main() -> None:
    mux = qtalk_rs.RespondMux()
    mux.handle("WhoAmI", whoami)
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", mux, middleware=[auth]) as server:
        async with qtalk_rs.connect(server.address) as anonymous:
            try:
                await anonymous.call("WhoAmI")
            except qtalk_rs.RemoteError as err:
                print("without the token:", err)
        async with qtalk_rs.connect(server.address, middleware=[add_token]) as peer:
            print(await peer.call("WhoAmI", timeout=10, metadata={"x-request-id": "42"}))


if __name__ == "__main__":
    asyncio.run(main())
