/**
 * qtalk's interoperability test: the interop service ({@link service}), the handlers a checker
 * answers its calls back with ({@link callbacks}), and the reference's check sequence
 * ({@link runCheck}), printing one line per passed check exactly as the reference does.
 * Runs in browsers and Node.
 */
import { RemoteError, SessionClosedError, ProtocolError, ChannelClosedError } from "../errors.js";
import { CodecError } from "../codec/types.js";
import type { Call, Responder, Stream } from "../rpc/call.js";
import { RespondMux } from "../rpc/mux.js";
import type { Peer } from "../rpc/peer.js";
import { goFormat, sameValue } from "./gofmt.js";

export { goFormat, goFloat, sameValue } from "./gofmt.js";

/** Bytes one read of the relays and echoes asks for. */
const READ_CHUNK = 1 << 20;

/** A check found a difference, or got no answer in time. */
export class CheckFailed extends Error {
  override name = "CheckFailed";
}

async function pump(from: Stream, to: Stream): Promise<number> {
  let total = 0;
  for (;;) {
    const chunk = await from.read(READ_CHUNK);
    if (chunk === null) return total;
    await to.write(chunk);
    total += chunk.length;
  }
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The interop service: `Unary`, `Stream`, `Bytes` (each calling the same selector back on its caller) and `Error`. */
export function service(): RespondMux {
  const mux = new RespondMux();
  mux.handle("Unary", async (r: Responder, call: Call) => {
    const params = await call.receive();
    let ret: unknown;
    try {
      ret = await call.caller.call("Unary", params);
    } catch (e) {
      return r.error(`Unary callback: ${message(e)}`);
    }
    await r.return(ret);
  });
  mux.handle("Stream", async (r: Responder, call: Call) => {
    const params = await call.receive();
    let up;
    try {
      up = await call.caller.request("Stream", params);
    } catch (e) {
      return r.error(`Stream callback: ${message(e)}`);
    }
    const down = await r.continue(up.reply);
    try {
      const forward = (async () => {
        for await (const v of down) await up.send(v);
        await up.closeWrite();
      })().catch(() => {});
      for await (const v of up) await down.send(v);
      await down.closeWrite();
      await Promise.race([forward, down.peerClosed]);
    } finally {
      up.close();
    }
  });
  mux.handle("Bytes", async (r: Responder, call: Call) => {
    const params = await call.receive();
    let up;
    try {
      up = await call.caller.request("Bytes", params);
    } catch (e) {
      return r.error(`Bytes callback: ${message(e)}`);
    }
    const down = await r.continue(up.reply);
    try {
      await Promise.all([
        pump(down, up).then(() => up.closeWrite()),
        pump(up, down).then(() => down.closeWrite()),
      ]);
    } finally {
      up.close();
    }
  });
  mux.handle("Error", async (r: Responder, call: Call) => {
    const text = await call.receive();
    await r.error(typeof text === "string" ? text : goFormat(text));
  });
  return mux;
}

/** The handlers a checker answers the service's calls back with: echoes. */
export function callbacks(): RespondMux {
  const mux = new RespondMux();
  mux.handle("Unary", async (r: Responder, call: Call) => r.return(await call.receive()));
  mux.handle("Stream", async (r: Responder, call: Call) => {
    const s = await r.continue(await call.receive());
    for await (const v of s) await s.send(v);
    await s.closeWrite();
  });
  mux.handle("Bytes", async (r: Responder, call: Call) => {
    const s = await r.continue(await call.receive());
    await pump(s, s);
    await s.closeWrite();
  });
  return mux;
}

/** What the Unary and Stream checks send: `100`, `true`, `"hello"`, `{"foo":"bar"}`, `[1,2,3]`. */
export function values(): unknown[] {
  return [100, true, "hello", { foo: "bar" }, [1, 2, 3]];
}

/** How {@link runCheck} runs. */
export interface CheckOptions {
  /** Receives each line as it passes (default: `console.log`). */
  out?: (line: string) => void;
  /** Deadline of each check in milliseconds (default 10000). */
  timeout?: number;
  /** Sizes of the Bytes checks (default 1, 1024 and 1 MiB). */
  byteSizes?: number[];
  /** Size of each write of the Bytes checks (default 1 MiB). */
  writeSize?: number;
}

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Random bytes (crypto's, in pieces of 64 KiB, its limit per call). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

/** Whether `e` means the session or transport broke (exit status 3), as opposed to a check failing. */
export function isTransportFailure(e: unknown): boolean {
  return e instanceof SessionClosedError || e instanceof ProtocolError || e instanceof ChannelClosedError;
}

function unexpected(what: string, e: unknown): Error {
  if (e instanceof RemoteError) return new CheckFailed(`${what}: the peer answered with an error: ${e.message}`);
  if (e instanceof CheckFailed || isTransportFailure(e)) return e as Error;
  const hint = e instanceof CodecError ? " (does the peer use the same codec? json and cbor do not mix)" : "";
  return new CheckFailed(`${what}: ${message(e)}${hint}`);
}

/**
 * Runs the reference's check sequence with `peer` (whose mux must answer {@link callbacks}):
 * `Error`, `BadSelector`, five `Unary`, `Stream` with five values, and `Bytes` of 1 byte,
 * 1 KiB and 1 MiB. Prints one line per passed check, returns how many passed, and throws
 * {@link CheckFailed} at the first difference (a session error as it is).
 */
export async function runCheck(peer: Peer, options: CheckOptions = {}): Promise<number> {
  const out = options.out ?? ((l: string) => console.log(l));
  const timeout = options.timeout ?? 10_000;
  const writeSize = options.writeSize ?? 1 << 20;
  let passed = 0;
  const line = (text: string) => {
    out(text);
    passed++;
  };

  for (const [selector, expected] of [
    ["Error", "test"],
    ["BadSelector", "not found: /BadSelector"],
  ] as const) {
    const what = `${selector}("test")`;
    let got: unknown;
    try {
      got = await within(timeout, what, peer.call(selector, "test"));
    } catch (e) {
      if (!(e instanceof RemoteError)) throw unexpected(what, e);
      if (e.message !== expected)
        throw new CheckFailed(`${what}: expected the error ${JSON.stringify(expected)}, got the error ${JSON.stringify(e.message)}`);
      line(`Error: ${e.message}`);
      continue;
    }
    throw new CheckFailed(`${what}: expected the error ${JSON.stringify(expected)}, got the value ${goFormat(got)}`);
  }

  for (const v of values()) {
    const what = `Unary(${goFormat(v)})`;
    const ret = await within(timeout, what, peer.call("Unary", v)).catch((e) => {
      throw unexpected(what, e);
    });
    if (!sameValue(v, ret)) throw new CheckFailed(`${what}: returned ${goFormat(ret)} instead of the value sent`);
    line(`Unary: ${goFormat(v)} ${goFormat(ret)}`);
  }

  const sent = values();
  const received = await within(timeout, "Stream", streamCheck(peer, sent)).catch((e) => {
    throw unexpected("Stream", e);
  });
  received.forEach((got, i) => {
    if (i >= sent.length)
      throw new CheckFailed(`Stream: sent ${sent.length} values but got more back: ${goFormat(got)}`);
    if (!sameValue(sent[i], got))
      throw new CheckFailed(`Stream: value ${i + 1} came back as ${goFormat(got)} instead of ${goFormat(sent[i])}`);
    line(`Stream: ${goFormat(got)}`);
  });
  if (received.length < sent.length)
    throw new CheckFailed(`Stream: sent ${sent.length} values but the stream ended after ${received.length}`);

  for (const size of options.byteSizes ?? [1, 1024, 1 << 20]) {
    const data = randomBytes(size);
    const what = `Bytes(${size} bytes)`;
    const echoed = await within(timeout, what, bytesCheck(peer, data, writeSize)).catch((e) => {
      throw unexpected(what, e);
    });
    if (echoed.length !== data.length)
      throw new CheckFailed(`${what}: sent ${data.length} bytes, got ${echoed.length} back`);
    const i = echoed.findIndex((b, j) => b !== data[j]);
    if (i >= 0) {
      const hex = (b: number) => "0x" + b.toString(16).padStart(2, "0");
      throw new CheckFailed(`${what}: byte ${i} came back as ${hex(echoed[i]!)} instead of ${hex(data[i]!)}`);
    }
    line(`Bytes: ${echoed.length}`);
  }
  return passed;
}

async function streamCheck(peer: Peer, sent: unknown[]): Promise<unknown[]> {
  const resp = await peer.request("Stream", null);
  try {
    for (const v of sent) await resp.send(v);
    await resp.closeWrite();
    const got: unknown[] = [];
    for await (const v of resp) got.push(v);
    return got;
  } finally {
    resp.close();
  }
}

/** `Bytes(null)`: writes `data` in `writeSize` writes, then EOF, while reading the echo back. */
export async function bytesCheck(peer: Peer, data: Uint8Array, writeSize = 1 << 20): Promise<Uint8Array> {
  const resp = await peer.request("Bytes", null);
  try {
    const write = (async () => {
      for (let i = 0; i < data.length; i += writeSize) await resp.write(data.subarray(i, i + writeSize));
      await resp.closeWrite();
    })();
    const read = (async () => {
      const chunks: Uint8Array[] = [];
      let total = 0;
      for (;;) {
        const c = await resp.read();
        if (c === null) break;
        chunks.push(c);
        total += c.length;
      }
      const all = new Uint8Array(total);
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return all;
    })();
    const [, echoed] = await Promise.all([write, read]);
    return echoed;
  } finally {
    resp.close();
  }
}

/** Wall time since `start` (a `performance.now()`), for the summary line: `812ms`, `1.23s`. */
export function elapsedSince(start: number): string {
  const ms = performance.now() - start;
  return ms < 1000 ? `${ms.toFixed(0)}ms` : `${(ms / 1000).toFixed(2)}s`;
}
