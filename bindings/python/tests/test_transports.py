"""Every transport connect() and start_server() take, TLS and QUIC included."""

import pytest

import qtalk_rs
from conftest import upper_mux


@pytest.fixture
def identity(tmp_path):
    """A self-signed certificate for localhost, written to files: (cert path, key path)."""
    cert, key = qtalk_rs.self_signed(["localhost", "127.0.0.1"])
    assert "BEGIN CERTIFICATE" in cert and "PRIVATE KEY" in key
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    return str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")


@pytest.mark.parametrize("scheme", ["tcp", "ws", "unix"])
async def test_plain_transports(scheme, tmp_path):
    url = {"tcp": "tcp://127.0.0.1:0", "ws": "ws://127.0.0.1:0",
           "unix": f"unix://{tmp_path}/q.sock"}[scheme]
    async with qtalk_rs.start_server(url, upper_mux()) as srv:
        assert srv.address.startswith(scheme + ":")
        async with qtalk_rs.connect(srv.address, codec="json") as p:
            assert await p.call("Upper", scheme) == scheme.upper()


@pytest.mark.parametrize("scheme", ["tls", "wss", "quic"])
@pytest.mark.parametrize("codec", ["json", "cbor"])
async def test_secure_transports(scheme, codec, identity):
    cert, key = identity
    srv = await qtalk_rs.start_server(f"{scheme}://127.0.0.1:0", upper_mux(), codec=codec,
                                      cert=cert, key=key)
    async with srv:
        port = srv.address.rsplit(":", 1)[1]
        url = f"{scheme}://localhost:{port}"
        # Trusting the certificate itself.
        async with qtalk_rs.connect(url, codec=codec, ca=cert) as p:
            assert await p.call("Upper", "secure") == "SECURE"
            with pytest.raises(qtalk_rs.RemoteError, match="boom"):
                await p.call("Error", "boom")
        # Not checking it.
        async with qtalk_rs.connect(url, codec=codec, insecure=True) as p:
            assert await p.call("Upper", "insecure") == "INSECURE"
        # The system's roots do not know a self-signed certificate.
        with pytest.raises(OSError, match="certificate|UnknownIssuer"):
            await qtalk_rs.connect(url, codec=codec)


async def test_a_secure_server_needs_a_certificate(identity):
    cert, key = identity
    with pytest.raises(ValueError, match="needs cert= and key="):
        await qtalk_rs.start_server("quic://127.0.0.1:0", upper_mux())
    with pytest.raises(ValueError, match="apply to tls://"):
        await qtalk_rs.start_server("tcp://127.0.0.1:0", upper_mux(), cert=cert, key=key)
    with pytest.raises(ValueError, match="both"):
        await qtalk_rs.start_server("tls://127.0.0.1:0", upper_mux(), cert=cert)
    with pytest.raises(ValueError, match="not both"):
        await qtalk_rs.connect("tls://localhost:1", ca=cert, insecure=True)
    with pytest.raises(OSError):
        await qtalk_rs.start_server("tls://127.0.0.1:0", upper_mux(), cert=key, key=key)
