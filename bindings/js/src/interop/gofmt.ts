/**
 * Go's `%v` rendering of decoded values (what `fmt.Println` prints for an `any`), so that the
 * check prints exactly what the reference prints: `map[foo:bar]`, `[1 2 3]`, `<nil>`, `1e+06`.
 */
export function goFormat(v: unknown): string {
  if (v === null || v === undefined) return "<nil>";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) < 2 ** 63 ? v.toFixed(0) : goFloat(v);
    case "bigint":
      return v.toString();
    case "string":
      return v;
    case "function":
      return "<func>";
  }
  if (v instanceof Uint8Array) return `[${Array.from(v).join(" ")}]`;
  if (Array.isArray(v)) return `[${v.map(goFormat).join(" ")}]`;
  const entries: [unknown, unknown][] = v instanceof Map ? [...v.entries()] : Object.entries(v as object);
  const numeric = entries.every(([k]) => typeof k === "number" || typeof k === "bigint");
  const shown = entries.map(([k, e]) => [k, goFormat(k), e] as const);
  shown.sort((a, b) => (numeric ? Number(a[0]) - Number(b[0]) : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return `map[${shown.map(([, k, e]) => `${k}:${goFormat(e)}`).join(" ")}]`;
}

/** Go's `strconv.FormatFloat(f, 'g', -1, 64)`: exponent form below 1e-4 and from 1e6 (`1e+06`). */
export function goFloat(f: number): string {
  if (Number.isNaN(f)) return "NaN";
  if (f === Infinity) return "+Inf";
  if (f === -Infinity) return "-Inf";
  if (f === 0) return Object.is(f, -0) ? "-0" : "0";
  // JavaScript's exponential form has the shortest round-trip digits: "d.ddde±x".
  const [mantissa, e] = f.toExponential().split("e") as [string, string];
  const exp = Number(e);
  const neg = mantissa.startsWith("-");
  const digits = mantissa.replace(/[-.]/g, "");
  const sign = neg ? "-" : "";
  if (exp < -4 || exp >= 6) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const point = exp + 1; // the decimal point comes after `point` digits
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (digits.length <= point) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/**
 * Equality as a Go peer sees it: map order does not matter, an integer may come back as a
 * bigint or float holding the same number, `true` is not `1`.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return (a ?? null) === (b ?? null);
  const num = (x: unknown) => typeof x === "number" || typeof x === "bigint";
  if (num(a) && num(b)) {
    if (typeof a === "number" && Number.isNaN(a)) return typeof b === "number" && Number.isNaN(b);
    return Number(a) === Number(b) && (typeof a !== "bigint" || typeof b !== "bigint" || a === b);
  }
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
    return a.every((x, i) => x === b[i]);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameValue(x, b[i]));
  }
  const ea: [unknown, unknown][] = a instanceof Map ? [...a.entries()] : Object.entries(a);
  const eb: [unknown, unknown][] = b instanceof Map ? [...b.entries()] : Object.entries(b);
  return (
    ea.length === eb.length && ea.every(([k, v]) => eb.some(([k2, v2]) => sameValue(k, k2) && sameValue(v, v2)))
  );
}
