import type { Codec } from "../codec/types.js";
import type { Channel, Session } from "../mux/channel.js";
import { QmuxSession } from "../mux/qmux.js";
import { RemoteError, RpcError, SessionClosedError } from "../errors.js";
import { Call, Responder, Response } from "./call.js";
import { END, encodeFrames, readFrame } from "./frame.js";
import { type Handler, type HandlerFunc, RespondMux, normalizeSelector } from "./mux.js";

/** How a {@link Peer} serves and calls. */
export interface PeerOptions {
  /** Routes for the calls the other side makes (default: a new, empty {@link RespondMux}). */
  mux?: RespondMux;
  /** Largest rpc frame accepted, in bytes (default 4 MiB); larger ones end the call. */
  maxFrame?: number;
  /** How long a channel the peer opened may wait for its call header, in ms (default 30000). */
  headerTimeout?: number;
  /** Turn received `{"$fnptr": id}` values into functions that call back (default true). */
  resolveCallbacks?: boolean;
  /**
   * Over qmux, keep one channel opened ahead for the next call, so that a call takes one round
   * trip instead of two (default true). A spare older than 5 s is closed instead of used, well
   * before responders give up waiting for its header.
   */
  spareChannel?: boolean;
}

/** How long a spare channel may wait for its call (responders wait 30 s for a header). */
const SPARE_MAX_AGE = 5_000;

/** Where a function that stands for a remote callback keeps the callback's id. */
const FNPTR = Symbol.for("qtalk.fnptr");

/** A function registered for the peer to call back, and how to take it away. */
export interface Callback {
  /** The value to send: `{"$fnptr": id}`. */
  readonly $fnptr: string;
  /** Unregisters the function; false if it was not registered any more. */
  unregister(): boolean;
}

/**
 * One side of a session: it calls the other side and answers its calls, on the same session
 * (either side can call the other: a handler can call back through {@link Call.caller}).
 *
 * Serving starts at construction: every channel the other side opens is a call routed through
 * {@link mux} (callbacks registered on this peer first).
 */
export class Peer {
  /** The routes of the calls the other side makes. */
  readonly mux: RespondMux;
  /** @internal */
  readonly maxFrame: number;
  private readonly headerTimeout: number;
  private readonly resolveCallbacks: boolean;
  private readonly callbacks = new Map<string, HandlerFunc>();
  private readonly spareChannel: boolean;
  private spare: { channel: Promise<Channel>; opened: number } | undefined;

  /** A peer on `session` with `codec` (both sides must use the same), serving at once. */
  constructor(
    /** The session the peer calls and answers on. */
    readonly session: Session,
    /** The session's codec. */
    readonly codec: Codec,
    options: PeerOptions = {},
  ) {
    this.mux = options.mux ?? new RespondMux();
    this.maxFrame = options.maxFrame ?? 4 << 20;
    this.headerTimeout = options.headerTimeout ?? 30_000;
    this.resolveCallbacks = options.resolveCallbacks ?? true;
    // Only where an open costs a round trip (qmux); a WebTransport stream opens at once.
    this.spareChannel = (options.spareChannel ?? true) && session instanceof QmuxSession;
    void this.serve();
  }

  /** Registers `handler` under `pattern` on {@link mux}. */
  handle(pattern: string, handler: Handler): this {
    this.mux.handle(pattern, handler);
    return this;
  }

  /** Settles when the session has ended (with the cause of an abnormal end). */
  get closed(): Promise<Error | undefined> {
    return this.session.closed;
  }

  /** Ends the session. */
  close(): void {
    this.session.close();
  }

  /**
   * Calls `selector` with `args` and returns the reply. The remote's error is thrown as a
   * {@link RemoteError}. Functions inside `args` are sent as callbacks, callable until the
   * reply arrives. A continued answer is closed after its first value: use {@link request}
   * for streams.
   */
  async call(selector: string, args: unknown = null): Promise<unknown> {
    const r = await this.request(selector, args);
    r.close();
    return r.reply;
  }

