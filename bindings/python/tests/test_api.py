"""Exceptions per cause, timeouts, Config and Options, callbacks as values, services, logging,
and the URLs connect() takes."""

import asyncio
import builtins
import logging

import pytest

import qtalk_rs


def test_exception_hierarchy():
    for cls in (qtalk_rs.RemoteError, qtalk_rs.SessionClosedError, qtalk_rs.TimeoutError,
                qtalk_rs.RefusedError, qtalk_rs.FrameTooLargeError):
        assert issubclass(cls, qtalk_rs.QtalkError)
    assert issubclass(qtalk_rs.TimeoutError, builtins.TimeoutError)
    assert issubclass(qtalk_rs.SessionClosedError, ConnectionError)
    err = qtalk_rs.RemoteError("boom")
    assert (err.text, err.message, str(err)) == ("boom", "boom", "remote: boom")


async def test_session_closed(server):
    p = await qtalk_rs.connect(server.address)
    assert await p.call("Upper", "a") == "A"
    p.close()
    with pytest.raises(qtalk_rs.SessionClosedError):
        await p.call("Upper", "b")


async def test_session_closed_by_the_other_side(server):
    async def hang(call):
        await asyncio.sleep(30)

    server.mux.handle("Hang", hang)
    p = await qtalk_rs.connect(server.address)
    pending = asyncio.create_task(p.call("Hang"))
    assert await p.call("Upper", "a") == "A"
    server.close()
    with pytest.raises(qtalk_rs.SessionClosedError):
        await asyncio.wait_for(pending, 10)
    p.close()


async def test_call_timeout(server, peer):
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(call):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server.mux.handle("Slow", slow)
    with pytest.raises(qtalk_rs.TimeoutError, match="timed out"):
        await peer.call("Slow", timeout=0.2)
    assert started.is_set()
    await asyncio.wait_for(cancelled.wait(), 5)
    assert await peer.call("Upper", "x", timeout=5) == "X"
    with pytest.raises(ValueError, match="timeout"):
        peer.call("Upper", "x", timeout=-1)


async def test_connect_timeout():
    # A listening socket that never answers the WebSocket handshake.
    async def silent(reader, writer):
        await reader.read()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(qtalk_rs.TimeoutError, match="timed out"):
            await qtalk_rs.connect(f"ws://127.0.0.1:{port}", timeout=0.2)
    finally:
        srv.close()


async def test_refused_open():
    mux = qtalk_rs.RespondMux()
    gate = asyncio.Event()

    async def hold(call):
        await gate.wait()
        return "held"

    mux.handle("Hold", hold)
    config = qtalk_rs.Config(max_channels=2, open_queue=1, accept_timeout=0.3)
    srv = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux, config=config)
    try:
        async with qtalk_rs.connect(srv.address, options=qtalk_rs.Options(spare_channels=0)) as p:
            held = [asyncio.create_task(p.call("Hold")) for _ in range(2)]
            await asyncio.sleep(0.1)
            with pytest.raises(qtalk_rs.RefusedError):
                await asyncio.gather(*(p.call("Hold", timeout=5) for _ in range(3)))
            gate.set()
            assert await asyncio.gather(*held) == ["held", "held"]
    finally:
        gate.set()
        srv.close()


async def test_frame_too_large(server):
    async def big(call):
        return "x" * 10_000

    server.mux.handle("Big", big)
    options = qtalk_rs.Options(max_frame=1000)
    async with qtalk_rs.connect(server.address, options=options) as p:
        assert await p.call("Upper", "small") == "SMALL"
        with pytest.raises(qtalk_rs.FrameTooLargeError):
            await p.call("Big")


def test_config_and_options_are_checked():
    c = qtalk_rs.Config(window=1 << 20, max_packet=1 << 16, max_channels=10)
    assert (c.window, c.max_packet, c.max_channels) == (1 << 20, 1 << 16, 10)
    o = qtalk_rs.Options(max_frame=1 << 20, header_timeout=5)
    assert (o.max_frame, o.header_timeout) == (1 << 20, 5.0)
    for bad in (dict(window=0), dict(max_channels=0), dict(max_packet=1),
                dict(open_timeout=-1), dict(memory_budget=10)):
        with pytest.raises(ValueError):
            qtalk_rs.Config(**bad)
    for bad in (dict(max_frame=0), dict(header_timeout=0), dict(args_grace=-1)):
        with pytest.raises(ValueError):
            qtalk_rs.Options(**bad)
    with pytest.raises(TypeError):
        qtalk_rs.Config(1)  # keyword-only
    with pytest.raises(TypeError):
        qtalk_rs.Config(windw=1)  # unknown


async def test_server_limits_are_checked():
    with pytest.raises(ValueError, match="max_calls"):
        qtalk_rs.start_server("tcp://127.0.0.1:0", qtalk_rs.RespondMux(), max_calls=0)


