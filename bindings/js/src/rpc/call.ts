import type { Channel } from "../mux/channel.js";
import { ChannelClosedError, RpcError, SessionClosedError } from "../errors.js";
import { END, encodeFrames, readFrame } from "./frame.js";
import type { Peer } from "./peer.js";

/**
 * A call's channel carrying values (rpc frames) and, after a continued response, raw bytes,
 * in both directions. {@link Call} (a handler's view) and {@link Response} (a caller's view)
 * are streams.
 *
 * Values: {@link send}, {@link receive}, `for await (const v of stream)`. Bytes: {@link read},
 * {@link write}, or the WHATWG {@link readable}/{@link writable}. Each direction ends on its own
 * ({@link closeWrite}); {@link close} ends the call.
 */
export class Stream implements AsyncIterable<unknown> {
  /** @internal */
  constructor(
    readonly peer: Peer,
    readonly channel: Channel,
  ) {}

  /** Sends one value. */
  send(value: unknown): Promise<void> {
    return this.channel.write(encodeFrames(this.peer.codec, [this.peer.outgoing(value)]));
  }

  /**
   * The next value. Throws {@link RpcError} when the stream has ended (use `for await` or
   * {@link next} to stop at the end instead).
   */
  async receive(): Promise<unknown> {
    const r = await this.next();
    if (r.done) throw this.endError("the stream ended");
    return r.value;
  }

  /** The next value as an iterator result (`done` at the end of the stream). */
  async next(): Promise<IteratorResult<unknown, undefined>> {
    const v = await readFrame(this.channel, this.peer.codec, this.peer.maxFrame);
    if (v === END) return { done: true, value: undefined };
    return { done: false, value: this.peer.incoming(v) };
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return { next: () => this.next() };
  }

  /** The next raw bytes (at most `max`), or `null` at the end of the peer's stream. */
  read(max?: number): Promise<Uint8Array | null> {
    return this.channel.read(max);
  }

  /** Writes raw bytes. */
  write(data: Uint8Array): Promise<void> {
    return this.channel.write(data);
  }

  /** Ends this side's direction (EOF); values and bytes can still be received. */
  closeWrite(): Promise<void> {
    return this.channel.closeWrite();
  }

  /** Ends the call's channel. */
  close(): void {
    this.channel.close();
  }

  /** Received bytes as a WHATWG stream. */
  get readable(): ReadableStream<Uint8Array> {
    return this.channel.readable;
  }

  /** A WHATWG stream writing raw bytes; closing it sends EOF. */
  get writable(): WritableStream<Uint8Array> {
    return this.channel.writable;
  }

  /** Settles when the other side closed the channel (for a handler: the caller gave up). */
  get peerClosed(): Promise<void> {
    return this.channel.peerClosed;
  }

  /** @internal */
  endError(what: string): Error {
    return this.peer.session.isClosed
      ? new SessionClosedError(`${what}: the session ended`)
      : new RpcError(what);
  }
}

/** A call as its handler sees it. `receive()` first gives the arguments, then any streamed values. */
export class Call extends Stream {
  /** @internal */
  argsRead = false;

  /** @internal */
  constructor(
    peer: Peer,
    channel: Channel,
    /** The normalized selector (`/Upper`, `/users/Join`). */
    readonly selector: string,
  ) {
    super(peer, channel);
  }

  /** The peer that made the call, for calling it back on the same session. */
  get caller(): Peer {
    return this.peer;
  }

  override next(): Promise<IteratorResult<unknown, undefined>> {
    this.argsRead = true;
    return super.next();
  }
}

/** Answers one call: once, with values, an error, or a continuation. */
export class Responder {
  private answered = false;

  /** @internal */
  constructor(private readonly call: Call) {}

  /** Whether the call has been answered. */
  get responded(): boolean {
    return this.answered;
  }

  /** Answers with `values` (`null` when none) and ends the call. */
  async return(...values: unknown[]): Promise<void> {
    await this.answer(null, false, values.length ? values : [null]);
    await this.finish();
  }

  /** Answers with the error `message` (an `Error`'s message) and ends the call. */
  async error(message: string | Error): Promise<void> {
    const text = message instanceof Error ? message.message : String(message);
    await this.answer(text, false, [null]);
    await this.finish();
  }

  /**
   * Answers with `value` and keeps the channel open: the returned stream (the call itself)
   * carries values or bytes both ways from here. The handler must close it eventually.
   */
  async continue(value: unknown = null): Promise<Call> {
    await this.answer(null, true, [value]);
    return this.call;
  }

  private async answer(error: string | null, cont: boolean, values: unknown[]): Promise<void> {
    if (this.answered) throw new RpcError("the call has already been answered");
    this.answered = true;
    const peer = this.call.peer;
    const frames = encodeFrames(peer.codec, [
      { Error: error, Continue: cont },
      ...values.map((v) => peer.outgoing(v)),
    ]);
    await this.call.channel.write(frames).catch((e) => {
      if (!(e instanceof ChannelClosedError) && !(e instanceof SessionClosedError)) throw e;
    });
  }

  /** Waits for unread arguments (a caller whose write fails may never read the answer), then closes. */
  private async finish(): Promise<void> {
    const call = this.call;
    if (!call.argsRead) {
      call.argsRead = true;
      await call.peer.drainArgs(call.channel);
    }
    call.close();
  }
}

/** The answer to a call: its first value, and for a continued call the stream that follows. */
export class Response extends Stream {
  /** @internal */
  constructor(
    peer: Peer,
    channel: Channel,
    /** The first value answered. */
    readonly reply: unknown,
    /** Whether the responder continued the call (the channel stays open). */
    readonly continued: boolean,
  ) {
    super(peer, channel);
  }
}