  /**
   * Calls `selector` with `args` and returns the whole {@link Response}: its reply, further
   * reply values ({@link Response.receive}) and, if the responder continued, the stream of
   * values or bytes that follows (close it when done). Callbacks inside `args` stay
   * registered until the response arrives, or for a continued call until its channel closes.
   */
  async request(selector: string, args: unknown = null): Promise<Response> {
    const registered: string[] = [];
    const payload = this.outgoing(args, registered);
    let ch: Channel;
    try {
      ch = await this.openForCall();
    } catch (e) {
      this.unregisterAll(registered);
      throw e;
    }
    const forget = () => this.unregisterAll(registered);
    try {
      await ch.write(encodeFrames(this.codec, [{ Selector: selector }, payload]));
      const header = await readFrame(ch, this.codec, this.maxFrame);
      if (header === END) throw this.ended("the channel ended before the response");
      const { error, cont } = responseHeader(header);
      // The value after an error header is read too, so that our CLOSE follows it.
      const reply = await readFrame(ch, this.codec, this.maxFrame).catch((e) => {
        if (error === null) throw e;
        return END;
      });
      if (error !== null) throw new RemoteError(error);
      if (reply === END) throw this.ended("the channel ended before the reply");
      const resp = new Response(this, ch, this.incoming(reply), cont);
      // A continued channel is the caller's to close. Otherwise the responder closes it after
      // its values (more than one for a multi-value return), and the CLOSE is answered then.
      if (cont) void ch.peerClosed.then(forget);
      else forget();
      return resp;
    } catch (e) {
      ch.close();
      forget();
      throw e;
    }
  }

  /** A channel for a call: the spare one when it is fresh, and a new spare behind it. */
  private async openForCall(): Promise<Channel> {
    if (!this.spareChannel) return this.session.open();
    const spare = this.spare;
    this.spare = undefined;
    if (!this.session.isClosed) {
      const next = { channel: this.session.open(), opened: Date.now() };
      next.channel.catch(() => {});
      this.spare = next;
    }
    if (spare) {
      if (Date.now() - spare.opened < SPARE_MAX_AGE) {
        try {
          return await spare.channel;
        } catch {
          // refused or failed: open one the ordinary way
        }
      } else {
        spare.channel.then((c) => c.close(), () => {});
      }
    }
    return this.session.open();
  }

  /**
   * Registers `fn` for the other side to call (as selector `id`, with positional arguments),
   * until {@link Callback.unregister} or the end of the session. Send the returned value.
   */
  callback(fn: (...args: any[]) => unknown): Callback {
    const id = freshId();
    this.callbacks.set(id, funcHandler(fn, false));
    const cb = { $fnptr: id } as Callback;
    // Not enumerable: the value encodes as {"$fnptr": id} alone.
    Object.defineProperty(cb, "unregister", { value: () => this.callbacks.delete(id) });
    return cb;
  }

  // --- values in and out ---------------------------------------------------------------------

  /** @internal Replaces functions in `v` by registered callbacks. */
  outgoing(v: unknown, registered?: string[]): unknown {
    if (typeof v === "function") {
      const remote = (v as any)[FNPTR];
      if (typeof remote === "string") return { $fnptr: remote };
      const cb = this.callback(v as (...args: any[]) => unknown);
      registered?.push(cb.$fnptr);
      return { $fnptr: cb.$fnptr };
    }
    if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
    if (!containsFunction(v)) return v;
    if (Array.isArray(v)) return v.map((e) => this.outgoing(e, registered));
    if (v instanceof Map) {
      const m = new Map();
      for (const [k, e] of v) m.set(k, this.outgoing(e, registered));
      return m;
    }
    const o: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(v)) o[k] = this.outgoing(e, registered);
    return o;
  }

  /** @internal Replaces `{"$fnptr": id}` values by functions calling them back. */
  incoming(v: unknown): unknown {
    if (!this.resolveCallbacks || v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = this.incoming(v[i]);
      return v;
    }
    if (v instanceof Map) {
      for (const [k, e] of v) v.set(k, this.incoming(e));
      return v;
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === "$fnptr" && typeof o.$fnptr === "string") {
      const id = o.$fnptr;
      const fn = (...args: unknown[]) => this.call(id, args);
      Object.defineProperty(fn, FNPTR, { value: id });
      return fn;
    }
    for (const k of keys) o[k] = this.incoming(o[k]);
    return o;
  }

  private unregisterAll(ids: string[]): void {
    for (const id of ids) this.callbacks.delete(id);
  }

  private ended(what: string): Error {
    return this.session.isClosed ? new SessionClosedError(`${what}: the session ended`) : new RpcError(what);
  }

  // --- serving -------------------------------------------------------------------------------

  private async serve(): Promise<void> {
    for (;;) {
      const ch = await this.session.accept();
      if (ch === null) break;
      this.respond(ch).catch(() => ch.close());
    }
    this.callbacks.clear();
  }

  private async respond(ch: Channel): Promise<void> {
    let header: unknown;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RpcError("no call header in time")), this.headerTimeout);
      });
      header = await Promise.race([readFrame(ch, this.codec, this.maxFrame), timeout]);
    } catch (e) {
      clearTimeout(timer);
      if (e instanceof RpcError && /no call header/.test(e.message)) ch.close();
      else await this.refuse(ch, `bad call header: ${(e as Error).message}`);
      return;
    }
    clearTimeout(timer);
    if (header === END) {
      ch.close();
      return;
    }
    const selector = callSelector(header);
    if (selector === undefined) {
      await this.refuse(ch, "bad call header: no Selector");
      return;
    }
    const s = normalizeSelector(selector);
    const call = new Call(this, ch, s);
    const r = new Responder(call);
    const handler = this.callbacks.get(s.slice(1)) ?? this.mux.match(s);
    try {
      if (!handler) await r.error(`not found: ${s}`);
      else {
        await handler(r, call);
        if (!r.responded) await r.return(null);
      }
    } catch (e) {
      if (!r.responded) await r.error(e instanceof Error ? e.message : String(e)).catch(() => {});
    } finally {
      // The handler owns a continued call until it returns.
      ch.close();
    }
  }

  private async refuse(ch: Channel, message: string): Promise<void> {
    try {
      await ch.write(encodeFrames(this.codec, [{ Error: message, Continue: false }, null]));
    } catch {
      // the caller is gone
    }
    ch.close();
  }

  /** @internal Reads and drops the call's arguments (bounded by the header timeout). */
  async drainArgs(ch: Channel): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.headerTimeout)));
    await Promise.race([readFrame(ch, this.codec, this.maxFrame).catch(() => {}), timeout]);
    clearTimeout(timer);
  }
}

