/**
 * WebTransport as a session: each channel is one bidirectional stream, with qtalk's QUIC
 * mapping (the opener writes the single byte `!` first so that the peer sees the stream at
 * once; the acceptor drops it; EOF is the stream's FIN; closing a channel stops the peer's
 * sending with code 42 and finishes ours; closing the session uses code 42 and the reason
 * `close connection`). Flow control is QUIC's.
 */
import { ChannelClosedError, SessionClosedError } from "../errors.js";
import { ChannelBase, type Channel, type Session } from "./channel.js";

/** A bidirectional stream as WebTransport hands it out. */
export interface BidirectionalStreamLike {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** What this package needs of a `WebTransport` object. */
export interface WebTransportLike {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  readonly incomingBidirectionalStreams: ReadableStream<BidirectionalStreamLike>;
  createBidirectionalStream(): Promise<BidirectionalStreamLike>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

/** The application error code of a stopped stream and of a closed session. */
export const CLOSE_CODE = 42;
/** The reason a closed session gives, which the reference treats as a clean end. */
export const CLOSE_REASON = "close connection";
const ANNOUNCE = new Uint8Array([0x21]);

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
  readonly closed: Promise<Error | undefined>;

  constructor(private readonly wt: WebTransportLike) {
    this.incoming = wt.incomingBidirectionalStreams.getReader();
    this.closed = wt.closed.then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e : new SessionClosedError(String(e))),
    );
    void this.closed.then(() => (this.ended = true));
  }

  get isClosed(): boolean {
    return this.ended;
  }

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

  async accept(): Promise<Channel | null> {
    try {
      const { value, done } = await this.incoming.read();
      if (done || !value) return null;
      return new WebTransportChannel(value, false);
    } catch {
      return null;
    }
  }

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
  private readDone = false;
  private writeDone = false;
  private writeError: Error | undefined;

  constructor(stream: BidirectionalStreamLike, opener: boolean) {
    super();
    this.reader = stream.readable.getReader();
    this.writer = stream.writable.getWriter();
    this.announcePending = !opener;
    // The peer stopping our direction (STOP_SENDING) or the session ending errors the writer.
    this.writer.closed.then(
      () => {},
      (e) => {
        this.writeError ??= new ChannelClosedError(`the peer closed the channel (${describe(e)})`);
        this.markPeerClosed();
      },
    );
    if (opener) this.writer.write(ANNOUNCE).catch(() => {});
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
    if (this.writeError) throw this.writeError;
    if (this.writeDone) throw new ChannelClosedError("write after closeWrite");
    if (data.length === 0) return;
    try {
      await this.writer.ready;
    } catch (e) {
      throw (this.writeError ??= new ChannelClosedError(`the channel is closed (${describe(e)})`));
    }
    // Not awaited: the stream keeps the order, and `ready` above is the backpressure.
    this.writer.write(data).catch((e) => {
      this.writeError ??= new ChannelClosedError(`the channel is closed (${describe(e)})`);
    });
  }

  async closeWrite(): Promise<void> {
    if (this.writeDone) return;
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
      this.writeDone = true;
      this.writer.close().catch(() => {});
    }
    this.writeError ??= new ChannelClosedError("the channel is closed");
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
