// The codecs against what Go writes: tests/vectors/encodings.txt (recorded from the reference)
// and further Go outputs (test/fixtures/go-values.json), byte for byte, plus decoding leniency
// and robustness.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { json, cbor, CodecError } from "../dist/index.js";

const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const fixtures = JSON.parse(readFileSync(new URL("./fixtures/go-values.json", import.meta.url), "utf8"));

/** The JavaScript value of each row of encodings.txt. */
const ROWS = {
  'CallHeader{Selector:"Upper"}': { Selector: "Upper" },
  "ResponseHeader{} (success, no continue)": { Error: null, Continue: false },
  'ResponseHeader{Error:"boom"}': { Error: "boom", Continue: false },
  "ResponseHeader{Continue:true}": { Error: null, Continue: true },
  'args []any{"hello world"}': ["hello world"],
  'reply "HELLO WORLD"': "HELLO WORLD",
  "nil (args nil / reply of Return() / Continue(nil))": null,
  "[]any{}": [],
  "int 100": 100,
  true: true,
  'map[string]any{"foo":"bar"}': { foo: "bar" },
  "[]any{1,2,3}": [1, 2, 3],
  '"<a&b>" (HTML escaping check)': "<a&b>",
  "int64 1073741824": 1073741824,
  "float64 1.5": 1.5,
};

test("every row of tests/vectors/encodings.txt, both codecs, byte for byte", () => {
  const text = readFileSync(new URL("../../../tests/vectors/encodings.txt", import.meta.url), "utf8");
  let codec;
  let rows = 0;
  for (const line of text.split("\n")) {
    const m = /^## codec (\w+)/.exec(line);
    if (m) {
      codec = { json, cbor }[m[1]];
      continue;
    }
    const row = /^(.*?)\s+len=(\d+)\s+hex=([0-9a-f]+)/.exec(line);
    if (!row) continue;
    const label = row[1].trim();
    assert.ok(label in ROWS, `row ${label} has no JavaScript value here`);
    const want = row[3];
    assert.equal(want.length / 2, Number(row[2]));
    assert.equal(hex(codec.encode(ROWS[label])), want, `${codec.name} ${label}`);
    assert.deepEqual(codec.decode(unhex(want)), ROWS[label], `${codec.name} decoding ${label}`);
    rows++;
  }
  assert.equal(rows, 30);
});

test("float64: Go's JSON text and CBOR bytes", () => {
  for (const [goJson, goCbor] of fixtures.f64.rows) {
    const v = cbor.decode(unhex(goCbor));
    assert.equal(typeof v, "number");
    assert.equal(new TextDecoder().decode(json.encode(v)), goJson + "\n", `json of ${goCbor}`);
    assert.equal(json.decode(new TextEncoder().encode(goJson)), v);
    // A JavaScript number with an integer value is written as a CBOR integer (Go decodes
    // either into a float64); the others as Go writes them.
    if (!Number.isSafeInteger(v) || Object.is(v, -0)) assert.equal(hex(cbor.encode(v)), goCbor, goJson);
  }
  for (const [bits, goJson] of fixtures.float_ties.rows) {
    const f = new DataView(unhex(bits).buffer).getFloat64(0);
    assert.equal(new TextDecoder().decode(json.encode(f)), goJson + "\n");
  }
  assert.equal(hex(cbor.encode(NaN)), "f97e00");
  assert.equal(hex(cbor.encode(Infinity)), "f97c00");
  assert.equal(hex(cbor.encode(-Infinity)), "f9fc00");
  for (const bad of [NaN, Infinity, -Infinity]) assert.throws(() => json.encode(bad), CodecError);
});

test("integers: Go's shortest CBOR heads, bigints beyond 2^53", () => {
  for (const [dec, goCbor] of fixtures.ints.rows) {
    const big = BigInt(dec);
    const v = Number.isSafeInteger(Number(dec)) && BigInt(Number(dec)) === big ? Number(dec) : big;
    assert.equal(hex(cbor.encode(v)), goCbor, dec);
    assert.deepEqual(cbor.decode(unhex(goCbor)), v, dec);
    assert.equal(new TextDecoder().decode(json.encode(v)), dec + "\n");
  }
  assert.equal(hex(cbor.encode(2n ** 64n - 1n)), "1bffffffffffffffff");
  assert.throws(() => cbor.encode(2n ** 64n), CodecError);
  assert.equal(cbor.decode(unhex("c249010000000000000000")), 2n ** 64n);
  assert.equal(cbor.decode(unhex("c349010000000000000000")), -(2n ** 64n) - 1n);
});

test("random Go values: decoded from Go's CBOR, our CBOR and JSON are Go's bytes", () => {
  // Go's maps are maps (JSON sorts their keys): decoded objects become Maps for the JSON side.
  const asMaps = (v) =>
    Array.isArray(v)
      ? v.map(asMaps)
      : v && typeof v === "object" && !(v instanceof Uint8Array)
        ? new Map(Object.entries(v).map(([k, e]) => [k, asMaps(e)]))
        : v;
  let exact = 0;
  for (const [goJson, goCbor] of fixtures.random.rows) {
    const v = cbor.decode(unhex(goCbor));
    const ours = hex(cbor.encode(v));
    // The one allowed difference: a float64 with an integral value is a JavaScript number
    // like any integer, written as a CBOR integer (the same number to any decoder).
    if (ours === goCbor) exact++;
    else assert.deepEqual(cbor.decode(unhex(ours)), v, `cbor ${goCbor}`);
    assert.equal(hex(json.encode(asMaps(v))), goJson, `json of ${goCbor}`);
  }
  assert.ok(exact >= fixtures.random.rows.length - 1, `${exact} exact`);
});

