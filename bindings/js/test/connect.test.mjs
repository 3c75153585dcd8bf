// connect(): WebTransport where the runtime has it, else (or when it fails) the next URL; Node's
// WebSocket client and listen().
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connect, listen, hexBytes, ConnectError, QmuxSession, WebTransportSession, Peer, RespondMux, func, cbor,
} from "../dist/node.js";
import { webTransportPair } from "./wtfake.mjs";

const upper = () => new RespondMux().handle("Upper", func((s) => s.toUpperCase()));

test("WebTransport URLs are skipped where there is no WebTransport, and the next URL is used", async () => {
  const server = await listen("ws://127.0.0.1:0", { mux: upper() });
  try {
    const peer = await connect(["https://127.0.0.1:4433/", server.url]);
    assert.ok(peer.session instanceof QmuxSession);
    assert.equal(await peer.call("Upper", ["ws"]), "WS");
    peer.close();
    await assert.rejects(connect("https://127.0.0.1:4433/"), (e) => e instanceof ConnectError && /no WebTransport/.test(e.message));
  } finally {
    await server.close();
  }
});

test("WebTransport where it works; a WebTransport that fails falls back to WebSocket", async () => {
  const [client, serverSide] = webTransportPair();
  new Peer(new WebTransportSession(serverSide), cbor, { mux: upper() });
  let options;
  class WorkingWebTransport {
    constructor(url, opts) {
      options = opts;
      return client;
    }
  }
  const hash = "ab".repeat(32);
  const peer = await connect(["https://example.test/", "ws://127.0.0.1:1/"], {
    codec: "cbor",
    WebTransport: WorkingWebTransport,
    serverCertificateHashes: [hash],
  });
  assert.ok(peer.session instanceof WebTransportSession);
  assert.equal(await peer.call("Upper", ["wt"]), "WT");
  assert.deepEqual(options.serverCertificateHashes, [{ algorithm: "sha-256", value: hexBytes(hash) }]);
  peer.close();

  const server = await listen("ws://127.0.0.1:0", { mux: upper() });
  class FailingWebTransport {
    ready = Promise.reject(new Error("handshake failed"));
    closed = new Promise(() => {});
    constructor() {
      this.ready.catch(() => {});
    }
  }
  try {
    const p = await connect(["https://example.test/", server.url], { WebTransport: FailingWebTransport });
    assert.ok(p.session instanceof QmuxSession);
    assert.equal(await p.call("Upper", ["fallback"]), "FALLBACK");
    p.close();
  } finally {
    await server.close();
  }
  await assert.rejects(connect(["ws://127.0.0.1:1/"], { timeout: 5000 }), ConnectError);
});

test("hexBytes takes the forms certificate hashes are printed in", () => {
  assert.deepEqual([...hexBytes("AB:cd:01")], [0xab, 0xcd, 0x01]);
  assert.deepEqual([...hexBytes("abcd01")], [0xab, 0xcd, 0x01]);
  assert.throws(() => hexBytes("abc"), RangeError);
});

test("listen: verifyOrigin refuses handshakes from other origins", async () => {
  const seen = [];
  const server = await listen("ws://127.0.0.1:0", {
    mux: upper(),
    verifyOrigin: (o) => (seen.push(o), o === "http://trusted.example/"),
  });
  try {
    await assert.rejects(connect(server.url), ConnectError);
    assert.deepEqual(seen, [server.url.replace("ws:", "http:")]);
  } finally {
    await server.close();
  }
});
