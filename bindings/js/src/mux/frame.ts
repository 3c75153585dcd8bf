/**
 * qmux frames: the seven messages (a cut-down SSH connection protocol), their encoding into a
 * growing output buffer, and an incremental parser that validates a DATA header before its
 * payload arrives and hands the payload on piece by piece. No I/O here.
 */
import { ProtocolError } from "../errors.js";

export const OPEN = 0x64;
export const OPEN_CONFIRM = 0x65;
export const OPEN_FAILURE = 0x66;
export const WINDOW_ADJUST = 0x67;
export const DATA = 0x68;
export const EOF = 0x69;
export const CLOSE = 0x6a;

/** Fixed size of each frame (DATA: its header; the payload follows). */
const SIZE: Record<number, number> = {
  [OPEN]: 13,
  [OPEN_CONFIRM]: 17,
  [OPEN_FAILURE]: 5,
  [WINDOW_ADJUST]: 9,
  [DATA]: 9,
  [EOF]: 5,
  [CLOSE]: 5,
};

/** Bounds of a max packet field (OPEN, OPEN_CONFIRM). */
export const MIN_PACKET = 9;
export const MAX_PACKET = 0x80000000;

/** Frames queued for one transport write. Fields are big-endian u32. */
export class FrameBuffer {
  buf: Uint8Array;
  private view: DataView;
  len = 0;

  constructor(private readonly initial = 4096) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** A frame of fixed fields (everything but DATA). */
  frame(type: number, a: number, b?: number, c?: number, d?: number): void {
    this.reserve(17);
    const v = this.view;
    const at = this.len;
    this.buf[at] = type;
    v.setUint32(at + 1, a);
    let n = 5;
    for (const x of [b, c, d]) {
      if (x === undefined) break;
      v.setUint32(at + n, x);
      n += 4;
    }
    this.len += n;
  }

  /** A DATA frame; the payload is copied, so the caller may reuse its buffer at once. */
  data(id: number, payload: Uint8Array): void {
    this.reserve(9 + payload.length);
    this.buf[this.len] = DATA;
    this.view.setUint32(this.len + 1, id);
    this.view.setUint32(this.len + 5, payload.length);
    this.buf.set(payload, this.len + 9);
    this.len += 9 + payload.length;
  }

  /** Takes the queued bytes (a fresh buffer takes their place). */
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.len);
    this.buf = new Uint8Array(this.initial);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
    return out;
  }
}

/** What the parser reports; each callback may throw {@link ProtocolError} to stop the session. */
export interface FrameSink {
  /** Any frame but DATA, with its fields after the type byte. */
  frame(type: number, fields: number[]): void;
  /** A DATA header, before its payload: validate `length` against the channel here. */
  dataHeader(id: number, length: number): void;
  /** A piece of the current DATA payload (pieces of one frame arrive in order). */
  dataPiece(id: number, piece: Uint8Array): void;
}

/** Turns the byte stream into frames, whatever the read boundaries. */
export class FrameParser {
  private head = new Uint8Array(17);
  private headView = new DataView(this.head.buffer);
  private headLen = 0;
  private need = 0;
  /** The DATA frame whose payload is being received, and how much of it is left. */
  private dataId = 0;
  private dataLeft = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Whether the stream is between frames (a clean place to end). */
  get atBoundary(): boolean {
    return this.headLen === 0 && this.dataLeft === 0;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - at);
        let piece = chunk.subarray(at, at + n);
        // A small piece would pin its whole (possibly large) chunk: copy it.
        if (n < 65536 && n * 4 < chunk.length) piece = piece.slice();
        this.dataLeft -= n;
        at += n;
        this.sink.dataPiece(this.dataId, piece);
        continue;
      }
      if (this.headLen === 0) {
        const size = SIZE[chunk[at]!];
        if (size === undefined) throw new ProtocolError(`unknown message type ${chunk[at]}`);
        this.need = size;
      }
      const n = Math.min(this.need - this.headLen, chunk.length - at);
      this.head.set(chunk.subarray(at, at + n), this.headLen);
      this.headLen += n;
      at += n;
      if (this.headLen < this.need) break;
      this.headLen = 0;
      const type = this.head[0]!;
      const v = this.headView;
      if (type === DATA) {
        const id = v.getUint32(1);
        const length = v.getUint32(5);
        this.sink.dataHeader(id, length);
        this.dataId = id;
        this.dataLeft = length;
        continue;
      }
      const fields: number[] = [];
      for (let i = 1; i < this.need; i += 4) fields.push(v.getUint32(i));
      this.sink.frame(type, fields);
    }
  }
}
