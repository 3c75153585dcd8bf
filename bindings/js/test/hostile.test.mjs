// A JavaScript server (listen) facing a hostile peer over a real WebSocket: opens past every
// limit, data past the window, garbage; the server refuses or ends that session only, and a
// bystander session keeps calling all along.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { listen, connect, RespondMux, func } from "../dist/node.js";
import { FrameBuffer, OPEN, OPEN_CONFIRM, OPEN_FAILURE, DATA } from "./.build/internal.js";
import { frameCollector } from "./helpers.mjs";

async function rawClient(url) {
  const ws = new WebSocket(url, { origin: url.replace("ws:", "http:") });
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  const got = frameCollector();
  ws.on("message", (d) => got.push(new Uint8Array(d)));
  const closed = new Promise((r) => ws.once("close", r));
  return { ws, got, closed, send: (b) => ws.send(b) };
}

test("a hostile session is refused or ended alone; a bystander keeps calling", async () => {
  const mux = new RespondMux().handle("Upper", func((s) => s.toUpperCase()));
  let sessions = 0;
  const server = await listen("ws://127.0.0.1:0", { mux, qmux: { maxChannels: 64 }, onPeer: () => sessions++ });
  const bystander = await connect(server.url, { mux: new RespondMux() });
  let calls = 0;
  let stop = false;
  const calling = (async () => {
    while (!stop) {
      assert.equal(await bystander.call("Upper", ["x"]), "X");
      calls++;
    }
  })();
  try {
    // 1. Opens past maxChannels: the extra ones get OPEN_FAILURE, the session stays up.
    const a = await rawClient(server.url);
    const b = new FrameBuffer();
    for (let i = 0; i < 200; i++) b.frame(OPEN, i, 1 << 20, 1 << 20);
    a.send(b.take());
    for (let i = 0; a.got.frames.length < 200; i++) {
      assert.ok(i < 500, "answers to every OPEN");
      await new Promise((r) => setTimeout(r, 10));
    }
    const types = a.got.frames.map((f) => f.type);
    assert.equal(types.filter((t) => t === OPEN_CONFIRM).length, 64);
    assert.equal(types.filter((t) => t === OPEN_FAILURE).length, 136);

    // 2. DATA past the window it was granted: that session ends, at once.
    const ourId = a.got.frames.find((f) => f.type === OPEN_CONFIRM).fields[1];
    const window = a.got.frames.find((f) => f.type === OPEN_CONFIRM).fields[2];
    const big = new FrameBuffer(1 << 20);
    for (let sent = 0; sent <= window; sent += 256 << 10) big.data(ourId, new Uint8Array(256 << 10));
    a.send(big.take());
    await a.closed;

    // 3. Garbage: an unknown frame type ends that session.
    const c = await rawClient(server.url);
    c.send(Uint8Array.of(0x99, 1, 2, 3, 4, 5));
    await c.closed;

    // 4. A DATA header announcing 4 GiB: refused on its header, nothing allocated for it.
    const d = await rawClient(server.url);
    const h = new FrameBuffer();
    h.frame(OPEN, 0, 1 << 20, 1 << 20);
    d.send(h.take());
    while (!d.got.frames.length) await new Promise((r) => setTimeout(r, 5));
    const hdr = new Uint8Array(9);
    hdr[0] = DATA;
    new DataView(hdr.buffer).setUint32(1, d.got.frames[0].fields[1]);
    new DataView(hdr.buffer).setUint32(5, 0xffffffff);
    d.send(hdr);
    await d.closed;
  } finally {
    stop = true;
    await calling;
    bystander.close();
    await server.close();
  }
  assert.ok(calls > 0);
  assert.equal(sessions, 4);
});