async def test_callbacks_as_values(server, peer):
    async def subscribe(call, name, notify):
        assert isinstance(notify, qtalk_rs.Callback)
        first = await notify(f"hello {name}")
        second = await notify("again")
        return [first, second]

    server.mux.handle("Subscribe", subscribe)
    seen = []

    async def on_event(call, text):
        seen.append(text)
        return len(seen)

    assert await peer.call("Subscribe", "ann", on_event) == [1, 2]
    assert seen == ["hello ann", "again"]

    # Registered once, sent many times, unregistered when done.
    cb = peer.callback(lambda call, text: text.upper())
    assert await peer.call("Subscribe", "bob", cb) == ["HELLO BOB", "AGAIN"]
    assert cb.unregister()
    assert not cb.unregister()
    with pytest.raises(qtalk_rs.RemoteError, match="not found"):
        await peer.call("Subscribe", "carl", cb)


async def test_a_callback_in_a_reply(server, peer):
    async def counter(call, start):
        n = [start]

        def bump(call):
            n[0] += 1
            return n[0]

        return {"bump": bump}

    server.mux.handle("Counter", counter)
    got = await peer.call("Counter", 10)
    assert await got["bump"]() == 11
    assert await got["bump"]() == 12


async def test_functions_need_a_session():
    with pytest.raises(TypeError, match="callback"):
        qtalk_rs.encode({"f": lambda: 1})


class Text(qtalk_rs.Service):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def upper(self, text: str) -> str:
        return self.prefix + text.upper()

    @qtalk_rs.selector("Find")
    def lookup(self, word: str) -> int:
        if word == "one":
            return 1
        raise qtalk_rs.RemoteError(f"unknown word {word!r}")

    async def to_words(self, text: str, limit: int = 10) -> list:
        return text.split()[:limit]

    async def whoami(self, call: qtalk_rs.Call) -> str:
        return call.selector

    def _private(self) -> None:
        raise AssertionError("not a method of the service")


async def test_class_based_service(server, peer):
    server.mux.handle("text/", Text("> "))
    text = Text.client(peer, prefix="text/")
    assert await text.upper("hello") == "> HELLO"
    assert await text.lookup("one") == 1
    with pytest.raises(qtalk_rs.RemoteError) as info:
        await text.lookup("two")
    assert info.value.text == "unknown word 'two'"
    assert await text.to_words("a b c", 2) == ["a", "b"]
    assert await text.whoami() == "/text/Whoami"
    assert await peer.call("text/ToWords", "x y") == ["x", "y"]
    with pytest.raises(qtalk_rs.RemoteError, match="not found"):
        await peer.call("text/_private")
    with pytest.raises(AttributeError):
        text.nothing  # noqa: B018
    assert sorted(Text.__qtalk_selectors__) == ["Find", "ToWords", "Upper", "Whoami"]
    mux = Text("").into_mux()
    assert isinstance(mux, qtalk_rs.RespondMux)


def test_service_selectors_must_differ():
    with pytest.raises(TypeError, match="share the selector"):
        class Clash(qtalk_rs.Service):  # noqa: F841
            def upper(self) -> None: ...

            @qtalk_rs.selector("Upper")
            def other(self) -> None: ...


async def test_handler_exceptions_are_logged_at_error(server, peer, caplog):
    async def broken(call):
        raise KeyError("missing")

    async def refuses(call):
        raise qtalk_rs.RemoteError("no, on purpose")

    server.mux.handle("Broken", broken)
    server.mux.handle("Refuses", refuses)
    with caplog.at_level(logging.ERROR, logger="qtalk_rs"):
        with pytest.raises(qtalk_rs.RemoteError, match="missing"):
            await peer.call("Broken")
        with pytest.raises(qtalk_rs.RemoteError) as info:
            await peer.call("Refuses")
    assert info.value.text == "no, on purpose"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "/Broken" in errors[0].getMessage() and errors[0].exc_info is not None


async def test_tracing_reaches_logging():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("qtalk_rs")
    handler = Collect(level=logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        # The level is read when a server or peer starts.
        async with qtalk_rs.start_server("tcp://127.0.0.1:0", qtalk_rs.RespondMux()) as srv:
            async with qtalk_rs.connect(srv.address):
                pass
        for _ in range(500):
            if any(r.name.startswith("qtalk_rs.qtalk_mux") for r in records):
                break
            await asyncio.sleep(0.01)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
        # Back to the default for the rest of the suite.
        async with qtalk_rs.start_server("tcp://127.0.0.1:0", qtalk_rs.RespondMux()):
            pass
    mux_records = [r for r in records if r.name.startswith("qtalk_rs.qtalk_mux")]
    assert mux_records, [r.name for r in records]
    assert "session ended" in " ".join(r.getMessage() for r in mux_records)


@pytest.mark.parametrize("url", ["tcp://h", "tcp://:9", "tcp://h:x", "quic://h", "ftp://h:1",
                                 "unix:", "tcp://h:1/x", "unix://relative"])
def test_bad_urls(url):
    with pytest.raises(ValueError, match="bad URL"):
        qtalk_rs.connect(url)


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9", "tcp://[::1]:9/", "localhost:9",
                                 "ws://h", "unix:///tmp/s", "wss://h", "quic://h:1",
                                 "udp://h:1", "tls://h:1", "unix:s"])
def test_good_urls(url):
    qtalk_rs.connect(url).close()  # parsed; never awaited, so never connected
