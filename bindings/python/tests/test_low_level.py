"""Low-level handlers, h(responder, call), as Go's rpc.HandlerFunc."""

import asyncio

import pytest

import qtalk_rs


async def test_the_argument_value_as_sent(server, peer):
    responded: asyncio.Queue = asyncio.Queue()

    async def echo(responder, call):
        value = await call.receive()
        before = responder.responded
        await responder.ret(value)
        responded.put_nowait((before, responder.responded))

    server.mux.handle("Echo", qtalk_rs.HandlerFunc(echo))
    for v in [100, True, "hello", {"foo": "bar"}, [1, 2, 3], None]:
        assert await peer.call_value("Echo", v) == v
        # The handler's check, made after it answered, is reported here.
        assert await asyncio.wait_for(responded.get(), 5) == (False, True)


async def test_errors_multi_values_and_fallbacks(server, peer):
    async def fail(responder, call):
        await call.receive()
        await responder.error("no way")

    second_answer: asyncio.Queue = asyncio.Queue()

    async def two(responder, call):
        await call.receive()
        await responder.ret(1, "two")
        try:
            await responder.ret(3)
            second_answer.put_nowait("answered twice")
        except qtalk_rs.QtalkError as e:
            second_answer.put_nowait(str(e))

    def returns(responder, call):
        # Sync, never answers itself: what it returns is the reply.
        return "returned"

    async def raises(responder, call):
        raise RuntimeError("raised")

    mux = server.mux
    mux.handle("Fail", qtalk_rs.HandlerFunc(fail))
    mux.handle("Two", qtalk_rs.HandlerFunc(two))
    mux.handle("Returns", qtalk_rs.HandlerFunc(returns))
    mux.handle("Raises", qtalk_rs.HandlerFunc(raises))
    with pytest.raises(qtalk_rs.RemoteError, match="no way"):
        await peer.call_value("Fail", 0)
    resp = await peer.call_raw("Two")
    assert [v async for v in resp] == [1, "two"]
    # The handler's second answer, after the first went out, was refused.
    assert await asyncio.wait_for(second_answer.get(), 5) == "rpc: already responded"
    assert await peer.call_value("Returns", 0) == "returned"
    with pytest.raises(qtalk_rs.RemoteError, match="raised"):
        await peer.call_value("Raises", 0)
    with pytest.raises(TypeError, match="HandlerFunc takes a function"):
        qtalk_rs.HandlerFunc(42)


async def test_continue_and_call_back(server, peer):
    async def relay(responder, call):
        # Calls the caller back, then streams what it answered.
        value = await call.receive()
        reply = await call.caller.call_value("Back", value)
        stream = await responder.continue_with(reply)
        async for v in stream:
            await stream.send(v)
        await stream.close_write()

    server.mux.handle("Relay", qtalk_rs.HandlerFunc(relay))
    peer.handle("Back", qtalk_rs.HandlerFunc(
        lambda responder, call: _echo_back(responder, call)))
    resp = await peer.call_raw("Relay")
    assert resp.continued
    assert await resp.receive() == ["back", []]
    await resp.send("x")
    assert await resp.receive() == "x"
    await resp.close_write()
    assert [v async for v in resp] == []


async def _echo_back(responder, call):
    await responder.ret(["back", await call.receive()])
