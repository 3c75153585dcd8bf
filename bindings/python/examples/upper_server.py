"""Serves Upper and Error on 127.0.0.1:9999, as the Rust upper_server example does."""

import asyncio
import sys

import qtalk_rs

mux = qtalk_rs.RespondMux()


async def upper(call: qtalk_rs.Call, text: str) -> str:
    return text.upper()


def error(call: qtalk_rs.Call, text: str) -> None:  # sync handlers run in the executor
    # RemoteError answers with an error on purpose (any other exception is logged too).
    raise qtalk_rs.RemoteError(f"{text} [{call.selector}]")


mux.handle("Upper", upper)
mux.handle("Error", error)

if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:9999"
    asyncio.run(qtalk_rs.serve(url, mux, options=qtalk_rs.Options(header_timeout=10)))