/** `Error` and `Continue` of a response header (keys matched as Go does, regardless of case). */
function responseHeader(h: unknown): { error: string | null; cont: boolean } {
  if (h === null || typeof h !== "object" || Array.isArray(h))
    throw new RpcError("the response header is not a map");
  let error: string | null = null;
  let cont = false;
  for (const [k, v] of entries(h)) {
    const key = String(k).toLowerCase();
    if (key === "error") error = v === null || v === undefined ? null : String(v);
    else if (key === "continue") cont = v === true;
  }
  return { error, cont };
}

/** The `Selector` of a call header (any case); `null` or `{}` is the empty selector, as in Go. */
function callSelector(h: unknown): string | undefined {
  if (h === null) return "";
  if (typeof h !== "object" || Array.isArray(h) || h instanceof Uint8Array) return undefined;
  for (const [k, v] of entries(h)) {
    if (String(k).toLowerCase() === "selector") return typeof v === "string" ? v : undefined;
  }
  return "";
}

function entries(o: object): [unknown, unknown][] {
  return o instanceof Map ? [...o.entries()] : Object.entries(o);
}

function containsFunction(v: object, depth = 0): boolean {
  if (depth > 64) return false;
  const values = Array.isArray(v) ? v : v instanceof Map ? [...v.values()] : Object.values(v);
  for (const e of values) {
    if (typeof e === "function") return true;
    if (e !== null && typeof e === "object" && !(e instanceof Uint8Array) && containsFunction(e, depth + 1))
      return true;
  }
  return false;
}

/** 128 random bits as 32 lowercase hex digits. */
function freshId(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * A handler for a plain function taking positional parameters, as the reference's exported
 * functions: the arguments must be an array (`null` counts as none) of `fn.length` values
 * (`fn: expected N params, got M` otherwise); the result is the reply (`undefined` → `null`);
 * a thrown error answers its message.
 */
export function func(fn: (...args: any[]) => unknown): HandlerFunc {
  return funcHandler(fn, true);
}

function funcHandler(fn: (...args: any[]) => unknown, checkArity: boolean): HandlerFunc {
  return async (r, call) => {
    const args = await call.receive();
    const list = args === null ? [] : args;
    if (!Array.isArray(list)) return r.error("fn: args: expected an array of parameters");
    if (checkArity && list.length !== fn.length)
      return r.error(`fn: expected ${fn.length} params, got ${list.length}`);
    let result: unknown;
    try {
      result = await fn(...list);
    } catch (e) {
      return r.error(e instanceof Error ? e.message : String(e));
    }
    return r.return(result === undefined ? null : result);
  };
}
