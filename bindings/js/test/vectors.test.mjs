// The recordings of the Go reference (tests/vectors): every frame decodes and re-encodes to
// its exact bytes, whatever the read boundaries; and a JavaScript peer replayed against each
// recorded exchange, as either side, writes the same control frames and the same rpc bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { FrameBuffer, DATA, WINDOW_ADJUST, OPEN, OPEN_CONFIRM } from "./.build/internal.js";
import { QmuxSession, Peer, func, json, cbor, RemoteError } from "../dist/index.js";
import { memoryPair, RawPeer, frameCollector, transcript, settle, VECTORS } from "./helpers.mjs";

const hex = (b) => Buffer.from(b).toString("hex");
const files = [
  ...readdirSync(VECTORS).filter((f) => /^(json|cbor)_.*\.txt$/.test(f)),
  ...readdirSync(new URL("variants/", VECTORS)).map((f) => `variants/${f}`),
  ...readdirSync(new URL("cli_check/", VECTORS)).filter((f) => /_(c2s|s2c)\.txt$/.test(f)).map((f) => `cli_check/${f}`),
];

function encode(f) {
  const b = new FrameBuffer();
  if (f.type === DATA) b.data(f.fields[0], f.payload);
  else b.frame(f.type, ...f.fields);
  return b.take();
}

test("every recorded frame decodes to one frame and encodes back to its bytes", () => {
  let frames = 0;
  for (const file of files) {
    for (const line of transcript(file)) {
      if (line.abbreviated) continue; // cli_check shortens payloads over 64 bytes
      const c = frameCollector();
      c.push(line.bytes);
      assert.equal(c.frames.length, 1, line.text);
      assert.ok(c.parser.atBoundary, line.text);
      assert.equal(hex(encode(c.frames[0])), hex(line.bytes), `${file}: ${line.text}`);
      frames++;
    }
  }
  assert.ok(frames > 1000, `${frames} frames`);
});

test("each direction's stream parses the same whatever the read boundaries", () => {
  for (const file of files.filter((f) => !f.startsWith("cli_check/"))) {
    for (const dir of ["C", "S"]) {
      const lines = transcript(file).filter((l) => l.dir === dir);
      const stream = Buffer.concat(lines.map((l) => l.bytes));
      for (const step of [1, 2, 3, 7, 13, 64, 1000]) {
        const c = frameCollector();
        for (let i = 0; i < stream.length; i += step) c.push(stream.subarray(i, i + step));
        assert.equal(c.frames.length, lines.length, `${file} ${dir} by ${step}`);
        c.frames.forEach((f, i) => assert.equal(hex(encode(f)), hex(lines[i].bytes)));
      }
    }
  }
});

// --- replay ---------------------------------------------------------------------------------

/** Go's window and max packet, so that OPEN and OPEN_CONFIRM come out byte-identical. */
const GO = { window: 0x40000000, maxPacket: 0x01000000, memoryBudget: 2 ** 40, idReuseDelay: 0 };

function goHandlers(peer) {
  peer.handle("Upper", func((s) => s.toUpperCase()));
  peer.handle("Error", func((s) => {
    throw new Error(s);
  }));
  peer.handle("Bytes", async (r, call) => {
    const s = await r.continue(await call.receive());
    for (;;) {
      const b = await s.read();
      if (b === null) break;
      await s.write(b);
    }
    await s.closeWrite();
  });
}

/**
 * What one side wrote, in a comparable form: its control frames (OPEN, OPEN_CONFIRM, EOF,
 * CLOSE) in order, each with the DATA bytes its channel had carried before it, and the DATA
 * bytes per channel (rpc frames may be split or joined differently across DATA frames).
 * WINDOW_ADJUST schedules differ legitimately and are left out.
 */
function summarize(frames) {
  const data = new Map();
  const control = [];
  for (const f of frames) {
    if (f.type === WINDOW_ADJUST) continue;
    if (f.type === DATA) {
      const id = f.fields[0];
      data.set(id, Buffer.concat([data.get(id) ?? Buffer.alloc(0), f.payload]));
      continue;
    }
    const id = f.type === OPEN ? null : f.fields[0];
    control.push(`${hex(encode(f))} after ${id === null ? 0 : (data.get(id)?.length ?? 0)}`);
  }
  return { control, data: [...data].map(([id, b]) => `${id}: ${hex(b)}`) };
}

const scenarios = files.filter(
  (f) => !f.startsWith("cli_check/") && !f.includes("interop_check"),
);

