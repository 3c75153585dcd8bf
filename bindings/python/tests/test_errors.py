import asyncio

import pytest

import qtalk_rs


async def test_remote_error(peer):
    with pytest.raises(qtalk_rs.RemoteError) as info:
        await peer.call("Error", "user error")
    assert info.value.text == "user error [/Error]"
    assert str(info.value) == "remote: user error [/Error]"
    assert isinstance(info.value, qtalk_rs.QtalkError)


async def test_not_found(peer):
    with pytest.raises(qtalk_rs.RemoteError, match="not found: /Nope"):
        await peer.call("Nope")


async def test_arity_as_go(peer):
    with pytest.raises(qtalk_rs.RemoteError) as info:
        await peer.call("Upper", "a", "b")
    assert info.value.text == "fn: expected 1 params, got 2"
    with pytest.raises(qtalk_rs.RemoteError, match="fn: expected 1 params, got 0"):
        await peer.call("Upper")
    with pytest.raises(qtalk_rs.RemoteError, match="expected an array of params, got a string"):
        await peer.call_value("Upper", "not an array")
    # null counts as no params, as in the reference
    with pytest.raises(qtalk_rs.RemoteError, match="fn: expected 1 params, got 0"):
        await peer.call_value("Upper", None)


async def test_handler_exceptions(server, peer):
    async def boom(call):
        raise RuntimeError("it broke")

    async def silent(call):
        raise KeyError

    async def bad_reply(call):
        return object()

    async def wrong_type(call, text):
        return text.upper()

    server.mux.handle("Boom", boom)
    server.mux.handle("Silent", silent)
    server.mux.handle("BadReply", bad_reply)
    server.mux.handle("WrongType", wrong_type)
    with pytest.raises(qtalk_rs.RemoteError, match="^remote: it broke$") as info:
        await peer.call("Boom")
    with pytest.raises(qtalk_rs.RemoteError, match="^remote: KeyError$"):
        await peer.call("Silent")
    with pytest.raises(qtalk_rs.RemoteError, match="cannot send the handler's reply"):
        await peer.call("BadReply")
    with pytest.raises(qtalk_rs.RemoteError, match="has no attribute 'upper'"):
        await peer.call("WrongType", 5)
    # the session survives all of that
    assert await peer.call("Upper", "ok") == "OK"


async def test_bad_values_raise_before_sending(peer):
    with pytest.raises(TypeError, match="cannot send a value of type object"):
        await peer.call("Upper", object())
    with pytest.raises(TypeError, match="cannot send a value of type set"):
        peer.call("Upper", {1, 2})
    with pytest.raises(ValueError, match="out of range"):
        peer.call("Upper", 2**200)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested more than"):
        peer.call("Upper", loop)
    # JSON needs text keys: the codec refuses, the session lives on
    with pytest.raises(qtalk_rs.QtalkError, match="encode"):
        await peer.call("Upper", {1: 2})
    assert await peer.call("Upper", "still fine") == "STILL FINE"


async def test_bad_arguments():
    mux = qtalk_rs.RespondMux()
    for url in ["", "tcp://", "tcp://host", "tcp://h:99999", "quic://h", "ftp://h:1", "tcp://h:1/x"]:
        with pytest.raises(ValueError, match="bad URL"):
            await qtalk_rs.connect(url)
    with pytest.raises(ValueError, match="unknown codec"):
        await qtalk_rs.connect("tcp://127.0.0.1:1", codec="xml")
    with pytest.raises(TypeError, match="RespondMux"):
        await qtalk_rs.start_server("tcp://127.0.0.1:0", {})
    with pytest.raises(OSError):
        await qtalk_rs.connect("tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="is a function"):
        mux.handle("X", 42)
    with pytest.raises(TypeError, match="takes the call first"):
        mux.handle("X", lambda: None)
    with pytest.raises(TypeError, match="keyword-only"):
        mux.handle("X", lambda call, *, k: None)
    mux.handle("X", lambda call: None)
    with pytest.raises(ValueError, match="multiple registrations"):
        mux.handle("X", lambda call: None)


async def test_closed_peer(server):
    p = await qtalk_rs.connect(server.address)
    assert await p.call("Upper", "a") == "A"
    p.close()
    assert p.closed
    with pytest.raises(qtalk_rs.QtalkError):
        await p.call("Upper", "a")
    assert isinstance(await asyncio.wait_for(p.wait_closed(), 5), str)


async def test_server_gone(server):
    p = await qtalk_rs.connect(server.address)
    server.close()
    await asyncio.wait_for(p.wait_closed(), 5)
    with pytest.raises(qtalk_rs.QtalkError):
        await p.call("Upper", "a")
