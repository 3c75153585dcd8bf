// qmux sessions against a raw frame speaker and against each other, in memory: flow control
// that never waits per packet, CLOSE semantics, the reference's quirks, limits, and peers that
// break the protocol.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  OPEN, OPEN_CONFIRM, OPEN_FAILURE, WINDOW_ADJUST, DATA, EOF, CLOSE, FrameBuffer,
} from "./.build/internal.js";
import {
  QmuxSession, ProtocolError, SessionClosedError, OpenRefusedError, ChannelClosedError,
} from "../dist/index.js";
import { memoryPair, RawPeer, settle } from "./helpers.mjs";

const bytes = (n, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const count = (frames, type) => frames.filter((f) => f.type === type).length;

async function until(cond, what) {
  for (let i = 0; !cond(); i++) {
    assert.ok(i < 2000, `never happened: ${what}`);
    await settle(1);
  }
}

/** Our session and a raw peer, which opens channel `peerId` to us when asked. */
function withRaw(options, onFrame) {
  const [a, b] = memoryPair();
  const session = new QmuxSession(a, options);
  const raw = new RawPeer(b, onFrame);
  return { session, raw };
}

async function readAll(ch) {
  const parts = [];
  for (;;) {
    const c = await ch.read();
    if (c === null) return Buffer.concat(parts);
    parts.push(c);
  }
}

test("a CLOSE without EOF ends the reads after the buffered data, and is answered once", async () => {
  const { session, raw } = withRaw();
  raw.send(OPEN, 7, 1 << 20, 1 << 16);
  const ch = await session.accept();
  await until(() => count(raw.frames, OPEN_CONFIRM) === 1, "confirm");
  const ourId = raw.frames[0].fields[1];
  raw.data(ourId, new TextEncoder().encode("hi"));
  raw.send(CLOSE, ourId);
  assert.equal(new TextDecoder().decode(await readAll(ch)), "hi");
  await until(() => count(raw.frames, CLOSE) === 1, "our CLOSE");
  assert.equal(raw.frames.at(-1).fields[0], 7);
  await assert.rejects(ch.write(new Uint8Array(1)), ChannelClosedError);
  ch.close(); // nothing more goes out
  await settle();
  assert.equal(count(raw.frames, CLOSE), 1);
  assert.equal(session.channelCount, 0);
  session.close();
});

test("a long write fills the whole window at once, never waiting for an adjust per packet", async () => {
  const { session, raw } = withRaw();
  const opening = session.open();
  await until(() => raw.frames.length === 1, "OPEN");
  const id = raw.frames[0].fields[0];
  raw.send(OPEN_CONFIRM, id, 99, 1 << 20, 16 << 10); // window 1 MiB, packets of 16 KiB
  const ch = await opening;
  const data = bytes(4 << 20);
  let done = false;
  const writing = ch.write(data).then(() => (done = true));
  await until(() => count(raw.frames, DATA) === 64, "a window's worth of packets");
  await settle();
  assert.equal(count(raw.frames, DATA), 64, "not past the window");
  assert.equal(done, false);
  for (let round = 1; round < 4; round++) {
    raw.send(WINDOW_ADJUST, id, 1 << 20);
    await until(() => count(raw.frames, DATA) === 64 * (round + 1), `round ${round}`);
  }
  await writing;
  const sent = Buffer.concat(raw.frames.filter((f) => f.type === DATA).map((f) => f.payload));
  assert.ok(sent.equals(data));
  session.close();
});

test("a sender that waits for an adjust after every packet (as qtalk-js does) never stalls", async () => {
  // The raw peer sends max-packet DATA frames and sends the next one only once an adjust came.
  const packet = 8 << 10;
  const total = 2 << 20;
  let sent = 0;
  let id;
  const sendNext = () => {
    if (sent >= total) return raw.send(EOF, id);
    raw.data(id, bytes(packet, sent));
    sent += packet;
  };
  const { session, raw } = withRaw({ maxPacket: packet, window: 1 << 20 }, (f) => {
    if (f.type === WINDOW_ADJUST) sendNext();
  });
  raw.send(OPEN, 0, 1 << 20, 1 << 20);
  const ch = await session.accept();
  await until(() => count(raw.frames, OPEN_CONFIRM) === 1, "confirm");
  id = raw.frames[0].fields[1];
  sendNext();
  const got = await readAll(ch);
  assert.equal(got.length, total);
  assert.equal(count(raw.frames, WINDOW_ADJUST), total / packet);
  session.close();
});

test("16 MiB in 1 MiB writes between two sessions, with batched window adjusts", async () => {
  let adjusts = 0;
  let datas = 0;
  const frames = (chunk) => {
    // Count frame types in what the receiver sends (adjusts) and the sender sends (data).
    for (let i = 0; i < chunk.length; ) {
      const t = chunk[i];
      if (t === WINDOW_ADJUST) adjusts++;
      if (t === DATA) {
        datas++;
        i += 9 + new DataView(chunk.buffer, chunk.byteOffset + i + 5, 4).getUint32(0);
        continue;
      }
      i += { [OPEN]: 13, [OPEN_CONFIRM]: 17, [WINDOW_ADJUST]: 9, [EOF]: 5, [CLOSE]: 5 }[t] ?? 5;
    }
  };
  const [a, b] = memoryPair(frames, frames);
  const sa = new QmuxSession(a);
  const sb = new QmuxSession(b);
  const data = bytes(16 << 20, 3);
  const accepting = sb.accept();
  const ch = await sa.open();
  const peer = await accepting;
  const writing = (async () => {
    for (let i = 0; i < data.length; i += 1 << 20) await ch.write(data.subarray(i, i + (1 << 20)));
    await ch.closeWrite();
  })();
  const got = await readAll(peer);
  await writing;
  assert.ok(got.equals(data));
  // 4 MiB windows granted back at half: about 8 adjusts for 16 MiB (64 packets of 256 KiB).
  assert.ok(adjusts <= 12, `${adjusts} adjusts for ${datas} DATA frames`);
  assert.ok(datas >= 64);
  sa.close();
  sb.close();
});

test("frames sent before OPEN_CONFIRM (the reference's accept order) are kept, and the CLOSE answered after it", async () => {
  const { session, raw } = withRaw();
  const opening = session.open();
  await until(() => raw.frames.length === 1, "OPEN");
  const id = raw.frames[0].fields[0];
  raw.data(id, new TextEncoder().encode("early"));
  raw.send(EOF, id);
  raw.send(CLOSE, id);
  await settle();
  assert.equal(count(raw.frames, CLOSE), 0, "no CLOSE before the peer's id is known");
  raw.send(OPEN_CONFIRM, id, 5, 1 << 20, 1 << 20);
  const ch = await opening;
  assert.equal(new TextDecoder().decode(await readAll(ch)), "early");
  await until(() => count(raw.frames, CLOSE) === 1, "CLOSE");
  assert.equal(raw.frames.at(-1).fields[0], 5);
  assert.equal(session.channelCount, 0);
  session.close();
});

test("late frames for a finished channel are dropped, not fatal", async () => {
  const { session, raw } = withRaw();
  raw.send(OPEN, 0, 1 << 20, 1 << 20);
  const ch = await session.accept();
  await until(() => count(raw.frames, OPEN_CONFIRM) === 1, "confirm");
  const ourId = raw.frames[0].fields[1];
  ch.close();
  raw.send(CLOSE, ourId);
  await settle();
  raw.data(ourId, bytes(10)); // the reference can write after its CLOSE
  raw.send(WINDOW_ADJUST, ourId, 10);
  raw.send(OPEN, 1, 1 << 20, 1 << 20);
  const next = await session.accept();
  assert.ok(next);
  assert.equal(session.isClosed, false);
  session.close();
});

test("no WINDOW_ADJUST after this side's CLOSE", async () => {
  const { session, raw } = withRaw({ maxPacket: 1024, window: 4096 });
  raw.send(OPEN, 0, 1 << 20, 1 << 20);
  const ch = await session.accept();
  await until(() => count(raw.frames, OPEN_CONFIRM) === 1, "confirm");
  const ourId = raw.frames[0].fields[1];
  raw.data(ourId, bytes(1024));
  await settle();
  ch.close();
  raw.data(ourId, bytes(1024)); // crossing our CLOSE: counted, dropped
  await settle();
  assert.equal(count(raw.frames, WINDOW_ADJUST), 0);
  session.close();
});

for (const [what, send] of [
  ["an unknown message type", (raw) => raw.raw(Uint8Array.of(0x70, 0, 0, 0, 0))],
  ["a frame for a channel never opened", (raw) => raw.send(EOF, 12345)],
  ["DATA over the max packet (refused on its header)", (raw, id) => raw.raw(header(id, (64 << 10) + 1))],
  ["DATA over the window", (raw, id) => {
    for (let i = 0; i < 5; i++) raw.data(id, bytes(64 << 10));
  }],
  ["a WINDOW_ADJUST past 2^32-1", (raw, id, peerId) => raw.send(WINDOW_ADJUST, id, 0xffffffff)],
  ["OPEN_CONFIRM for a channel that is open", (raw, id) => raw.send(OPEN_CONFIRM, id, 1, 100, 100)],
  ["OPEN_CONFIRM with a max packet below 9", (raw) => raw.send(OPEN_CONFIRM, 1, 1, 100, 8)],
  ["the transport ending inside a frame", (raw) => {
    raw.raw(Uint8Array.of(DATA, 0, 0));
    raw.transport.close();
  }],
]) {
  test(`the session ends with a ProtocolError on ${what}`, async () => {
    const { session, raw } = withRaw({ maxPacket: 64 << 10, window: 256 << 10 });
    raw.send(OPEN, 0, 1 << 20, 1 << 20);
    const ch = await session.accept();
    await until(() => count(raw.frames, OPEN_CONFIRM) === 1, "confirm");
    void session.open(); // our channel 1, not confirmed
    send(raw, raw.frames[0].fields[1], 0);
    const err = await session.closed;
    assert.ok(err instanceof ProtocolError, String(err));
    await readAll(ch); // what was buffered, then the end
    await assert.rejects(ch.write(bytes(1)), SessionClosedError);
    assert.equal(await session.accept(), null);
    await assert.rejects(session.open(), SessionClosedError);
  });
}

function header(id, length) {
  const b = new Uint8Array(9);
  const v = new DataView(b.buffer);
  b[0] = DATA;
  v.setUint32(1, id);
  v.setUint32(5, length);
  return b;
}

test("OPENs past the limits are refused with OPEN_FAILURE; a bad max packet too, without harm", async () => {
  const { session, raw } = withRaw({ maxChannels: 2, acceptBacklog: 2 });
  raw.send(OPEN, 0, 1 << 20, 8); // max packet below 9
  raw.send(OPEN, 1, 1 << 20, 1 << 20);
  raw.send(OPEN, 2, 1 << 20, 1 << 20);
  raw.send(OPEN, 3, 1 << 20, 1 << 20); // a third channel: over maxChannels
  await until(() => raw.frames.length === 4, "answers");
  assert.deepEqual(raw.frames.map((f) => [f.type, f.fields[0]]), [
    [OPEN_FAILURE, 0], [OPEN_CONFIRM, 1], [OPEN_CONFIRM, 2], [OPEN_FAILURE, 3],
  ]);
  assert.equal(session.isClosed, false);
  session.close();

  // The budget makes windows smaller, never refuses: what is left up to a full window, then
  // 4 KiB once less than 64 KiB is left.
  const small = withRaw({ memoryBudget: (1 << 20) + (100 << 10), window: 1 << 20 });
  for (let i = 0; i < 3; i++) small.raw.send(OPEN, i, 1 << 20, 1 << 20);
  await until(() => small.raw.frames.length === 3, "answers");
  assert.deepEqual(small.raw.frames.map((f) => [f.type, f.fields[2]]), [
    [OPEN_CONFIRM, 1 << 20], [OPEN_CONFIRM, 100 << 10], [OPEN_CONFIRM, 4 << 10],
  ]);
  small.session.close();
});

test("a window made small by a short budget grows back as the application reads", async () => {
  const { session, raw } = withRaw({ memoryBudget: 8 << 20, window: 4 << 20, maxPacket: 4 << 10 });
  for (let i = 0; i < 3; i++) raw.send(OPEN, i, 1 << 20, 1 << 20);
  const first = await session.accept();
  await session.accept();
  const third = await session.accept();
  await until(() => count(raw.frames, OPEN_CONFIRM) === 3, "confirms");
  const confirms = raw.frames.filter((f) => f.type === OPEN_CONFIRM);
  assert.deepEqual(confirms.map((f) => f.fields[2]), [4 << 20, 4 << 20, 4 << 10]);
  // The first channel ends: its 4 MiB go back to the budget.
  first.close();
  raw.send(CLOSE, confirms[0].fields[1]);
  await until(() => session.channelCount === 2, "freed");
  const id = confirms[2].fields[1];
  raw.data(id, bytes(4 << 10));
  assert.equal((await third.read()).length, 4 << 10);
  await until(() => count(raw.frames, WINDOW_ADJUST) === 1, "adjust");
  // 4 KiB read, plus growth: half of what is free now, within the full window.
  const free = (8 << 20) - (4 << 20) - (4 << 10);
  assert.equal(raw.frames.at(-1).fields[1], (4 << 10) + Math.floor(free / 2));
  session.close();
});

test("an OPEN_FAILURE rejects the open with OpenRefusedError and frees the id", async () => {
  const { session, raw } = withRaw();
  const opening = session.open();
  await until(() => raw.frames.length === 1, "OPEN");
  raw.send(OPEN_FAILURE, raw.frames[0].fields[0]);
  await assert.rejects(opening, OpenRefusedError);
  assert.equal(session.channelCount, 0);
  session.close();
});

test("ids: freed ids wait out the reuse delay; with 0 the lowest free id is reused at once", async () => {
  for (const [delay, want] of [[0, [0, 0]], [256, [0, 1]]]) {
    const { session, raw } = withRaw({ idReuseDelay: delay });
    const ids = [];
    for (let i = 0; i < 2; i++) {
      raw.send(OPEN, i, 1 << 20, 1 << 20);
      const ch = await session.accept();
      await until(() => count(raw.frames, OPEN_CONFIRM) === i + 1, "confirm");
      const ourId = raw.frames.filter((f) => f.type === OPEN_CONFIRM)[i].fields[1];
      ids.push(ourId);
      ch.close();
      raw.send(CLOSE, ourId);
      await until(() => session.channelCount === 0, "freed");
    }
    assert.deepEqual(ids, want, `delay ${delay}`);
    session.close();
  }
});

test("the transport's end ends the session cleanly: buffered data, then EOF; writes fail", async () => {
  const [a, b] = memoryPair();
  const sa = new QmuxSession(a);
  const sb = new QmuxSession(b);
  const accepting = sb.accept();
  const ch = await sa.open();
  const other = await accepting;
  await ch.write(new TextEncoder().encode("last words"));
  await settle();
  sa.close();
  assert.equal(await sb.closed, undefined);
  assert.equal(new TextDecoder().decode(await readAll(other)), "last words");
  await assert.rejects(other.write(bytes(1)), SessionClosedError);
  assert.equal(await sb.accept(), null);
});

test("concurrent writes on one channel keep their order; WHATWG streams carry the bytes", async () => {
  const [a, b] = memoryPair();
  const sa = new QmuxSession(a, { window: 64 << 10, maxPacket: 16 << 10 });
  const sb = new QmuxSession(b, { window: 64 << 10, maxPacket: 16 << 10 });
  const accepting = sb.accept();
  const ch = await sa.open();
  const other = await accepting;
  const parts = [bytes(100000, 1), bytes(5, 2), bytes(70000, 3)];
  const writes = parts.map((p) => ch.write(p));
  const closing = Promise.all(writes).then(() => ch.closeWrite());
  const got = [];
  await other.readable.pipeTo(new WritableStream({ write: (c) => void got.push(Buffer.from(c)) }));
  await closing;
  assert.ok(Buffer.concat(got).equals(Buffer.concat(parts)));
  // And the other way, through `writable`.
  const w = other.writable.getWriter();
  await w.write(bytes(40000, 9));
  await w.close();
  assert.ok((await readAll(ch)).equals(Buffer.from(bytes(40000, 9))));
  sa.close();
  sb.close();
});

test("mangled streams end the session or pass, never throw or hang", async () => {
  const good = new FrameBuffer();
  good.frame(OPEN, 0, 1 << 16, 1 << 12);
  good.data(0, bytes(300));
  good.frame(WINDOW_ADJUST, 0, 10);
  good.frame(EOF, 0);
  good.frame(CLOSE, 0);
  const base = good.take();
  let seed = 7;
  const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  for (let run = 0; run < 300; run++) {
    const [a, b] = memoryPair();
    const s = new QmuxSession(a, { maxChannels: 4, window: 1 << 16, maxPacket: 1 << 12 });
    void (async () => {
      for (;;) {
        const ch = await s.accept();
        if (!ch) return;
        void readAll(ch).catch(() => {});
      }
    })();
    const m = base.slice();
    for (let k = 0; k < 1 + rnd(4); k++) m[rnd(m.length)] = rnd(256);
    b.start(() => {}, () => {});
    for (let i = 0; i < m.length; ) {
      const n = 1 + rnd(40);
      b.send(m.subarray(i, i + n));
      i += n;
    }
    b.close();
    const err = await s.closed;
    assert.ok(err === undefined || err instanceof ProtocolError, String(err));
  }
});
