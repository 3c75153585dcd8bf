import asyncio

import qtalk_rs


async def test_server_calls_back_client(server):
    async def greet(call, name):
        # call.caller reaches the peer that called: here the client's mux answers
        suffix = await call.caller.call("Suffix", name)
        return f"hello {name}{suffix}"

    server.mux.handle("Greet", greet)
    async with qtalk_rs.connect(server.address) as p:
        p.handle("Suffix", lambda call, name: "!" * len(name))
        assert await p.call("Greet", "bob") == "hello bob!!!"


async def test_callbacks_both_ways_nested(server):
    """client -> server A -> client B -> server C, each on its own channel."""

    async def a(call, n):
        return await call.caller.call("B", n + 1)

    async def c(call, n):
        return n * 10

    server.mux.handle("A", a)
    server.mux.handle("C", c)
    client_mux = qtalk_rs.RespondMux()

    async def b(call, n):
        return await call.caller.call("C", n + 1)

    client_mux.handle("B", b)
    async with qtalk_rs.connect(server.address, mux=client_mux) as p:
        assert p.mux is client_mux
        assert await p.call("A", 1) == 30
        results = await asyncio.gather(*(p.call("A", i) for i in range(20)))
        assert results == [(i + 2) * 10 for i in range(20)]


async def test_callback_error_propagates(server):
    async def ask(call):
        try:
            await call.caller.call("Missing")
        except qtalk_rs.RemoteError as e:
            return e.text

    server.mux.handle("Ask", ask)
    async with qtalk_rs.connect(server.address) as p:
        assert await p.call("Ask") == "not found: /Missing"
