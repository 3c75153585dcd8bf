export { type Codec, CodecError } from "./types.js";
export { json } from "./json.js";
export { cbor } from "./cbor.js";

import type { Codec } from "./types.js";
import { json } from "./json.js";
import { cbor } from "./cbor.js";

/** The built-in codec called `name` (`"json"` or `"cbor"`). */
export function codecByName(name: string): Codec {
  if (name === "json") return json;
  if (name === "cbor") return cbor;
  throw new RangeError(`unknown codec ${JSON.stringify(name)} (use "json" or "cbor")`);
}
