import type { ByteTransport } from "../mux/qmux.js";
import { SessionClosedError } from "../errors.js";

/** What this package needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  /** How binary messages arrive: `"arraybuffer"` (browsers) or `"nodebuffer"` (`ws`). */
  binaryType: string;
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Bytes sent and not yet handed to the network. */
  readonly bufferedAmount: number;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** The connection is open. */
  onopen: ((ev: any) => void) | null;
  /** A message arrived. */
  onmessage: ((ev: { data: unknown }) => void) | null;
  /** The connection closed. */
  onclose: ((ev: any) => void) | null;
  /** The connection failed. */
  onerror: ((ev: any) => void) | null;
}

const OPEN = 1;
const textBytes = new TextEncoder();

/**
 * A WebSocket as a byte stream: each send is one binary message, and the payloads of incoming
 * messages (binary or text) are read back to back, whatever their boundaries.
 */
export class WebSocketTransport implements ByteTransport {
  /** The transport of an open WebSocket. */
  constructor(private readonly ws: WebSocketLike) {
    // Node's `ws` hands out Buffers (Uint8Arrays) without a copy; browsers need "arraybuffer".
    if (ws.binaryType !== "nodebuffer") ws.binaryType = "arraybuffer";
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(data: Uint8Array): void {
    if (this.ws.readyState !== OPEN) throw new SessionClosedError("the WebSocket is closed");
    this.ws.send(data);
  }

  close(): void {
    this.ws.close(1000);
  }

  start(onData: (chunk: Uint8Array) => void, onEnd: (error?: Error) => void): void {
    let ended = false;
    const end = (e?: Error) => {
      if (ended) return;
      ended = true;
      onEnd(e);
    };
    this.ws.onmessage = (ev) => {
      const d = ev.data;
      if (d instanceof ArrayBuffer) onData(new Uint8Array(d));
      else if (d instanceof Uint8Array) onData(d);
      else if (typeof d === "string") onData(textBytes.encode(d));
      else if (Array.isArray(d)) for (const part of d) onData(part as Uint8Array);
    };
    this.ws.onerror = () => end(new SessionClosedError("WebSocket error"));
    // A Close frame, or the connection's end, ends the stream (cleanly: the session checks
    // that it ended between frames).
    this.ws.onclose = () => end();
    if (this.ws.readyState > OPEN) end();
  }
}

/** Opens a WebSocket (`WebSocketCtor` defaults to the global one) and waits until it is open. */
export function openWebSocket(
  url: string,
  WebSocketCtor: new (url: string, ...rest: any[]) => WebSocketLike,
  ...rest: any[]
): Promise<WebSocketLike> {
  return new Promise((resolve, reject) => {
    let ws: WebSocketLike;
    try {
      ws = new WebSocketCtor(url, ...rest);
    } catch (e) {
      reject(e);
      return;
    }
    ws.onopen = () => {
      ws.onopen = ws.onerror = ws.onclose = null;
      resolve(ws);
    };
    ws.onerror = (ev: any) => {
      ws.onopen = ws.onerror = ws.onclose = null;
      reject(new SessionClosedError(`cannot connect to ${url}${ev?.message ? `: ${ev.message}` : ""}`));
    };
    ws.onclose = ws.onerror;
  });
}
