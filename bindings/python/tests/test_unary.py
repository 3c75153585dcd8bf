import asyncio

import pytest

import qtalk_rs

VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.25,
    "",
    "héllo ✓",
    [],
    [1, "two", [3.0, None]],
    {},
    {"a": 1, "b": {"c": [True, None]}},
]


async def test_upper(peer):
    assert await peer.call("Upper", "hello world") == "HELLO WORLD"


async def test_selector_forms(peer):
    assert await peer.call("/Upper", "x") == "X"


@pytest.mark.parametrize("codec", ["json", "cbor"])
async def test_values_round_trip(codec):
    mux = qtalk_rs.RespondMux()

    async def echo(call, v):
        return v

    mux.handle("Echo", echo)
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", mux, codec=codec) as srv:
        async with qtalk_rs.connect(srv.address, codec=codec) as p:
            assert p.codec == codec
            for v in VALUES:
                got = await p.call("Echo", v)
                assert got == v and type(got) is type(v), (v, got)
            # tuples go as arrays and come back as lists
            assert await p.call("Echo", (1, 2)) == [1, 2]
            if codec == "cbor":
                assert await p.call("Echo", b"\x00\xff") == b"\x00\xff"
                assert await p.call("Echo", {1: "int key"}) == {1: "int key"}
            else:
                # JSON has no byte strings: bytes go as base64 text, as Go's []byte does.
                assert await p.call("Echo", b"\x00\xff") == "AP8="


async def test_sync_handler_and_params(server, peer):
    def add(call, a, b=10):
        return a + b

    async def nothing(call):
        pass

    async def many(call, *rest):
        return len(rest)

    server.mux.handle("Add", add)
    server.mux.handle("Nothing", nothing)
    server.mux.handle("Many", many)
    assert await peer.call("Add", 1, 2) == 3
    assert await peer.call("Add", 1) == 11
    assert await peer.call("Nothing") is None
    assert await peer.call("Many") == 0
    assert await peer.call("Many", 1, 2, 3) == 3


async def test_decorator(server, peer):
    @qtalk_rs.handler(server.mux, "Twice")
    async def twice(call, x):
        return x * 2

    assert await twice(None, 2) == 4
    assert await peer.call("Twice", 21) == 42


async def test_concurrent_calls(server, peer):
    async def slow(call, i):
        await asyncio.sleep(0.01)
        return i

    server.mux.handle("Slow", slow)
    got = await asyncio.gather(*(peer.call("Slow", i) for i in range(50)))
    assert got == list(range(50))


async def test_transports(tmp_path):
    mux = qtalk_rs.RespondMux()
    mux.handle("Upper", lambda call, s: s.upper())
    for url in ["ws://127.0.0.1:0", f"unix://{tmp_path}/q.sock"]:
        async with qtalk_rs.start_server(url, mux) as srv:
            assert srv.address.split(":")[0] == url.split(":")[0]
            async with qtalk_rs.connect(srv.address) as p:
                assert await p.call("Upper", url) == url.upper()


def test_encode_decode():
    assert qtalk_rs.encode({"b": 1, "a": [1, 2.5, None]}) == b'{"a":[1,2.5,null],"b":1}\n'
    assert qtalk_rs.encode({"a": 1}, "cbor") == b"\xa1aa\x01"
    assert qtalk_rs.decode(b"\xa1aa\x01", "cbor") == {"a": 1}
    assert qtalk_rs.decode(b'[1, "x"]') == [1, "x"]
