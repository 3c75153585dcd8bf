/**
 * qmux: channels multiplexed over one reliable byte stream (a WebSocket, a socket, pipes).
 *
 * Flow control never waits per packet: a writer sends as many DATA frames as the peer's window
 * allows and waits only when it is used up (or the transport's own buffer is over its mark).
 * The receiving side grants window back after every max packet consumed until the peer shows
 * that it streams (more than a max packet without waiting for us), then at half the window, so
 * that senders which wait for a WINDOW_ADJUST after each packet never stall either.
 */
import {
  ChannelClosedError,
  OpenRefusedError,
  ProtocolError,
  SessionClosedError,
} from "../errors.js";
import { ChannelBase, type Channel, type Session } from "./channel.js";
import { macrotask } from "./task.js";
import {
  CLOSE,
  DATA,
  EOF,
  FrameBuffer,
  FrameParser,
  MAX_PACKET,
  MIN_PACKET,
  OPEN,
  OPEN_CONFIRM,
  OPEN_FAILURE,
  WINDOW_ADJUST,
} from "./frame.js";

/** A reliable, ordered byte stream carrying one session. */
export interface ByteTransport {
  /** Sends bytes; the transport owns `data` from then on. */
  send(data: Uint8Array): void;
  /** Bytes accepted by {@link send} and not yet written out (0 if unknown). */
  readonly bufferedAmount: number;
  /** Closes the transport (after what was sent). */
  close(): void;
  /** Starts delivery: `onData` for each chunk received, then `onEnd` once (with the cause if abnormal). */
  start(onData: (chunk: Uint8Array) => void, onEnd: (error?: Error) => void): void;
}

/** Limits of a qmux session. Every buffer and queue is bounded by one of them. */
export interface QmuxOptions {
  /** Window granted to the peer on each channel, in bytes (default 4 MiB). */
  window?: number;
  /** Largest DATA payload accepted from the peer (default 256 KiB; 9 ..= 2^31). */
  maxPacket?: number;
  /**
   * Total of the windows of all channels, i.e. what the peer can make this side buffer
   * (default 32 MiB). A new channel gets what is left of it, up to `window`; when less than
   * 64 KiB is left, it starts with 4 KiB, and windows grow back (up to `window`) as the
   * application reads once there is room again. Opens are never refused for the budget (a
   * peer that waits for its own calls could deadlock): a session holds at most the budget plus
   * 4 KiB per channel.
   */
  memoryBudget?: number;
  /** Channels at once, opened or accepted (default 1024); the peer's OPENs past it are refused. */
  maxChannels?: number;
  /** Channels the peer opened that wait for {@link QmuxSession.accept} (default 256; more are refused). */
  acceptBacklog?: number;
  /** Writers wait while the transport holds more than this many unsent bytes (default 4 MiB). */
  transportHighWater?: number;
  /**
   * How many freed channel ids wait before they are given out again (default 256). The
   * reference may send a DATA frame after its CLOSE; the delay keeps such a frame from landing
   * on a new channel. 0 reuses the lowest free id at once, exactly as the reference allocates.
   */
  idReuseDelay?: number;
}

interface Config {
  window: number;
  maxPacket: number;
  memoryBudget: number;
  maxChannels: number;
  acceptBacklog: number;
  transportHighWater: number;
  idReuseDelay: number;
}



/** The smallest share of the memory budget a new channel takes while there is some left. */
const MIN_GRANT = 64 << 10;
/** The window of a channel opened once the budget is spent (it grows as the budget frees). */
const FLOOR_WINDOW = 4 << 10;
/** The largest DATA payload this side sends, whatever the peer accepts (one transport message ≤ ~1 MiB). */
const MAX_SEND_PACKET = 1 << 20;
/** Batches of frames are flushed before they grow past this. */
const MAX_BATCH = 1 << 20;
const U32_MAX = 0xffffffff;

function config(o: QmuxOptions = {}): Config {
  const c: Config = {
    window: o.window ?? 4 << 20,
    maxPacket: o.maxPacket ?? 256 << 10,
    memoryBudget: o.memoryBudget ?? 32 << 20,
    maxChannels: o.maxChannels ?? 1024,
    acceptBacklog: o.acceptBacklog ?? 256,
    transportHighWater: o.transportHighWater ?? 4 << 20,
    idReuseDelay: o.idReuseDelay ?? 256,
  };
  const int = (name: keyof Config, min: number, max: number) => {
    const v = c[name];
    if (!Number.isInteger(v) || v < min || v > max)
      throw new RangeError(`qmux: ${name} must be an integer in ${min}..=${max}, not ${v}`);
  };
  int("maxPacket", MIN_PACKET, MAX_PACKET);
  int("window", 1, U32_MAX);
  int("memoryBudget", 0, Number.MAX_SAFE_INTEGER);
  int("maxChannels", 1, U32_MAX);
  int("acceptBacklog", 1, U32_MAX);
  int("transportHighWater", 1, Number.MAX_SAFE_INTEGER);
  int("idReuseDelay", 0, U32_MAX);
  return c;
}

