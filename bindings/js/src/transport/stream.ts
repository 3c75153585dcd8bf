import type { ByteTransport } from "../mux/qmux.js";

/** The parts of Node's readable and writable streams that {@link NodeStreamTransport} uses. */
export interface NodeReadable {
  on(event: "data", f: (chunk: Uint8Array) => void): unknown;
  on(event: "end" | "close", f: () => void): unknown;
  on(event: "error", f: (e: Error) => void): unknown;
  destroy?(): unknown;
}
export interface NodeWritable {
  write(chunk: Uint8Array): unknown;
  end(): unknown;
  readonly writableLength?: number;
  on(event: "error", f: (e: Error) => void): unknown;
}

/** A pair of Node streams (a socket, a child's pipes, stdin/stdout) as a byte transport. */
export class NodeStreamTransport implements ByteTransport {
  private closed = false;

  constructor(
    private readonly input: NodeReadable,
    private readonly output: NodeWritable,
  ) {
    // A write error (the other end went away) surfaces as the input's end.
    output.on("error", () => {});
  }

  get bufferedAmount(): number {
    return this.output.writableLength ?? 0;
  }

  send(data: Uint8Array): void {
    if (!this.closed) this.output.write(data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.output.end();
    this.input.destroy?.();
  }

  start(onData: (chunk: Uint8Array) => void, onEnd: (error?: Error) => void): void {
    let ended = false;
    const end = (e?: Error) => {
      if (!ended) {
        ended = true;
        onEnd(e);
      }
    };
    this.input.on("data", onData);
    this.input.on("end", () => end());
    this.input.on("close", () => end());
    this.input.on("error", (e) => end(e));
  }
}
