import { ChannelClosedError } from "../errors.js";

/**
 * A session: many channels over one connection, opened and accepted by both sides alike.
 * Implemented by qmux over a byte stream ({@link QmuxSession}) and by WebTransport
 * ({@link WebTransportSession}).
 */
export interface Session {
  /** Opens a channel to the peer. */
  open(): Promise<Channel>;
  /** The next channel the peer opened; `null` once the session has ended. */
  accept(): Promise<Channel | null>;
  /** Ends the session and every channel in it. */
  close(): void;
  /** Settles when the session has ended: with `undefined` for a clean end, else the cause. */
  readonly closed: Promise<Error | undefined>;
  /** Whether the session has ended. */
  readonly isClosed: boolean;
}

/**
 * A bidirectional byte stream inside a session. Each direction ends on its own
 * ({@link Channel.closeWrite}); {@link Channel.close} ends both.
 *
 * One reader at a time: `read`, `readExact` and `readable` must not be used concurrently.
 * Writes may be issued concurrently; they go out in the order they were made.
 */
export interface Channel {
  /** The next bytes received (at most `max`), or `null` at the end of the peer's stream. */
  read(max?: number): Promise<Uint8Array | null>;
  /**
   * Exactly `n` bytes, or `null` when the stream ended before the first of them.
   * Throws {@link ChannelClosedError} when it ends in the middle.
   */
  readExact(n: number): Promise<Uint8Array | null>;
  /** Sends `data` (resolves once it is handed to the transport, waiting only when flow control says so). */
  write(data: Uint8Array): Promise<void>;
  /** Ends this side's stream (EOF); the peer's direction stays open. */
  closeWrite(): Promise<void>;
  /** Ends the channel in both directions. */
  close(): void;
  /**
   * Settles when the channel is over for the peer: it closed the channel (qmux CLOSE, QUIC
   * STOP_SENDING), this side closed it, or the session ended.
   */
  readonly peerClosed: Promise<void>;
  /** The received bytes as a WHATWG stream (created on first use). */
  readonly readable: ReadableStream<Uint8Array>;
  /** A WHATWG stream writing to this channel; closing it sends EOF. */
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * The receiving half shared by both base layers: a queue of received chunks, one waiting
 * reader, and the WHATWG stream views. Subclasses feed it by {@link push}/{@link end} (qmux)
 * or by overriding {@link fill} (WebTransport).
 */
export abstract class ChannelBase implements Channel {
  private chunks: Uint8Array[] = [];
  private first = 0;
  /** Bytes queued and not yet read. */
  protected buffered = 0;
  /** No more bytes will arrive. */
  protected ended = false;
  private wake: (() => void) | undefined;
  private readableView: ReadableStream<Uint8Array> | undefined;
  private writableView: WritableStream<Uint8Array> | undefined;
  private peerClosedResolve!: () => void;
  readonly peerClosed: Promise<void> = new Promise((r) => (this.peerClosedResolve = r));

  abstract write(data: Uint8Array): Promise<void>;
  abstract closeWrite(): Promise<void>;
  abstract close(): void;

  /** Called with the number of bytes the application has taken (window accounting). */
  protected consumed(_n: number): void {}

  /** Waits for more input: by default until {@link push} or {@link end} is called. */
  protected fill(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  protected push(chunk: Uint8Array): void {
    if (chunk.length === 0 || this.ended) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.notify();
  }

  /** No more input; reads return what is queued, then the end. */
  protected end(): void {
    this.ended = true;
    this.notify();
  }

  /** Drops whatever is queued (the application closed the channel). */
  protected discard(): void {
    this.chunks = [];
    this.first = 0;
    this.buffered = 0;
    this.end();
  }

  protected markPeerClosed(): void {
    this.peerClosedResolve();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private take(max: number): Uint8Array {
    let c = this.chunks[this.first]!;
    if (c.length <= max) {
      this.chunks[this.first++] = EMPTY;
      if (this.first > 64 && this.first * 2 > this.chunks.length) {
        this.chunks = this.chunks.slice(this.first);
        this.first = 0;
      }
    } else {
      this.chunks[this.first] = c.subarray(max);
      c = c.subarray(0, max);
    }
    this.buffered -= c.length;
    if (this.buffered === 0) {
      this.chunks = [];
      this.first = 0;
    }
    this.consumed(c.length);
    return c;
  }

  async read(max = Infinity): Promise<Uint8Array | null> {
    if (!(max >= 1)) throw new RangeError("read: max must be at least 1");
    while (this.buffered === 0) {
      if (this.ended) return null;
      await this.fill();
    }
    return this.take(max);
  }

  async readExact(n: number): Promise<Uint8Array | null> {
    if (n === 0) return EMPTY;
    while (this.buffered < n && !this.ended) await this.fill();
    if (this.buffered === 0) return null;
    if (this.buffered < n)
      throw new ChannelClosedError(`the stream ended inside a value (${this.buffered} of ${n} bytes)`);
    const c = this.take(n);
    if (c.length === n) return c;
    const out = new Uint8Array(n);
    out.set(c);
    let at = c.length;
    while (at < n) {
      const more = this.take(n - at);
      out.set(more, at);
      at += more.length;
    }
    return out;
  }

  get readable(): ReadableStream<Uint8Array> {
    this.readableView ??= new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const chunk = await this.read();
          if (chunk === null) controller.close();
          else controller.enqueue(chunk);
        },
        cancel: () => this.close(),
      },
      { highWaterMark: 0 },
    );
    return this.readableView;
  }

  get writable(): WritableStream<Uint8Array> {
    this.writableView ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
    return this.writableView;
  }
}

export const EMPTY = new Uint8Array(0);