/** A qmux session over a {@link ByteTransport}. Both sides open and accept channels alike. */
export class QmuxSession implements Session {
  private readonly cfg: Config;
  private readonly channels = new Map<number, QmuxChannel>();
  /** Ids never given out start here. */
  private nextId = 0;
  /** Freed ids waiting out the reuse delay, oldest first. */
  private readonly quarantine: number[] = [];
  /** Freed ids ready for reuse, lowest first. */
  private readonly reusable: number[] = [];
  private readonly incoming: QmuxChannel[] = [];
  private readonly acceptWaiters: ((c: QmuxChannel | null) => void)[] = [];
  private readonly out = new FrameBuffer();
  private flushQueued = false;
  private lazyQueued = false;
  private reserved = 0;
  private readonly parser: FrameParser;
  private drainWaiters: (() => void)[] = [];
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private ended = false;
  private endError: Error | undefined;
  private resolveClosed!: (e: Error | undefined) => void;
  /** Settles when the session has ended: `undefined` for a clean end, else the cause. */
  readonly closed: Promise<Error | undefined> = new Promise((r) => (this.resolveClosed = r));

  /** Starts a session on `transport` (which must not have started). */
  constructor(
    private readonly transport: ByteTransport,
    options?: QmuxOptions,
  ) {
    this.cfg = config(options);
    this.parser = new FrameParser({
      frame: (t, f) => this.onFrame(t, f),
      dataHeader: (id, n) => this.onDataHeader(id, n),
      dataPiece: (id, p) => this.channels.get(id)?.received(p),
    });
    transport.start(
      (chunk) => {
        if (this.ended) return;
        try {
          this.parser.push(chunk);
        } catch (e) {
          this.fail(e instanceof Error ? e : new ProtocolError(String(e)));
        }
      },
      (error) => {
        if (!error && !this.parser.atBoundary)
          error = new ProtocolError("the transport ended inside a frame");
        this.shutdown(error);
      },
    );
  }

  /** Whether the session has ended. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** The cause of an abnormal end, once ended. */
  get error(): Error | undefined {
    return this.endError;
  }

  /** Channels in use (opening, open, or waiting for the peer's CLOSE). */
  get channelCount(): number {
    return this.channels.size;
  }

  /** Opens a channel: OPEN, then the peer's OPEN_CONFIRM (one round trip). */
  open(): Promise<Channel> {
    if (this.ended) return Promise.reject(this.closedError());
    const ch = this.newChannel(this.windowFor());
    this.frame(OPEN, ch.localId, ch.window, this.cfg.maxPacket);
    return ch.opened;
  }

  /** The next channel the peer opened (already confirmed); `null` once the session ended. */
  accept(): Promise<Channel | null> {
    const c = this.incoming.shift();
    if (c) return Promise.resolve(c);
    if (this.ended) return Promise.resolve(null);
    return new Promise((r) => this.acceptWaiters.push(r));
  }

  /** Sends what is queued, then closes the transport; every channel ends. */
  close(): void {
    if (this.ended) return;
    this.flush();
    this.shutdown(undefined);
  }

  // --- incoming frames -----------------------------------------------------------------------

  private onFrame(type: number, f: number[]): void {
    if (type === OPEN) return this.onOpen(f[0]!, f[1]!, f[2]!);
    const id = f[0]!;
    const ch = this.channels.get(id);
    if (!ch) {
      // An id freed by a finished CLOSE handshake: frames the peer sent before it saw ours
      // (the reference can even send DATA after its own CLOSE). Ids are not reused soon.
      if (this.wasUsed(id) && type !== OPEN_CONFIRM && type !== OPEN_FAILURE) return;
      throw new ProtocolError(`frame ${type} for unknown channel ${id}`);
    }
    switch (type) {
      case OPEN_CONFIRM:
        return ch.confirmed(f[1]!, f[2]!, f[3]!);
      case OPEN_FAILURE:
        return ch.refused();
      case WINDOW_ADJUST:
        return ch.adjust(f[1]!);
      case EOF:
        return ch.gotEof();
      case CLOSE:
        return ch.gotClose();
    }
  }

