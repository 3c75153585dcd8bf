/**
 * WebTransport as a session: each channel is one bidirectional stream, with qtalk's QUIC
 * mapping (the opener writes the single byte `!` first so that the peer sees the stream at
 * once; the acceptor drops it; EOF is the stream's FIN; closing a channel stops the peer's
 * sending with code 42 and finishes ours; closing the session uses code 42 and the reason
 * `close connection`). Flow control is QUIC's.
 */
import { ChannelClosedError, SessionClosedError } from "../errors.js";
import { ChannelBase, type Channel, type Session } from "./channel.js";
import { macrotask } from "./task.js";

/** A bidirectional stream as WebTransport hands it out. */
export interface BidirectionalStreamLike {
  /** What the peer sends. */
  readonly readable: ReadableStream<Uint8Array>;
  /** What this side sends. */
  readonly writable: WritableStream<Uint8Array>;
}

/** What this package needs of a `WebTransport` object. */
export interface WebTransportLike {
  /** Settles once the session is established. */
  readonly ready: Promise<unknown>;
  /** Settles when the session ends (rejects for an abnormal end). */
  readonly closed: Promise<unknown>;
  /** The streams the peer opens. */
  readonly incomingBidirectionalStreams: ReadableStream<BidirectionalStreamLike>;
  /** Opens a stream. */
  createBidirectionalStream(): Promise<BidirectionalStreamLike>;
  /** Ends the session with an application code and reason. */
  close(info?: { closeCode?: number; reason?: string }): void;
}

/** The application error code of a stopped stream and of a closed session. */
export const CLOSE_CODE = 42;
/** The reason a closed session gives, which the reference treats as a clean end. */
export const CLOSE_REASON = "close connection";
const ANNOUNCE = new Uint8Array([0x21]);
/** Bytes a channel's writes may have waiting in its stream before the next write waits. */
const WRITE_HIGH_WATER = 1 << 20;

/** The reason passed to `cancel`: a `WebTransportError` carrying code 42 where there is one. */
function stopReason(): unknown {
  const E = (globalThis as any).WebTransportError;
  if (typeof E === "function") {
    try {
      return new E("stop", { source: "stream", streamErrorCode: CLOSE_CODE });
    } catch {
      // fall through
    }
  }
  return { streamErrorCode: CLOSE_CODE };
}

/** A session whose channels are the bidirectional streams of a WebTransport connection. */
export class WebTransportSession implements Session {
  private readonly incoming: ReadableStreamDefaultReader<BidirectionalStreamLike>;
  private ended = false;
  /** Settles when the session has ended: `undefined` for a clean end, else the cause. */
  readonly closed: Promise<Error | undefined>;

  /** A session on an established (or establishing) WebTransport. */
  constructor(private readonly wt: WebTransportLike) {
    this.incoming = wt.incomingBidirectionalStreams.getReader();
    this.closed = wt.closed.then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e : new SessionClosedError(String(e))),
    );
    void this.closed.then(() => (this.ended = true));
  }

  /** Whether the session has ended. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Opens a stream and announces it with `!` (no round trip). */
  async open(): Promise<Channel> {
    if (this.ended) throw new SessionClosedError("the session is closed");
    let stream: BidirectionalStreamLike;
    try {
      stream = await this.wt.createBidirectionalStream();
    } catch (e) {
      throw new SessionClosedError(`cannot open a stream: ${(e as Error)?.message ?? e}`);
    }
    return new WebTransportChannel(stream, true);
  }

  /** The next stream the peer opened; `null` once the session ended. */
  async accept(): Promise<Channel | null> {
    try {
      const { value, done } = await this.incoming.read();
      if (done || !value) return null;
      return new WebTransportChannel(value, false);
    } catch {
      return null;
    }
  }

  /** Closes the session with code 42 and the reason `close connection`. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.wt.close({ closeCode: CLOSE_CODE, reason: CLOSE_REASON });
    } catch {
      // already closed
    }
  }
}

/** One bidirectional stream as a channel. */
export class WebTransportChannel extends ChannelBase {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  /** An accepted stream still has the opener's `!` to drop. */
  private announcePending: boolean;
  /** An opened stream has not sent its `!` yet (it leaves with the first write). */
  private announceUnsent: boolean;
  private readDone = false;
  private writeDone = false;
  /** Why writes fail from now on (the Error is made when a write needs it). */
  private writeFailure: (() => Error) | undefined;
  /** Bytes handed to the stream's writer and not yet taken by it. */
  private unsent = 0;
  private drained: (() => void) | undefined;