test("as the responder: a Peer fed the Go caller's frames answers with the Go responder's bytes", async () => {
  for (const file of scenarios) {
    const codec = file.includes("cbor_") ? cbor : json;
    const lines = transcript(file);
    const [ours, theirs] = memoryPair();
    const peer = new Peer(new QmuxSession(ours, GO), codec);
    goHandlers(peer);
    const raw = new RawPeer(theirs);
    for (const line of lines) {
      if (line.dir !== "C") continue;
      raw.raw(line.bytes);
      await settle();
    }
    await settle();
    const want = summarize(frameCollectorOf(lines.filter((l) => l.dir === "S")));
    const got = summarize(raw.frames);
    assert.deepEqual(got, want, file);
    peer.close();
  }
});

test("as the caller: a Peer fed the Go responder's frames sends the Go caller's bytes", async () => {
  const calls = {
    upper: [["Upper", ["hello world"]]],
    error: [["Error", ["boom"]]],
    notfound: [["Nope", ["x"]]],
    badargs: [["Upper", []]],
    nilargs: [["Upper", null]],
    two_sequential: [["Upper", ["a"]], ["Upper", ["b"]]],
  };
  const results = {
    upper: ["HELLO WORLD"],
    error: ["remote: boom"],
    notfound: ["remote: not found: /Nope"],
    badargs: ["remote: fn: expected 1 params, got 0"],
    nilargs: ["remote: fn: expected 1 params, got 0"],
    two_sequential: ["A", "B"],
  };
  for (const file of scenarios) {
    const scenario = /(?:json|cbor)_(.*?)(?:\.v\d+)?\.txt$/.exec(file)[1];
    const codec = file.includes("cbor_") ? cbor : json;
    const lines = transcript(file);
    const [ours, theirs] = memoryPair();
    const session = new QmuxSession(ours, GO);
    // No channel opened ahead: the Go caller opens one per call, when it calls.
    const peer = new Peer(session, codec, { spareChannel: false });
    const raw = new RawPeer(theirs);
    const got = [];
    const run = (async () => {
      if (scenario === "bytes_stream") {
        const r = await peer.request("Bytes", null);
        await r.write(new TextEncoder().encode("ping"));
        await r.closeWrite();
        const echoed = await r.read();
        got.push(new TextDecoder().decode(echoed));
        assert.equal(await r.read(), null);
        r.close();
        return;
      }
      for (const [selector, args] of calls[scenario]) {
        try {
          got.push(await peer.call(selector, args));
        } catch (e) {
          assert.ok(e instanceof RemoteError, `${file}: ${e}`);
          got.push(`remote: ${e.message}`);
        }
        // As recorded, the next call starts once the CLOSE handshake has freed the id.
        for (let i = 0; session.channelCount > 0; i++) {
          assert.ok(i < 100, `${file}: the channel was never freed`);
          await settle(1);
        }
      }
    })();
    // Feed the responder's frames in order, each OPEN_CONFIRM once our OPEN has gone out.
    let confirms = 0;
    for (const line of lines) {
      if (line.dir !== "S") continue;
      if (line.bytes[0] === OPEN_CONFIRM) {
        confirms++;
        for (let i = 0; raw.frames.filter((f) => f.type === OPEN).length < confirms; i++) {
          assert.ok(i < 100, `${file}: no OPEN for confirmation ${confirms}`);
          await settle(1);
        }
      }
      await settle();
      raw.raw(line.bytes);
    }
    await run;
    await settle();
    assert.deepEqual(got, results[scenario] ?? ["ping"], file);
    // The Go caller writes its arguments as a second DATA frame, which fails when the
    // responder's CLOSE came first (some variants); ours go out with the header, always. So
    // the complete request is that of the most frequent ordering.
    const main = transcript(file.replace(/^variants\//, "").replace(/\.v\d+/, ""));
    const want = summarize(frameCollectorOf(main.filter((l) => l.dir === "C")));
    const sent = summarize(raw.frames);
    const strip = (c) => c.map((x) => x.replace(/ after \d+$/, ""));
    assert.deepEqual(strip(sent.control), strip(want.control), file);
    assert.deepEqual(sent.data, want.data, file);
    peer.close();
  }
});

function frameCollectorOf(lines) {
  const c = frameCollector();
  for (const l of lines) c.push(l.bytes);
  return c.frames;
}

test("OPEN and OPEN_CONFIRM with Go's settings are the recorded bytes", async () => {
  const [ours, theirs] = memoryPair();
  const s = new QmuxSession(ours, GO);
  const raw = new RawPeer(theirs);
  void s.open();
  await settle();
  assert.equal(hex(encode(raw.frames[0])), "64000000004000000001000000");
  raw.send(OPEN, 0, 0x40000000, 0x01000000);
  await settle();
  assert.equal(hex(encode(raw.frames[1])), "6500000000000000014000000001000000");
  s.close();
});