  private onOpen(peerId: number, window: number, maxPacket: number): void {
    if (
      maxPacket < MIN_PACKET ||
      maxPacket > MAX_PACKET ||
      this.incoming.length >= this.cfg.acceptBacklog ||
      this.channels.size >= this.cfg.maxChannels
    ) {
      this.frame(OPEN_FAILURE, peerId);
      return;
    }
    const ch = this.newChannel(this.windowFor());
    ch.remoteId = peerId;
    ch.remoteWindow = window;
    ch.remoteMaxPacket = maxPacket;
    ch.isOpen = true;
    this.frame(OPEN_CONFIRM, peerId, ch.localId, ch.window, this.cfg.maxPacket);
    const w = this.acceptWaiters.shift();
    if (w) w(ch);
    else this.incoming.push(ch);
  }

  private onDataHeader(id: number, length: number): void {
    const ch = this.channels.get(id);
    if (!ch) {
      if (this.wasUsed(id)) return; // as in onFrame: late frames of a finished channel
      throw new ProtocolError(`DATA for unknown channel ${id}`);
    }
    if (length > this.cfg.maxPacket)
      throw new ProtocolError(`DATA of ${length} bytes on channel ${id}, over the max packet ${this.cfg.maxPacket}`);
    ch.dataHeader(length);
  }

  // --- channels ------------------------------------------------------------------------------

  /** The window for a new channel: what the memory budget has left, up to a full window. */
  private windowFor(): number {
    const want = this.cfg.window;
    const grant = Math.min(want, Math.max(0, this.cfg.memoryBudget - this.reserved));
    return grant >= Math.min(want, MIN_GRANT) ? grant : Math.min(want, FLOOR_WINDOW);
  }

  /** @internal Reserves up to `want` more of the budget for a channel's window; returns how much. */
  grow(want: number): number {
    const left = this.cfg.memoryBudget - this.reserved;
    const n = Math.max(0, Math.min(want, Math.floor(left / 2)));
    this.reserved += n;
    return n;
  }

  /** @internal The configured window (a channel's window grows back up to it). */
  get fullWindow(): number {
    return this.cfg.window;
  }

  private newChannel(window: number): QmuxChannel {
    let id: number;
    if (this.reusable.length > 0) id = this.reusable.shift()!;
    else if (this.nextId <= U32_MAX) id = this.nextId++;
    else throw new SessionClosedError("no channel id left");
    const ch = new QmuxChannel(this, id, window, this.cfg.maxPacket);
    this.channels.set(id, ch);
    this.reserved += window;
    return ch;
  }

  /** Whether `id` belonged to a channel that is gone (its late frames are dropped). */
  private wasUsed(id: number): boolean {
    return id < this.nextId && !this.channels.has(id);
  }

  /** @internal The CLOSE handshake of `ch` is complete (or its open failed): its id is free. */
  release(ch: QmuxChannel): void {
    if (this.channels.get(ch.localId) !== ch) return;
    this.channels.delete(ch.localId);
    this.reserved -= ch.window;
    this.quarantine.push(ch.localId);
    while (this.quarantine.length > this.cfg.idReuseDelay) {
      const id = this.quarantine.shift()!;
      let at = this.reusable.length;
      while (at > 0 && this.reusable[at - 1]! > id) at--;
      this.reusable.splice(at, 0, id);
    }
  }

  // --- output --------------------------------------------------------------------------------

  /** @internal Queues a frame of fixed fields, to go out at the end of the current task. */
  frame(type: number, a: number, b?: number, c?: number, d?: number): void {
    if (this.ended) return;
    this.out.frame(type, a, b, c, d);
    this.queueFlush();
  }

  /**
   * @internal Queues a frame nobody waits on at once (a WINDOW_ADJUST, the answer to a CLOSE):
   * it goes out with the next frames the application writes in the tasks that follow, or on
   * its own after them (one transport write per call instead of two).
   */
  lazyFrame(type: number, a: number, b?: number): void {
    if (this.ended) return;
    this.out.frame(type, a, b);
    if (this.flushQueued || this.lazyQueued) return;
    this.lazyQueued = true;
    macrotask(() => {
      this.lazyQueued = false;
      this.flush();
    });
  }

