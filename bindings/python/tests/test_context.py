"""The call context: connection, metadata, deadline; server and client middleware."""

import asyncio

import pytest

import qtalk_rs


async def test_handler_sees_address_metadata_and_deadline(server):
    seen = {}

    async def whoami(call):
        seen["remote"] = call.connection.remote_addr
        seen["transport"] = call.connection.transport
        seen["metadata"] = call.metadata
        seen["remaining"] = call.remaining
        return "ok"

    server.mux.handle("WhoAmI", whoami)
    async with qtalk_rs.connect(server.address, metadata={"x-app": "tests"}) as p:
        assert await p.call("WhoAmI", metadata={"x-request-id": "42"}, timeout=30) == "ok"
        host, port = seen["remote"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert seen["transport"] == "tcp"
        assert seen["metadata"] == {"x-app": "tests", "x-request-id": "42"}
        # The deadline travelled as the time left: a little under 30 s on arrival.
        assert 25 < seen["remaining"] <= 30
        assert await p.call("WhoAmI") == "ok"
        assert seen["remaining"] is None
        assert seen["metadata"] == {"x-app": "tests"}
        assert p.connection.transport == "tcp"


async def test_deadline_runs_out_at_the_handler(server, peer):
    left = asyncio.Queue()

    async def slow(call):
        left.put_nowait(call.remaining)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            left.put_nowait(call.remaining)
            raise

    server.mux.handle("Slow", slow)
    with pytest.raises(qtalk_rs.TimeoutError):
        await peer.call("Slow", timeout=0.3)
    first = await asyncio.wait_for(left.get(), 5)
    assert 0 < first <= 0.3
    # The caller gave up at its deadline: the handler was cancelled, with no time left.
    assert await asyncio.wait_for(left.get(), 5) == 0.0


async def test_tls_client_certificate(tmp_path):
    server_cert, server_key = qtalk_rs.self_signed(["localhost", "127.0.0.1"])
    client_cert, client_key = qtalk_rs.self_signed(["client.example"])
    files = {}
    for name, text in [("server.pem", server_cert), ("server.key", server_key),
                       ("client.pem", client_cert), ("client.key", client_key)]:
        (tmp_path / name).write_text(text)
        files[name] = str(tmp_path / name)

    seen = []

    async def peer_cert(call):
        seen.append(call.connection.peer_certificate)
        return call.connection.transport

    mux = qtalk_rs.RespondMux()
    mux.handle("PeerCert", peer_cert)
    async with qtalk_rs.start_server("tls://127.0.0.1:0", mux, cert=files["server.pem"],
                                     key=files["server.key"],
                                     client_ca=files["client.pem"]) as srv:
        async with qtalk_rs.connect(srv.address, ca=files["server.pem"],
                                    cert=files["client.pem"], key=files["client.key"]) as p:
            assert await p.call("PeerCert") == "tls"
        der = seen[0]
        assert isinstance(der, bytes) and len(der) > 100
        # The DER of the client's certificate (the PEM's base64 body).
        import base64
        body = "".join(line for line in client_cert.splitlines() if "-----" not in line)
        assert der == base64.b64decode(body)
        # Without a client certificate the server refuses the connection.
        with pytest.raises((OSError, qtalk_rs.QtalkError)):
            async with qtalk_rs.connect(srv.address, ca=files["server.pem"], timeout=5) as p:
                await p.call("PeerCert", timeout=5)
    with pytest.raises(ValueError, match="client_ca"):
        qtalk_rs.start_server("tcp://127.0.0.1:0", mux, client_ca=files["client.pem"])


async def test_auth_middleware_refuses_a_call():
    ran = []

    async def secret(call):
        ran.append(call.selector)
        return "the secret"

    def auth(info):
        if info.metadata.get("authorization") != "Bearer s3cr3t":
            raise qtalk_rs.RemoteError(f"unauthenticated: {info.selector}")

    seen_by_async = []

    async def audit(info):
        seen_by_async.append((info.selector, info.connection.transport, info.remaining))

    mux = qtalk_rs.RespondMux()
    mux.handle("Secret", secret)
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", mux, middleware=[auth, audit]) as srv:
        async with qtalk_rs.connect(srv.address) as p:
            with pytest.raises(qtalk_rs.RemoteError) as info:
                await p.call("Secret")
            assert info.value.text == "unauthenticated: /Secret"
            assert ran == [] and seen_by_async == []
            assert await p.call("Secret", metadata={"authorization": "Bearer s3cr3t"}) == \
                "the secret"
            assert ran == ["/Secret"]
            assert seen_by_async == [("/Secret", "tcp", None)]

        # Client middleware adds the token to every call.
        def add_token(selector, metadata):
            metadata["authorization"] = "Bearer s3cr3t"

        async with qtalk_rs.connect(srv.address, middleware=[add_token]) as p:
            assert await p.call("Secret") == "the secret"
            assert await p.caller.call("Secret") == "the secret"

        # Client middleware that raises stops the call before it is sent.
        def no_calls(selector, metadata):
            raise PermissionError(f"not calling {selector}")

        async with qtalk_rs.connect(srv.address, middleware=[no_calls]) as p:
            with pytest.raises(PermissionError, match="not calling Secret"):
                p.call("Secret")
    assert ran == ["/Secret", "/Secret", "/Secret"]
