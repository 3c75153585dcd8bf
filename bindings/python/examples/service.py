"""A class-based service, a callback passed as a value, a stream, and a TaskGroup of calls,
all in one process."""

import asyncio
from typing import Any, List

import qtalk_rs


class Text(qtalk_rs.Service):
    async def upper(self, text: str) -> str:
        return text.upper()

    @qtalk_rs.selector("Words")
    async def split_words(self, text: str) -> List[str]:
        return text.split()

    async def watch(self, call: qtalk_rs.Call, n: int, notify: qtalk_rs.Callback) -> int:
        """Calls the caller's function back n times."""
        total = 0
        for i in range(n):
            total += await notify(i)
        return total

    async def count(self, call: qtalk_rs.Call, n: int) -> None:
        """Streams 0 .. n-1 after the reply."""
        stream = await call.continue_with(n)
        for i in range(n):
            await stream.send(i)
        await stream.close_write()


async def main() -> None:
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", Text().into_mux()) as server:
        async with qtalk_rs.connect(server.address) as peer:
            text: Any = Text.client(peer)
            print(await text.upper("hello"), await text.split_words("a b c"))

            def on_tick(call: qtalk_rs.Call, i: int) -> int:
                return i * 10

            print("watched:", await peer.call("Watch", 3, on_tick))

            response = await peer.call_raw("Count", 3)
            print("streamed:", [v async for v in response])

            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(peer.call("Upper", str(i))) for i in range(100)]
            print(len([t.result() for t in tasks]), "calls in a TaskGroup")


if __name__ == "__main__":
    asyncio.run(main())
