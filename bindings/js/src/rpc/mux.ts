import type { Call, Responder } from "./call.js";

/** Answers calls: a function of the responder and the call, or a {@link RespondMux} to route further. */
export type Handler = HandlerFunc | RespondMux;
/** A handler function. Returning without answering answers `null`; throwing answers the error. */
export type HandlerFunc = (r: Responder, call: Call) => void | Promise<void>;

/**
 * A selector as routing sees it: `""` becomes `/`, a leading `/` is added, every `.` becomes
 * `/` (`users.Join` → `/users/Join`).
 */
export function normalizeSelector(s: string): string {
  if (s === "") return "/";
  if (s[0] !== "/") s = "/" + s;
  return s.replaceAll(".", "/");
}

/**
 * Routes calls by selector, as the reference's `RespondMux`: an exact pattern wins, else the
 * longest pattern ending in `/` that prefixes the selector. A mux registered under a pattern
 * routes the rest of the selector itself (`/svc/` + `/svc/Echo` looks up `/Echo` there). A
 * pattern of `""` (i.e. `/`) is the default for everything else.
 */
export class RespondMux {
  private readonly exact = new Map<string, Handler>();
  /** Patterns ending in `/`, longest first. */
  private prefixes: [string, Handler][] = [];

  /** Registers `handler` under `pattern`; throws if the pattern is taken. */
  handle(pattern: string, handler: Handler): this {
    let p = normalizeSelector(pattern);
    if (handler instanceof RespondMux && !p.endsWith("/")) p += "/";
    if (this.exact.has(p)) throw new Error(`rpc: multiple registrations for ${p}`);
    this.exact.set(p, handler);
    if (p.endsWith("/")) {
      this.prefixes.push([p, handler]);
      this.prefixes.sort((a, b) => b[0].length - a[0].length);
    }
    return this;
  }

  /** Removes the handler of `pattern`; false if there was none. */
  remove(pattern: string): boolean {
    const p = normalizeSelector(pattern);
    const had = this.exact.delete(p) || this.exact.delete(p + "/");
    this.prefixes = this.prefixes.filter(([q]) => this.exact.has(q));
    return had;
  }

  /** The handler function for `selector`, or `undefined` when nothing matches. */
  match(selector: string): HandlerFunc | undefined {
    const s = normalizeSelector(selector);
    const h = this.exact.get(s);
    if (h !== undefined && !(h instanceof RespondMux)) return h;
    for (const [p, handler] of this.prefixes) {
      if (!s.startsWith(p)) continue;
      return handler instanceof RespondMux ? handler.match(s.slice(p.length)) : handler;
    }
    return undefined;
  }
}