  /** @internal Queues a DATA frame (its payload copied). */
  data(id: number, payload: Uint8Array): void {
    if (this.ended) return;
    if (this.out.len > 0 && this.out.len + payload.length > MAX_BATCH) this.flush();
    this.out.data(id, payload);
    this.queueFlush();
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  /** Writes the queued frames as one transport write. */
  private flush(): void {
    this.flushQueued = false;
    if (this.out.len === 0 || this.ended) return;
    try {
      this.transport.send(this.out.take());
    } catch (e) {
      this.shutdown(e instanceof Error ? e : new SessionClosedError(String(e)));
    }
  }

  /** @internal Resolves once the transport's buffer is under its high-water mark. */
  drain(): Promise<void> | undefined {
    if (this.ended || this.transport.bufferedAmount <= this.cfg.transportHighWater) return undefined;
    return new Promise((resolve) => {
      this.drainWaiters.push(resolve);
      this.pollDrain();
    });
  }

  private pollDrain(): void {
    if (this.drainTimer !== undefined) return;
    // Browsers signal no "drained" event for WebSocket: look again shortly.
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      if (this.ended || this.transport.bufferedAmount <= this.cfg.transportHighWater / 2) {
        const ws = this.drainWaiters;
        this.drainWaiters = [];
        for (const w of ws) w();
      } else {
        this.pollDrain();
      }
    }, 1);
  }

  // --- the end -------------------------------------------------------------------------------

  /** @internal */
  closedError(): SessionClosedError {
    return new SessionClosedError(
      this.endError ? `the session ended: ${this.endError.message}` : "the session is closed",
    );
  }

  private fail(error: Error): void {
    this.shutdown(error);
  }

  private shutdown(error: Error | undefined): void {
    if (this.ended) return;
    this.endError = error;
    this.ended = true;
    try {
      this.transport.close();
    } catch {
      // already closed
    }
    for (const ch of [...this.channels.values()]) ch.sessionEnded();
    this.channels.clear();
    for (const w of this.acceptWaiters.splice(0)) w(null);
    for (const ch of this.incoming.splice(0)) ch.sessionEnded();
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    for (const w of this.drainWaiters.splice(0)) w();
    this.resolveClosed(error);
  }
}

const peerClosed = () => new ChannelClosedError("the peer closed the channel");
const closedByUs = () => new ChannelClosedError("the channel is closed");

/** A channel of a {@link QmuxSession}. */
export class QmuxChannel extends ChannelBase {
  /** @internal The peer's id for this channel. */
  remoteId = 0;
  /** @internal Confirmed (opened by us) or accepted. */
  isOpen = false;
  /** @internal What this side may still send. */
  remoteWindow = 0;
  /** @internal The largest DATA payload the peer accepts. */
  remoteMaxPacket = 0;
  /** What the peer may still send. */
  private recvWindow: number;
  /** Consumed by the application and not yet granted back. */
  private unacked = 0;
  /** Received since the last WINDOW_ADJUST this side sent. */
  private sinceAdjust = 0;
  /** The peer has sent more than a max packet without waiting for an adjust. */
  private streams = false;
  private sentEof = false;
  private sentClose = false;
  private gotCloseFrame = false;
  private closeOnConfirm = false;
  /** Why writes fail from now on (an Error is made only when a write needs it: stacks cost). */
  private writeFailure: (() => Error) | undefined;
  private openSettled = false;
  private writeWake: (() => void) | undefined;
  private writeTail: Promise<void> = Promise.resolve();
  private resolveOpen!: (c: Channel) => void;
  private rejectOpen!: (e: Error) => void;
  /** @internal Settles when the peer answers the OPEN. */
  readonly opened: Promise<Channel>;

  /** @internal */
  constructor(
    private readonly session: QmuxSession,
    /** This side's id for the channel (the one the peer's frames name). */
    readonly localId: number,
    /** @internal The window this side grants: its reservation of the memory budget. */
    public window: number,
    private readonly maxPacket: number,
  ) {
    super();
    this.recvWindow = window;
    this.opened = new Promise((resolve, reject) => {
      this.resolveOpen = resolve;
      this.rejectOpen = reject;
    });
    this.opened.catch(() => {});
  }

  // --- from the session ----------------------------------------------------------------------

  /** @internal */
  confirmed(remoteId: number, window: number, maxPacket: number): void {
    if (this.isOpen) throw new ProtocolError(`OPEN_CONFIRM for channel ${this.localId}, which is open`);
    if (maxPacket < MIN_PACKET || maxPacket > MAX_PACKET)
      throw new ProtocolError(`OPEN_CONFIRM with max packet ${maxPacket}`);
    this.remoteId = remoteId;
    this.remoteMaxPacket = maxPacket;
    this.isOpen = true;
    this.adjust(window);
    if (this.closeOnConfirm) this.sendClose();
    this.openSettled = true;
    this.resolveOpen(this);
  }

