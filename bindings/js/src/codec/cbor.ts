import { type Codec, CodecError } from "./types.js";

/**
 * CBOR as the reference's codec (fxamacker/cbor v2.4.0, default options) writes it: integers
 * in the shortest head, other numbers always as 9-byte float64 (NaN and infinities as the
 * 3-byte `f9` forms), definite lengths, `Uint8Array` as byte strings, `null` and `undefined`
 * as `f6`. Plain objects and `Map`s are maps in their own key order (Go writes struct fields in
 * order and its maps in random order, so either is what Go could write).
 *
 * Decoding accepts what Go accepts: every float width, every integer head, indefinite lengths,
 * tags (bignums 2 and 3 as `bigint`, others unwrapped), `undefined` as `null`. Integers beyond
 * 2^53 decode as `bigint`; maps with only text keys as plain objects, others as `Map`s.
 */
export const cbor: Codec = {
  name: "cbor",
  encode(value: unknown): Uint8Array {
    const w = new Writer();
    encodeItem(w, value, 0);
    return w.finish();
  },
  decode(bytes: Uint8Array): unknown {
    const r = new Reader(bytes);
    const v = r.item(0);
    if (r.pos !== bytes.length) throw new CodecError("cbor: bytes after the value");
    return v;
  },
};

const MAX_DEPTH = 512;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

class Writer {
  buf = new Uint8Array(64);
  view = new DataView(this.buf.buffer);
  len = 0;

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** A head: major type and argument, in the shortest form. */
  head(major: number, n: number | bigint): void {
    const m = major << 5;
    if (typeof n === "bigint") {
      if (n <= 0xffffffffn) return this.head(major, Number(n));
      this.reserve(9);
      this.buf[this.len] = m | 27;
      this.view.setBigUint64(this.len + 1, n);
      this.len += 9;
    } else if (n < 24) {
      this.byte(m | n);
    } else if (n <= 0xff) {
      this.reserve(2);
      this.buf[this.len] = m | 24;
      this.buf[this.len + 1] = n;
      this.len += 2;
    } else if (n <= 0xffff) {
      this.reserve(3);
      this.buf[this.len] = m | 25;
      this.view.setUint16(this.len + 1, n);
      this.len += 3;
    } else if (n <= 0xffffffff) {
      this.reserve(5);
      this.buf[this.len] = m | 26;
      this.view.setUint32(this.len + 1, n);
      this.len += 5;
    } else {
      this.head(major, BigInt(n));
    }
  }

  float64(f: number): void {
    if (Number.isNaN(f)) return this.bytes(NAN);
    if (f === Infinity) return this.bytes(POS_INF);
    if (f === -Infinity) return this.bytes(NEG_INF);
    this.reserve(9);
    this.buf[this.len] = 0xfb;
    this.view.setFloat64(this.len + 1, f);
    this.len += 9;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const NAN = new Uint8Array([0xf9, 0x7e, 0x00]);
const POS_INF = new Uint8Array([0xf9, 0x7c, 0x00]);
const NEG_INF = new Uint8Array([0xf9, 0xfc, 0x00]);
const U64_MAX = (1n << 64n) - 1n;

function encodeItem(w: Writer, v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new CodecError("cbor: value nested too deeply");
  switch (typeof v) {
    case "undefined":
      return w.byte(0xf6);
    case "boolean":
      return w.byte(v ? 0xf5 : 0xf4);
    case "number":
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        return v >= 0 ? w.head(0, v) : w.head(1, -1 - v);
      }
      return w.float64(v);
    case "bigint":
      if (v >= 0n && v <= U64_MAX) return w.head(0, v);
      if (v < 0n && -1n - v <= U64_MAX) return w.head(1, -1n - v);
      throw new CodecError("cbor: integer beyond 64 bits");
    case "string": {
      const b = utf8.encode(v);
      w.head(3, b.length);
      return w.bytes(b);
    }
    case "object":
      break;
    default:
      throw new CodecError(`cbor: cannot encode a ${typeof v}`);
  }
  if (v === null) return w.byte(0xf6);
  if (Array.isArray(v)) {
    w.head(4, v.length);
    for (const e of v) encodeItem(w, e, depth + 1);
  } else if (v instanceof Uint8Array) {
    w.head(2, v.length);
    w.bytes(v);
  } else if (v instanceof Map) {
    w.head(5, v.size);
    for (const [k, e] of v) {
      encodeItem(w, k, depth + 1);
      encodeItem(w, e, depth + 1);
    }
  } else {
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
    w.head(5, keys.length);
    for (const k of keys) {
      encodeItem(w, k, depth + 1);
      encodeItem(w, (v as Record<string, unknown>)[k], depth + 1);
    }
  }
}

const BREAK = Symbol("break");

class Reader {
  pos = 0;
  view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(n: number): void {
    if (this.buf.length - this.pos < n) throw new CodecError("cbor: unexpected end of data");
  }

