import { type Codec, codecByName } from "./codec/index.js";
import type { Session } from "./mux/channel.js";
import { QmuxSession, type QmuxOptions } from "./mux/qmux.js";
import { WebTransportSession, type WebTransportLike } from "./mux/webtransport.js";
import { Peer, type PeerOptions } from "./rpc/peer.js";
import { type WebSocketLike, WebSocketTransport, openWebSocket } from "./transport/websocket.js";
import { QtalkError } from "./errors.js";

/** How {@link connect} reaches the peer. */
export interface ConnectOptions extends PeerOptions {
  /** The session's codec: `"json"` (default), `"cbor"` or a {@link Codec}. Both sides must agree. */
  codec?: Codec | "json" | "cbor";
  /** Limits of a qmux session (WebSocket). */
  qmux?: QmuxOptions;
  /**
   * SHA-256 hashes of the server certificates to accept for WebTransport (development
   * certificates: ECDSA, valid at most 14 days), as hex strings or bytes.
   */
  serverCertificateHashes?: (string | BufferSource)[];
  /** The WebSocket class (default: the global one; in Node 20, `ws`'s, which the Node entry point supplies). */
  WebSocket?: new (url: string, ...rest: any[]) => WebSocketLike;
  /** The WebTransport class (default: the global one, where the runtime has it). */
  WebTransport?: new (url: string, options?: any) => WebTransportLike;
  /** Gives up connecting after this many milliseconds (default 10000). */
  timeout?: number;
}

/** No URL given to {@link connect} could be reached. */
export class ConnectError extends QtalkError {
  override name = "ConnectError";
}

/**
 * Connects to a qtalk peer and returns the {@link Peer}, already answering calls through
 * `options.mux`. `urls` are tried in order: `https://` is WebTransport (skipped where the
 * runtime has none), `ws://` and `wss://` are qmux over WebSocket. Give both to fall back:
 * `connect(["https://host:4433/", "wss://host/"])`.
 */
export async function connect(urls: string | string[], options: ConnectOptions = {}): Promise<Peer> {
  const list = typeof urls === "string" ? [urls] : urls;
  const codec = typeof options.codec === "object" ? options.codec : codecByName(options.codec ?? "json");
  const failures: string[] = [];
  for (const url of list) {
    try {
      const session = await dialWithin(url, options, options.timeout ?? 10_000);
      if (session) return new Peer(session, codec, options);
      failures.push(`${url}: this runtime has no WebTransport`);
    } catch (e) {
      failures.push(`${url}: ${(e as Error)?.message ?? e}`);
    }
  }
  throw new ConnectError(`cannot connect: ${failures.join("; ") || "no URL given"}`);
}

/** A session to `url`; `undefined` for a WebTransport URL where there is no WebTransport. */
export async function dial(url: string, options: ConnectOptions = {}): Promise<Session | undefined> {
  const scheme = url.slice(0, url.indexOf(":")).toLowerCase();
  if (scheme === "https") {
    const WT = options.WebTransport ?? (globalThis as any).WebTransport;
    if (typeof WT !== "function") return undefined;
    const hashes = options.serverCertificateHashes?.map((h) => ({
      algorithm: "sha-256",
      value: typeof h === "string" ? hexBytes(h) : h,
    }));
    const wt: WebTransportLike = new WT(url, hashes?.length ? { serverCertificateHashes: hashes } : {});
    try {
      await wt.ready;
    } catch (e) {
      throw new ConnectError(`WebTransport to ${url} failed: ${(e as Error)?.message ?? e}`);
    }
    return new WebTransportSession(wt);
  }
  if (scheme === "ws" || scheme === "wss") {
    const WS = options.WebSocket ?? (globalThis as any).WebSocket;
    if (typeof WS !== "function") throw new ConnectError("this runtime has no WebSocket");
    const ws = await openWebSocket(url, WS);
    return new QmuxSession(new WebSocketTransport(ws), options.qmux);
  }
  throw new ConnectError(`unsupported URL ${url} (use https:// for WebTransport, ws:// or wss://)`);
}

/** `"aa:bb…"` or `"aabb…"` as bytes. */
export function hexBytes(hex: string): Uint8Array {
  const clean = hex.replace(/[^0-9a-fA-F]/g, "");
  if (clean.length % 2) throw new RangeError(`odd number of hex digits in ${hex}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** {@link dial}, given up after `ms` (a session that comes up later is closed at once). */
function dialWithin(url: string, options: ConnectOptions, ms: number): Promise<Session | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let late = false;
  const dialing = dial(url, options);
  dialing.then((s) => late && s?.close(), () => {});
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new ConnectError(`no connection to ${url} within ${ms} ms`));
    }, ms);
  });
  return Promise.race([dialing, t]).finally(() => clearTimeout(timer));
}
