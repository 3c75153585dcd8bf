// Test helpers: in-memory transports, a raw qmux peer, transcripts of tests/vectors.
import { readFileSync } from "node:fs";
import { FrameBuffer, FrameParser, DATA } from "./.build/internal.js";

/** Waits until in-memory traffic has settled (no timers involved: event-loop turns only). */
export async function settle(turns = 30) {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** One direction of an in-memory byte pipe: FIFO, delivered on later event-loop turns. */
class Pipe {
  queue = [];
  scheduled = false;
  onData = null;
  onEnd = null;
  ended = false;
  bytes = 0;
  push(chunk) {
    this.queue.push(chunk);
    this.bytes += chunk.length;
    this.schedule();
  }
  end(e) {
    this.queue.push({ end: e ?? null });
    this.schedule();
  }
  schedule() {
    if (this.scheduled || !this.onData) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const q = this.queue;
      this.queue = [];
      for (const c of q) {
        if (this.ended) return;
        if (c instanceof Uint8Array) this.onData(c);
        else {
          this.ended = true;
          this.onEnd(c.end ?? undefined);
        }
      }
    });
  }
}

/** A ByteTransport over two pipes. `tap` sees every chunk this side sends. */
export class MemoryTransport {
  constructor(out, inp, tap) {
    this.out = out;
    this.inp = inp;
    this.tap = tap;
    this.closed = false;
  }
  get bufferedAmount() {
    return 0;
  }
  send(data) {
    if (this.closed) return;
    this.tap?.(data);
    this.out.push(data.slice());
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    this.out.end();
  }
  start(onData, onEnd) {
    this.inp.onData = onData;
    this.inp.onEnd = onEnd;
    this.inp.schedule();
  }
}

/** Two connected transports. */
export function memoryPair(tapA, tapB) {
  const ab = new Pipe();
  const ba = new Pipe();
  return [new MemoryTransport(ab, ba, tapA), new MemoryTransport(ba, ab, tapB)];
}

/** Parses frames out of a byte stream: [{type, fields, payload}] (payload for DATA). */
export function frameCollector() {
  const frames = [];
  let current = null;
  const parser = new FrameParser({
    frame: (type, fields) => frames.push({ type, fields }),
    dataHeader: (id, length) => {
      current = { type: DATA, fields: [id, length], parts: [] };
      frames.push(current);
      if (length === 0) current.payload = new Uint8Array(0);
    },
    dataPiece: (_id, piece) => {
      current.parts.push(piece.slice());
      const got = current.parts.reduce((n, p) => n + p.length, 0);
      if (got === current.fields[1]) current.payload = Buffer.concat(current.parts);
    },
  });
  return { frames, push: (b) => parser.push(b), parser };
}

/**
 * A raw qmux speaker for tests: sends frames byte for byte and records what it receives.
 * `onFrame` (optional) is called for each frame received.
 */
export class RawPeer {
  constructor(transport, onFrame) {
    this.transport = transport;
    this.received = frameCollector();
    this.ended = false;
    let seen = 0;
    transport.start(
      (chunk) => {
        this.received.push(chunk);
        while (seen < this.received.frames.length) {
          const f = this.received.frames[seen];
          if (f.type === DATA && !f.payload) break;
          seen++;
          onFrame?.(f);
        }
      },
      () => (this.ended = true),
    );
  }
  get frames() {
    return this.received.frames;
  }
  send(type, ...fields) {
    const b = new FrameBuffer();
    b.frame(type, ...fields);
    this.transport.send(b.take());
  }
  data(id, payload) {
    const b = new FrameBuffer();
    b.data(id, payload);
    this.transport.send(b.take());
  }
  raw(bytes) {
    this.transport.send(bytes);
  }
}

const VECTORS = new URL("../../../tests/vectors/", import.meta.url);

/** The lines of a transcript: [{dir: "C"|"S", bytes, abbreviated}]. */
export function transcript(name) {
  const out = [];
  for (const line of readFileSync(new URL(name, VECTORS), "utf8").split("\n")) {
    const m = /^([CS])>\s+([^#]*)/.exec(line);
    if (!m) continue;
    const tokens = m[2].trim().split(/\s+/);
    const abbreviated = tokens.some((t) => t.includes("..."));
    const hex = tokens.map((t) => t.replace(/\.\.\.\(\d+ bytes\)$/, "")).join("");
    out.push({ dir: m[1], bytes: new Uint8Array(Buffer.from(hex, "hex")), abbreviated, text: line });
  }
  return out;
}

export { VECTORS };