  /** The argument of a head with additional info `ai` (`-1` for indefinite). */
  arg(ai: number): number | bigint {
    if (ai < 24) return ai;
    const p = this.pos;
    switch (ai) {
      case 24:
        this.need(1);
        this.pos += 1;
        return this.buf[p]!;
      case 25:
        this.need(2);
        this.pos += 2;
        return this.view.getUint16(p);
      case 26:
        this.need(4);
        this.pos += 4;
        return this.view.getUint32(p);
      case 27: {
        this.need(8);
        this.pos += 8;
        const n = this.view.getBigUint64(p);
        return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      }
      case 31:
        return -1;
      default:
        throw new CodecError(`cbor: invalid additional information ${ai}`);
    }
  }

  /** A length: a safe number no larger than what is left to read (each element takes a byte). */
  length(ai: number, unit: number): number {
    const n = this.arg(ai);
    if (typeof n === "bigint" || n * unit > this.buf.length - this.pos)
      throw new CodecError("cbor: length beyond the data");
    return n;
  }

  item(depth: number): unknown {
    const v = this.itemOrBreak(depth);
    if (v === BREAK) throw new CodecError("cbor: unexpected break");
    return v;
  }

  itemOrBreak(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new CodecError("cbor: value nested too deeply");
    this.need(1);
    const ib = this.buf[this.pos++]!;
    const major = ib >> 5;
    const ai = ib & 31;
    switch (major) {
      case 0: {
        const n = this.arg(ai);
        if (n === -1) throw new CodecError("cbor: indefinite integer");
        return n;
      }
      case 1: {
        const n = this.arg(ai);
        if (n === -1) throw new CodecError("cbor: indefinite integer");
        if (typeof n === "bigint") return -1n - n;
        return n >= Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
      }
      case 2:
      case 3: {
        const b = this.string(major, ai, depth);
        if (major === 2) return b;
        try {
          return strictUtf8.decode(b);
        } catch {
          throw new CodecError("cbor: text string is not valid UTF-8");
        }
      }
      case 4: {
        const out: unknown[] = [];
        if (ai === 31) {
          for (;;) {
            const e = this.itemOrBreak(depth + 1);
            if (e === BREAK) return out;
            out.push(e);
          }
        }
        const n = this.length(ai, 1);
        for (let i = 0; i < n; i++) out.push(this.item(depth + 1));
        return out;
      }
      case 5:
        return this.map(ai, depth);
      case 6: {
        const tag = this.arg(ai);
        const content = this.item(depth + 1);
        if ((tag === 2 || tag === 3) && content instanceof Uint8Array) {
          let n = 0n;
          for (const b of content) n = (n << 8n) | BigInt(b);
          return tag === 2 ? n : -1n - n;
        }
        return content;
      }
      default:
        return this.simple(ai);
    }
  }

  string(major: number, ai: number, depth: number): Uint8Array {
    if (ai !== 31) {
      const n = this.length(ai, 1);
      const b = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return b;
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      this.need(1);
      const ib = this.buf[this.pos]!;
      if (ib === 0xff) {
        this.pos++;
        break;
      }
      if (ib >> 5 !== major || (ib & 31) === 31)
        throw new CodecError("cbor: bad chunk in an indefinite-length string");
      this.pos++;
      const c = this.string(major, ib & 31, depth);
      chunks.push(c);
      total += c.length;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  map(ai: number, depth: number): unknown {
    const keys: unknown[] = [];
    const values: unknown[] = [];
    if (ai === 31) {
      for (;;) {
        const k = this.itemOrBreak(depth + 1);
        if (k === BREAK) break;
        keys.push(k);
        values.push(this.item(depth + 1));
      }
    } else {
      const n = this.length(ai, 2);
      for (let i = 0; i < n; i++) {
        keys.push(this.item(depth + 1));
        values.push(this.item(depth + 1));
      }
    }
    if (keys.every((k) => typeof k === "string")) {
      const o: Record<string, unknown> = {};
      keys.forEach((k, i) => setOwn(o, k as string, values[i]));
      return o;
    }
    const m = new Map<unknown, unknown>();
    keys.forEach((k, i) => m.set(k, values[i]));
    return m;
  }

  simple(ai: number): unknown {
    switch (ai) {
      case 20:
        return false;
      case 21:
        return true;
      case 22:
      case 23:
        return null;
      case 25: {
        this.need(2);
        const h = this.view.getUint16(this.pos);
        this.pos += 2;
        return half(h);
      }
      case 26: {
        this.need(4);
        const f = this.view.getFloat32(this.pos);
        this.pos += 4;
        return f;
      }
      case 27: {
        this.need(8);
        const f = this.view.getFloat64(this.pos);
        this.pos += 8;
        return f;
      }
      case 31:
        return BREAK;
      case 24:
        this.need(1);
        this.pos++;
        return null;
      default:
        if (ai < 20) return null; // unassigned simple values
        throw new CodecError(`cbor: invalid simple value ${ai}`);
    }
  }
}

/** Sets an own property, `__proto__` included, without touching the prototype. */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else {
    o[k] = v;
  }
}

function half(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
