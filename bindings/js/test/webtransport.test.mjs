// The QUIC mapping on WebTransport streams, over an in-memory WebTransport pair (Node has no
// WebTransport; the browser tests run the same code against the Rust server): the opener's
// `!`, FIN for EOF, code 42 for stopping and closing, and RPC on top.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebTransportSession, Peer, json, cbor } from "../dist/index.js";
import { service, callbacks, runCheck, bytesCheck, randomBytes } from "../dist/interop.js";
import { webTransportPair } from "./wtfake.mjs";
import { settle } from "./helpers.mjs";

async function readAll(ch) {
  const parts = [];
  for (;;) {
    const c = await ch.read();
    if (c === null) return Buffer.concat(parts);
    parts.push(c);
  }
}

test("the opener announces a stream with `!`, which the acceptor drops; EOF is FIN", async () => {
  const [wa, wb] = webTransportPair();
  const a = new WebTransportSession(wa);
  const b = new WebTransportSession(wb);
  const ch = await a.open();
  const accepting = b.accept();
  await ch.write(new TextEncoder().encode("hello"));
  await ch.closeWrite();
  const other = await accepting;
  assert.equal(new TextDecoder().decode(await readAll(other)), "hello");
  const { out } = wa.streams[0];
  assert.equal(out.bytes.toString(), "!hello");
  assert.equal(out.fin, true);
  // The other way: no announcement from the acceptor.
  await other.write(new TextEncoder().encode("back"));
  await other.closeWrite();
  assert.equal(new TextDecoder().decode(await readAll(ch)), "back");
  assert.equal(wb.streams[0].out.bytes.toString(), "back");
  a.close();
});

test("close stops the peer's sending with code 42 and finishes ours; the peer sees it closed", async () => {
  const [wa, wb] = webTransportPair();
  const a = new WebTransportSession(wa);
  const b = new WebTransportSession(wb);
  const ch = await a.open();
  await ch.write(new TextEncoder().encode("x"));
  const other = await b.accept();
  assert.equal(new TextDecoder().decode(await other.read()), "x");
  ch.close();
  await other.peerClosed;
  const { out, back } = wa.streams[0];
  assert.equal(back.stopCode, 42);
  assert.equal(out.fin, true);
  assert.equal(await other.read(), null);
  await assert.rejects(other.write(new Uint8Array(1)));
  a.close();
});

test("a stream that ends before its `!` is an empty channel", async () => {
  const [wa, wb] = webTransportPair();
  const b = new WebTransportSession(wb);
  const s = await wa.createBidirectionalStream(); // raw: no announcement
  await s.writable.getWriter().close();
  const ch = await b.accept();
  assert.equal(await ch.read(), null);
  b.close();
});

test("closing the session uses code 42 and the reason `close connection`", async () => {
  const [wa, wb] = webTransportPair();
  const a = new WebTransportSession(wa);
  const b = new WebTransportSession(wb);
  const accepting = b.accept();
  a.close();
  assert.deepEqual(await wa.closed, { closeCode: 42, reason: "close connection", by: "local" });
  assert.equal(await a.closed, undefined);
  assert.equal(await accepting, null);
  await assert.rejects(a.open());
});

for (const codec of [json, cbor]) {
  test(`the check sequence over WebTransport streams (${codec.name})`, async () => {
    const [wa, wb] = webTransportPair();
    const server = new Peer(new WebTransportSession(wa), codec, { mux: service() });
    const client = new Peer(new WebTransportSession(wb), codec, { mux: callbacks() });
    const lines = [];
    assert.equal(await runCheck(client, { out: (l) => lines.push(l) }), 15);
    assert.equal(lines[0], "Error: test");
    assert.equal(lines.at(-1), "Bytes: 1048576");
    client.close();
    await settle();
    void server;
  });
}

test("16 MiB through Bytes, written in 1 MiB writes, both ways over WebTransport streams", async () => {
  const [wa, wb] = webTransportPair();
  new Peer(new WebTransportSession(wa), cbor, { mux: service() });
  const client = new Peer(new WebTransportSession(wb), cbor, { mux: callbacks() });
  const data = randomBytes(16 << 20);
  const echoed = await bytesCheck(client, data, 1 << 20);
  assert.equal(echoed.length, data.length);
  assert.ok(Buffer.from(echoed).equals(Buffer.from(data)));
  client.close();
});
