import { type Codec, CodecError } from "./types.js";

/**
 * JSON as Go's `json.NewEncoder(w).Encode(v)` writes it: compact, one `\n` after the value,
 * `<`, `>`, `&`, U+2028 and U+2029 escaped, other control characters as `\u00XX` (with `\b`,
 * `\f`, `\n`, `\r`, `\t` short forms), numbers in the shortest form that reads back (Go and
 * JavaScript agree on it, `-0` included), `Uint8Array` as base64 text.
 *
 * Plain objects keep their key order (as a Go struct's fields); `Map`s are written with their
 * keys sorted, as Go writes its maps. NaN, infinities, functions and symbols cannot be encoded.
 *
 * Decoding is `JSON.parse` of the frame (the newline and surrounding whitespace are optional).
 */
export const json: Codec = {
  name: "json",
  encode(value: unknown): Uint8Array {
    const parts: string[] = [];
    write(value, parts, 0);
    parts.push("\n");
    return utf8.encode(parts.join(""));
  },
  decode(bytes: Uint8Array): unknown {
    try {
      return JSON.parse(text.decode(bytes));
    } catch (e) {
      throw new CodecError(`json: ${(e as Error).message}`);
    }
  },
};

const utf8 = new TextEncoder();
const text = new TextDecoder();
const MAX_DEPTH = 512;

function write(v: unknown, out: string[], depth: number): void {
  if (depth > MAX_DEPTH) throw new CodecError("json: value nested too deeply");
  switch (typeof v) {
    case "undefined":
      out.push("null");
      return;
    case "boolean":
      out.push(v ? "true" : "false");
      return;
    case "number":
      out.push(number(v));
      return;
    case "bigint":
      out.push(v.toString());
      return;
    case "string":
      out.push(quote(v));
      return;
    case "object":
      break;
    default:
      throw new CodecError(`json: cannot encode a ${typeof v}`);
  }
  if (v === null) {
    out.push("null");
  } else if (Array.isArray(v)) {
    out.push("[");
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(",");
      write(v[i], out, depth + 1);
    }
    out.push("]");
  } else if (v instanceof Uint8Array) {
    out.push('"', base64(v), '"');
  } else if (v instanceof Map) {
    const entries: [string, unknown][] = [];
    for (const [k, e] of v) {
      if (typeof k === "string") entries.push([k, e]);
      else if ((typeof k === "number" && Number.isInteger(k)) || typeof k === "bigint")
        entries.push([String(k), e]);
      else throw new CodecError(`json: map keys must be strings or integers, not ${typeof k}`);
    }
    entries.sort((a, b) => compareUtf8(a[0], b[0]));
    object(entries, out, depth);
  } else {
    const entries: [string, unknown][] = [];
    for (const k of Object.keys(v)) {
      const e = (v as Record<string, unknown>)[k];
      if (e !== undefined) entries.push([k, e]);
    }
    object(entries, out, depth);
  }
}

function object(entries: [string, unknown][], out: string[], depth: number): void {
  out.push("{");
  for (let i = 0; i < entries.length; i++) {
    if (i > 0) out.push(",");
    out.push(quote(entries[i]![0]), ":");
    write(entries[i]![1], out, depth + 1);
  }
  out.push("}");
}

function number(n: number): string {
  if (!Number.isFinite(n)) throw new CodecError(`json: unsupported value: ${n}`);
  // JavaScript's shortest round-trip form, with exponents from 1e21 and below 1e-6, is Go's.
  return Object.is(n, -0) ? "-0" : String(n);
}

// Characters that need more than copying: quote, backslash, controls, the HTML three, the JS
// line separators and surrogates (lone ones are invalid UTF-8 to Go, which writes U+FFFD).
const SPECIAL = /["\\\u0000-\u001f<>&\u2028\u2029\ud800-\udfff]/;

/** `s` as a quoted JSON string with Go's escaping. */
export function quote(s: string): string {
  if (!SPECIAL.test(s)) return `"${s}"`;
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = "\\\\";
    else if (c === 0x0a) esc = "\\n";
    else if (c === 0x0d) esc = "\\r";
    else if (c === 0x09) esc = "\\t";
    else if (c === 0x08) esc = "\\b";
    else if (c === 0x0c) esc = "\\f";
    else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029)
      esc = "\\u" + c.toString(16).padStart(4, "0");
    else if (c >= 0xd800 && c <= 0xdfff) {
      const next = s.charCodeAt(i + 1);
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++; // a valid pair, copied as it is
        continue;
      }
      esc = "\\ufffd";
    }
    if (esc !== undefined) {
      out += s.slice(start, i) + esc;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

/** Orders strings as their UTF-8 bytes (code point order), as Go sorts map keys. */
function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 with padding, as Go writes `[]byte`. */
function base64(b: Uint8Array): string {
  const out: string[] = [];
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out.push(B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!);
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out.push(B64[n >> 18]! + B64[(n >> 12) & 63]!);
    out.push(i + 1 < b.length ? B64[(n >> 6) & 63]! + "=" : "==");
  }
  return out.join("");
}
