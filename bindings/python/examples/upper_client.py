"""The ten-line client: calls Upper and Error on 127.0.0.1:9999 (the Rust upper_server
example, the Go seed, or upper_server.py here)."""

import asyncio
import sys

import qtalk_rs


async def main(url: str) -> None:
    async with qtalk_rs.connect(url, timeout=5) as peer:
        print(await peer.call("Upper", "hello world", timeout=5))
        try:
            await peer.call("Error", "user error")
        except qtalk_rs.RemoteError as err:
            print(err)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:9999"))