  /** @internal */
  constructor(stream: BidirectionalStreamLike, opener: boolean) {
    super();
    this.reader = stream.readable.getReader();
    this.writer = stream.writable.getWriter();
    this.announcePending = !opener;
    // The peer stopping our direction (STOP_SENDING) or the session ending errors the writer.
    this.writer.closed.then(
      () => {},
      (e) => {
        this.writeFailure ??= () => new ChannelClosedError(`the peer closed the channel (${describe(e)})`);
        this.markPeerClosed();
      },
    );
    // The `!` goes out with the first write made in this task or the ones right after (a
    // call's request), else on its own: one write, not two, for a call.
    this.announceUnsent = opener;
    if (opener) macrotask(() => this.announce());
  }

  protected override async fill(): Promise<void> {
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await this.reader.read();
    } catch {
      // A reset stream or an ended session: the end of what this side will read.
      r = { done: true, value: undefined };
    }
    if (r.done) {
      this.readDone = true;
      this.end();
      return;
    }
    let chunk = r.value;
    if (this.announcePending && chunk.length > 0) {
      this.announcePending = false;
      chunk = chunk.subarray(1);
    }
    this.push(chunk);
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.writeFailure) throw this.writeFailure();
    if (this.writeDone) throw new ChannelClosedError("write after closeWrite");
    if (data.length === 0) return;
    // Backpressure by the bytes this side has handed over and the stream not yet taken, not by
    // `ready`: browsers let one chunk wait at a time, so waiting for `ready` before each write
    // waits a hop between processes for every packet.
    while (this.unsent > WRITE_HIGH_WATER) {
      await new Promise<void>((resolve) => (this.drained = resolve));
      const failed = this.failure();
      if (failed) throw failed;
    }
    if (this.announceUnsent) {
      this.announceUnsent = false;
      const both = new Uint8Array(1 + data.length);
      both[0] = ANNOUNCE[0]!;
      both.set(data, 1);
      data = both;
    }
    this.unsent += data.length;
    // Not awaited: the stream keeps the order.
    this.writer.write(data).then(
      () => {
        this.unsent -= data.length;
        if (this.unsent <= WRITE_HIGH_WATER / 2) this.wakeWriter();
      },
      (e) => {
        this.writeFailure ??= () => new ChannelClosedError(`the channel is closed (${describe(e)})`);
        this.wakeWriter();
      },
    );
  }

  private announce(): void {
    if (!this.announceUnsent || this.writeFailure) return;
    this.announceUnsent = false;
    this.writer.write(ANNOUNCE).catch(() => {});
  }

  private failure(): Error | undefined {
    return this.writeFailure?.();
  }

  private wakeWriter(): void {
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }

  async closeWrite(): Promise<void> {
    if (this.writeDone) return;
    this.announce();
    this.writeDone = true;
    try {
      await this.writer.close();
    } catch {
      // the peer stopped the stream, or the session ended
    }
  }

  close(): void {
    this.discard();
    if (!this.readDone) {
      this.readDone = true;
      this.reader.cancel(stopReason()).catch(() => {});
    }
    if (!this.writeDone) {
      this.announce();
      this.writeDone = true;
      this.writer.close().catch(() => {});
    }
    this.writeFailure ??= () => new ChannelClosedError("the channel is closed");
    // Nothing more will come from the peer: whoever waits for its close is done waiting.
    this.markPeerClosed();
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
