/**
 * A codec turns one value into the bytes of one rpc frame and back. A session uses one codec for
 * all its calls; both peers must agree (nothing on the wire says which).
 *
 * Values are plain JavaScript data: `null` (and `undefined`), booleans, numbers, bigints,
 * strings, `Uint8Array` (Go's `[]byte`), arrays, `Map`s and plain objects.
 */
export interface Codec {
  /** `"json"` or `"cbor"` for the built-in codecs. */
  readonly name: string;
  /** The bytes of one value. Throws {@link CodecError} for a value the codec cannot encode. */
  encode(value: unknown): Uint8Array;
  /** The value in `bytes` (exactly one). Throws {@link CodecError} on malformed input. */
  decode(bytes: Uint8Array): unknown;
}

/** A value could not be encoded, or bytes could not be decoded. */
export class CodecError extends Error {
  override name = "CodecError";
}
