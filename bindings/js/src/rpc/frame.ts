/** rpc frames: a u32 big-endian length, then one codec value. */
import type { Codec } from "../codec/types.js";
import type { Channel } from "../mux/channel.js";
import { RpcError } from "../errors.js";

/** The frames of `values`, back to back in one buffer (one channel write). */
export function encodeFrames(codec: Codec, values: unknown[]): Uint8Array {
  const bodies = values.map((v) => codec.encode(v));
  let size = 0;
  for (const b of bodies) size += 4 + b.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const b of bodies) {
    view.setUint32(at, b.length);
    out.set(b, at + 4);
    at += 4 + b.length;
  }
  return out;
}

/** Marks the end of the value stream. */
export const END: unique symbol = Symbol("end of stream");

/**
 * The next value on `ch`, or {@link END} when the stream ended between frames. A frame over
 * `maxFrame` bytes is refused before anything is allocated for it.
 */
export async function readFrame(ch: Channel, codec: Codec, maxFrame: number): Promise<unknown> {
  const prefix = await ch.readExact(4);
  if (prefix === null) return END;
  const n = ((prefix[0]! << 24) | (prefix[1]! << 16) | (prefix[2]! << 8) | prefix[3]!) >>> 0;
  if (n > maxFrame) throw new RpcError(`rpc frame of ${n} bytes, over the limit of ${maxFrame}`);
  const body = await ch.readExact(n);
  if (body === null && n > 0) throw new RpcError("the stream ended inside an rpc frame");
  return codec.decode(body ?? new Uint8Array(0));
}