test("strings: Go's escaping; bytes: base64 and byte strings", () => {
  const s = fixtures.string;
  assert.equal(hex(json.encode(s.text)), s.json_hex);
  assert.equal(hex(cbor.encode(s.text)), s.cbor_hex);
  assert.equal(json.decode(unhex(s.json_hex)), s.text);
  assert.equal(cbor.decode(unhex(s.cbor_hex)), s.text);
  // A lone surrogate is invalid UTF-8 to Go, which writes U+FFFD.
  assert.equal(new TextDecoder().decode(json.encode("a\ud800b")), '"a\\ufffdb"\n');
  assert.equal(new TextDecoder().decode(json.encode("😀")), '"😀"\n');
  for (const [bytes, j, c] of [
    [[0, 1, 2, 255], '"AAEC/w=="\n', "44000102ff"],
    [[], '""\n', "40"],
    [[104, 101, 108, 108, 111], '"aGVsbG8="\n', "4568656c6c6f"],
  ]) {
    const b = new Uint8Array(bytes);
    assert.equal(new TextDecoder().decode(json.encode(b)), j);
    assert.equal(hex(cbor.encode(b)), c);
    assert.deepEqual(cbor.decode(unhex(c)), b);
  }
});

test("maps: JSON sorts Map keys as Go does, objects keep their order; CBOR keeps both", () => {
  const m = new Map([["b", 1], ["a", 2], ["aa", 3], ["B", 4], ["", 5]]);
  assert.equal(new TextDecoder().decode(json.encode(m)), '{"":5,"B":4,"a":2,"aa":3,"b":1}\n');
  assert.equal(hex(cbor.encode(m)), "a5616201616102626161036142046005");
  const ints = new Map([[10, "a"], [9, "b"], [-1, "c"]]);
  assert.equal(new TextDecoder().decode(json.encode(ints)), '{"-1":"c","10":"a","9":"b"}\n');
  // Code point order, not UTF-16 order: U+FF61 sorts before U+1F600.
  const astral = new Map([["😀", 1], ["｡", 2]]);
  assert.equal(new TextDecoder().decode(json.encode(astral)), '{"｡":2,"😀":1}\n');
  assert.equal(new TextDecoder().decode(json.encode({ Error: null, Continue: false })), '{"Error":null,"Continue":false}\n');
  // Non-text keys decode into a Map.
  const mixed = cbor.decode(unhex("a2016161f5f4"));
  assert.ok(mixed instanceof Map);
  assert.deepEqual([...mixed], [[1, "a"], [true, false]]);
  // "__proto__" is an ordinary key, never the prototype.
  const o = cbor.decode(cbor.encode(new Map([["__proto__", { x: 1 }]])));
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
  assert.deepEqual(Object.keys(o), ["__proto__"]);
});

test("CBOR decoding accepts what Go accepts", () => {
  assert.equal(cbor.decode(unhex("f93e00")), 1.5); // half
  assert.equal(cbor.decode(unhex("fa3fc00000")), 1.5); // single
  assert.equal(cbor.decode(unhex("f7")), null); // undefined
  assert.deepEqual(cbor.decode(unhex("9f010203ff")), [1, 2, 3]); // indefinite array
  assert.deepEqual(cbor.decode(unhex("bf63666f6f63626172ff")), { foo: "bar" }); // indefinite map
  assert.equal(cbor.decode(unhex("7f636162636164ff")), "abcd"); // indefinite text
  assert.equal(cbor.decode(unhex("c074323031332d30332d32315432303a30343a30305a")), "2013-03-21T20:04:00Z"); // tag 0, unwrapped
  assert.equal(cbor.decode(unhex("1864")), 100);
  assert.equal(cbor.decode(unhex("190064")), 100); // a longer head than needed
  assert.equal(json.decode(new TextEncoder().encode(' {"foo" : "bar"} ')).foo, "bar"); // no newline
});

test("malformed input is a CodecError, never a crash or a huge allocation", () => {
  const bad = [
    "", // nothing
    "18", // head cut short
    "62ff", // text cut short
    "9b00000000ffffffff", // an array claiming 2^32 elements
    "bb7fffffffffffffff", // a map claiming 2^63 pairs
    "5affffffff", // a byte string claiming 4 GiB
    "62c328", // invalid UTF-8
    "ff", // a stray break
    "1c", // reserved additional information
    "0102", // bytes after the value
  ];
  for (const b of bad) assert.throws(() => cbor.decode(unhex(b)), CodecError, b);
  assert.throws(() => cbor.decode(new Uint8Array(100000).fill(0x81)), CodecError); // nesting bomb
  assert.throws(() => json.decode(new TextEncoder().encode("{")), CodecError);
  assert.throws(() => json.encode(() => 1), CodecError);
  assert.throws(() => cbor.encode(Symbol("x")), CodecError);
  let deep = [];
  for (let i = 0; i < 10000; i++) deep = [deep];
  assert.throws(() => json.encode(deep), CodecError);
  assert.throws(() => cbor.encode(deep), CodecError);
});
