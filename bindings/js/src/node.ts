/**
 * The Node entry point: everything of the browser one, with `ws` as the WebSocket where the
 * runtime has none (Node 20), and {@link listen} to serve qmux over WebSocket.
 */
import { WebSocket as WsWebSocket, WebSocketServer } from "ws";
import type { AddressInfo } from "node:net";
import { connect as connectAny, type ConnectOptions } from "./connect.js";
import { codecByName } from "./codec/index.js";
import { QmuxSession, type QmuxOptions } from "./mux/qmux.js";
import { Peer, type PeerOptions } from "./rpc/peer.js";
import { WebSocketTransport, type WebSocketLike } from "./transport/websocket.js";
import type { Codec } from "./codec/types.js";

export * from "./index.js";

/** WebSocket messages over this size end the connection (qtalk peers write at most a few MiB). */
const MAX_MESSAGE = 16 << 20;

/** {@link connect} of the browser entry point, with a WebSocket for Node 20. */
export function connect(urls: string | string[], options: ConnectOptions = {}): Promise<Peer> {
  return connectAny(urls, { WebSocket: nodeWebSocket(), ...options });
}

/** The global WebSocket if any, else `ws`'s client (which sends the `Origin` the Go reference requires). */
function nodeWebSocket(): new (url: string) => WebSocketLike {
  const G = (globalThis as any).WebSocket;
  if (typeof G === "function") return G;
  return class extends WsWebSocket {
    constructor(url: string) {
      const u = new URL(url);
      super(url, {
        origin: `${u.protocol === "wss:" ? "https" : "http"}://${u.host}/`,
        perMessageDeflate: false,
        maxPayload: MAX_MESSAGE,
      });
    }
  } as unknown as new (url: string) => WebSocketLike;
}

/** How {@link listen} serves. */
export interface ListenOptions extends PeerOptions {
  /** The sessions' codec: `"json"` (default), `"cbor"` or a {@link Codec}. */
  codec?: Codec | "json" | "cbor";
  /** Limits of each qmux session. */
  qmux?: QmuxOptions;
  /** Called with each session's peer (after it started answering calls). */
  onPeer?: (peer: Peer) => void;
  /**
   * Decides on each handshake's `Origin` header (absent for most non-browser clients). By
   * default every origin is accepted, as the reference's server does: a server on a machine
   * where browsers run should restrict it, or any page could call it.
   */
  verifyOrigin?: (origin: string | undefined) => boolean;
  /** Largest WebSocket message accepted, in bytes (default 16 MiB; peers send far smaller). */
  maxMessage?: number;
}

/** A WebSocket listener serving qtalk sessions. */
export interface Listener {
  /** The URL it listens on (`ws://HOST:PORT/`, the port resolved). */
  readonly url: string;
  /** Stops listening and ends every session. */
  close(): Promise<void>;
}

/**
 * Serves qmux sessions over WebSocket on `url` (`ws://HOST:PORT`, port 0 picks a free one; any
 * path). Each session gets a {@link Peer} answering calls through `options.mux`.
 */
export async function listen(url: string, options: ListenOptions = {}): Promise<Listener> {
  const u = new URL(url);
  if (u.protocol !== "ws:") throw new RangeError(`listen: only ws:// URLs, not ${url}`);
  const codec = typeof options.codec === "object" ? options.codec : codecByName(options.codec ?? "json");
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const verify = options.verifyOrigin;
  const wss = new WebSocketServer({
    host,
    port: Number(u.port || 80),
    perMessageDeflate: false,
    maxPayload: options.maxMessage ?? MAX_MESSAGE,
    ...(verify ? { verifyClient: (info: { origin?: string }) => verify(info.origin || undefined) } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    wss.once("listening", resolve);
    wss.once("error", reject);
  });
  const peers = new Set<Peer>();
  wss.on("connection", (ws) => {
    const session = new QmuxSession(new WebSocketTransport(ws as unknown as WebSocketLike), options.qmux);
    const peer = new Peer(session, codec, options);
    peers.add(peer);
    void session.closed.then(() => peers.delete(peer));
    options.onPeer?.(peer);
  });
  const addr = wss.address() as AddressInfo;
  const shown = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `ws://${shown}:${addr.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of peers) p.close();
        wss.close(() => resolve());
      }),
  };
}

export { NodeStreamTransport, type NodeReadable, type NodeWritable } from "./transport/stream.js";
