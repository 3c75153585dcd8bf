// An in-memory WebTransport pair with WHATWG streams, shaped as the browser's API: what the
// tests of the QUIC mapping run on in Node (which has no WebTransport). It records what each
// stream carried: bytes, FIN, and the code of a STOP_SENDING.

/** One direction of a bidirectional stream. */
class Direction {
  constructor() {
    this.chunks = [];
    this.fin = false;
    this.stopCode = null;
    this.resetCode = null;
    this.readable = new ReadableStream({
      start: (c) => void (this.rc = c),
      cancel: (reason) => {
        // STOP_SENDING: the writer's side errors.
        this.stopCode = reason?.streamErrorCode ?? 0;
        this.wc?.error(new Error(`STOP_SENDING (${this.stopCode})`));
      },
    });
    this.writable = new WritableStream({
      start: (c) => void (this.wc = c),
      write: (chunk) => {
        if (this.stopCode !== null) throw new Error(`STOP_SENDING (${this.stopCode})`);
        const copy = chunk.slice();
        this.chunks.push(copy);
        this.rc.enqueue(copy);
      },
      close: () => {
        this.fin = true;
        if (this.stopCode === null) this.rc.close();
      },
      abort: (reason) => {
        this.resetCode = reason?.streamErrorCode ?? 0;
        this.rc.error(new Error(`RESET_STREAM (${this.resetCode})`));
      },
    });
  }

  get bytes() {
    return Buffer.concat(this.chunks);
  }

  kill(e) {
    try {
      this.rc.error(e);
    } catch {}
    try {
      this.wc.error(e);
    } catch {}
  }
}

class FakeWebTransport {
  constructor() {
    this.streams = [];
    this.closeInfo = null;
    this.incomingBidirectionalStreams = new ReadableStream({ start: (c) => void (this.ic = c) });
    this.ready = Promise.resolve();
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  async createBidirectionalStream() {
    if (this.closeInfo) throw new Error("session closed");
    const out = new Direction();
    const back = new Direction();
    this.streams.push({ out, back });
    this.other.streams.push({ out: back, back: out, accepted: true });
    this.other.ic.enqueue({ readable: out.readable, writable: back.writable });
    return { readable: back.readable, writable: out.writable };
  }

  close(info = {}) {
    if (this.closeInfo) return;
    for (const side of [this, this.other]) {
      side.closeInfo = { closeCode: info.closeCode ?? 0, reason: info.reason ?? "", by: this === side ? "local" : "remote" };
      try {
        side.ic.close();
      } catch {}
      for (const s of side.streams) {
        s.out.kill(new Error("session closed"));
        s.back.kill(new Error("session closed"));
      }
      side.resolveClosed(side.closeInfo);
    }
  }
}

/** Two connected fake WebTransport sessions. */
export function webTransportPair() {
  const a = new FakeWebTransport();
  const b = new FakeWebTransport();
  a.other = b;
  b.other = a;
  return [a, b];
}