  /** @internal */
  refused(): void {
    if (this.isOpen) throw new ProtocolError(`OPEN_FAILURE for channel ${this.localId}, which is open`);
    this.session.release(this);
    this.end();
    this.openSettled = true;
    this.rejectOpen(new OpenRefusedError("the peer refused the channel"));
  }

  /** @internal */
  adjust(n: number): void {
    if (this.remoteWindow + n > U32_MAX) throw new ProtocolError("WINDOW_ADJUST beyond 2^32-1");
    this.remoteWindow += n;
    if (n > 0) this.wakeWriter();
  }

  /** @internal Validates a DATA header against the window before its payload is read. */
  dataHeader(length: number): void {
    if (length > this.recvWindow)
      throw new ProtocolError(`DATA of ${length} bytes on channel ${this.localId}, over the window ${this.recvWindow}`);
    this.recvWindow -= length;
    this.sinceAdjust += length;
    if (this.sinceAdjust > this.maxPacket) this.streams = true;
  }

  /** @internal */
  received(piece: Uint8Array): void {
    // After this side's CLOSE, or after the peer's EOF, data is counted but dropped.
    if (!this.sentClose) this.push(piece);
  }

  /** @internal */
  gotEof(): void {
    this.end();
  }

  /** @internal */
  gotClose(): void {
    if (this.gotCloseFrame) throw new ProtocolError(`second CLOSE for channel ${this.localId}`);
    this.gotCloseFrame = true;
    this.end();
    this.failWrites(peerClosed);
    this.markPeerClosed();
    if (!this.isOpen) {
      // The reference can send CLOSE before its OPEN_CONFIRM: answer once we know its id.
      this.closeOnConfirm = true;
      return;
    }
    if (!this.sentClose) this.sendClose();
    else this.session.release(this);
  }

  /** @internal */
  sessionEnded(): void {
    this.end();
    this.failWrites(() => this.session.closedError());
    this.markPeerClosed();
    if (!this.openSettled) {
      this.openSettled = true;
      this.rejectOpen(this.session.closedError());
    }
  }

  // --- flow control --------------------------------------------------------------------------

  protected override consumed(n: number): void {
    this.unacked += n;
    const threshold = this.streams ? this.window >>> 1 : Math.min(this.maxPacket, this.window >>> 1);
    if (this.unacked < threshold || this.sentClose || this.gotCloseFrame) return;
    let grant = this.unacked;
    // A window made small by a short budget grows back when there is room.
    if (this.window < this.session.fullWindow) {
      const more = this.session.grow(this.session.fullWindow - this.window);
      this.window += more;
      grant += more;
    }
    this.unacked = 0;
    this.sinceAdjust = 0;
    this.recvWindow += grant;
    this.session.lazyFrame(WINDOW_ADJUST, this.remoteId, grant);
  }

  private wakeWriter(): void {
    const w = this.writeWake;
    this.writeWake = undefined;
    w?.();
  }

  private failWrites(why: () => Error): void {
    this.writeFailure ??= why;
    this.wakeWriter();
  }

  // --- the application's side ----------------------------------------------------------------

  write(data: Uint8Array): Promise<void> {
    const run = this.writeTail.then(() => this.writeNow(data));
    this.writeTail = run.catch(() => {});
    return run;
  }

  private async writeNow(data: Uint8Array): Promise<void> {
    let at = 0;
    while (at < data.length) {
      if (this.writeFailure) throw this.writeFailure();
      if (this.sentEof) throw new ChannelClosedError("write after closeWrite");
      if (this.remoteWindow === 0) {
        await new Promise<void>((r) => (this.writeWake = r));
        continue;
      }
      const n = Math.min(data.length - at, this.remoteWindow, this.remoteMaxPacket, MAX_SEND_PACKET);
      this.remoteWindow -= n;
      this.session.data(this.remoteId, data.subarray(at, at + n));
      at += n;
      const d = this.session.drain();
      if (d) await d;
    }
  }

  async closeWrite(): Promise<void> {
    await this.writeTail;
    if (this.sentEof || this.sentClose || this.gotCloseFrame) return;
    if (this.writeFailure) throw this.writeFailure();
    this.sentEof = true;
    this.session.frame(EOF, this.remoteId);
  }

  close(): void {
    this.discard();
    this.failWrites(closedByUs);
    this.markPeerClosed();
    if (this.sentClose || !this.isOpen) return;
    this.sendClose();
  }

  private sendClose(): void {
    this.sentClose = true;
    if (this.gotCloseFrame) this.session.lazyFrame(CLOSE, this.remoteId);
    else this.session.frame(CLOSE, this.remoteId);
    if (this.gotCloseFrame) this.session.release(this);
  }
}
