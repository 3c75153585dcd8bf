// RPC between two peers over an in-memory qmux session pair: both sides calling, routing,
// positional functions, callbacks, streaming each way, calls continued into byte streams,
// and what a responder does with callers that misbehave.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import {
  QmuxSession, Peer, RespondMux, func, json, cbor, RemoteError, RpcError,
} from "../dist/index.js";
import { service, callbacks, runCheck } from "../dist/interop.js";
import { memoryPair, RawPeer, settle } from "./helpers.mjs";
import { OPEN, OPEN_CONFIRM, DATA, CLOSE } from "./.build/internal.js";

function pair(codec = json, a = {}, b = {}) {
  const [ta, tb] = memoryPair();
  return [new Peer(new QmuxSession(ta), codec, a), new Peer(new QmuxSession(tb), codec, b)];
}

for (const codec of [json, cbor]) {
  test(`unary calls both ways, errors and routing (${codec.name})`, async () => {
    const [a, b] = pair(codec);
    b.handle("Upper", func((s) => s.toUpperCase()));
    b.handle("Error", func((s) => {
      throw new Error(`${s} [bad]`);
    }));
    b.handle("users.Join", func((name) => `welcome ${name}`));
    const sub = new RespondMux().handle("Echo", async (r, call) => r.return(call.selector, await call.receive()));
    b.handle("svc", sub);
    a.handle("whoami", func(() => "a"));
    b.handle("callback", async (r, call) => r.return(`hello, ${await call.caller.call("whoami")}`));

    assert.equal(await a.call("Upper", ["hello world"]), "HELLO WORLD");
    await assert.rejects(a.call("Error", ["user error"]), (e) => e instanceof RemoteError && e.message === "user error [bad]");
    await assert.rejects(a.call("Nope", ["x"]), { message: "not found: /Nope" });
    await assert.rejects(a.call("Upper", []), { message: "fn: expected 1 params, got 0" });
    await assert.rejects(a.call("Upper", null), { message: "fn: expected 1 params, got 0" });
    await assert.rejects(a.call("Upper", "x"), { message: "fn: args: expected an array of parameters" });
    assert.equal(await a.call("/users/Join", ["ann"]), "welcome ann");
    const r = await a.request("svc.Echo", 5);
    assert.equal(r.reply, "/svc/Echo"); // the handler sees the whole normalized selector
    assert.equal(await r.receive(), 5); // a second reply value
    await assert.rejects(a.call("svc/Other"), { message: "not found: /svc/Other" });
    assert.equal(await a.call("callback"), "hello, a");
    assert.equal(await b.call("whoami"), "a");
    a.close();
  });
}

test("a default handler under \"\" answers what nothing else matches", async () => {
  const [a, b] = pair();
  b.handle("", async (r, call) => r.return(`default ${call.selector}`));
  b.handle("exact", func(() => "exact"));
  assert.equal(await a.call("exact"), "exact");
  assert.equal(await a.call("any.thing"), "default /any/thing");
  a.close();
});

test("handlers: throwing answers the error, returning without an answer answers null", async () => {
  const [a, b] = pair(cbor);
  b.handle("throws", async () => {
    throw new Error("boom");
  });
  b.handle("silent", async () => {});
  b.handle("twice", async (r) => {
    await r.return(1);
    await assert.rejects(r.return(2), RpcError);
  });
  await assert.rejects(a.call("throws"), { message: "boom" });
  assert.equal(await a.call("silent"), null);
  assert.equal(await a.call("twice"), 1);
  a.close();
});

test("callbacks: functions in arguments become {\"$fnptr\"} values the other side calls back", async () => {
  for (const codec of [json, cbor]) {
    const [a, b] = pair(codec);
    let seen;
    b.handle("subscribe", async (r, call) => {
      const [topic, notify] = await call.receive();
      seen = typeof notify;
      const answers = [await notify(`${topic}: 1`), await notify(`${topic}: 2`)];
      await r.return(answers);
    });
    const got = [];
    const answers = await a.call("subscribe", ["news", (text) => (got.push(text), text.length)]);
    assert.equal(seen, "function");
    assert.deepEqual(got, ["news: 1", "news: 2"]);
    assert.deepEqual(answers, [7, 7]);
    // The call is over: its callback is gone.
    b.handle("late", async (r, call) => {
      const [fn] = await call.receive();
      r.return(fn);
    });
    const fn = await a.call("late", [() => 1]);
    await assert.rejects(fn(), { message: /^not found: \/[0-9a-f]{32}$/ });
    // A registered callback lives until unregistered; it travels as {"$fnptr": id}.
    const cb = a.callback((x, y) => x + y);
    b.handle("add", async (r, call) => {
      const [f] = await call.receive();
      r.return(await f(2, 3));
    });
    assert.equal(await a.call("add", [cb]), 5);
    assert.match(cb.$fnptr, /^[0-9a-f]{32}$/);
    assert.equal(cb.unregister(), true);
    a.close();
  }
});

test("the wire form of a callback is {\"$fnptr\": id} in both codecs", () => {
  const [a] = pair();
  const v = a.outgoing(["x", () => 1]);
  assert.deepEqual(Object.keys(v[1]), ["$fnptr"]);
  const id = v[1].$fnptr;
  assert.equal(new TextDecoder().decode(json.encode(v[1])), `{"$fnptr":"${id}"}\n`);
  assert.equal(Buffer.from(cbor.encode(v[1])).toString("hex"), "a166" + Buffer.from("$fnptr").toString("hex") + "7820" + Buffer.from(id).toString("hex"));
  a.close();
});

test("server, client and bidirectional streaming", async () => {
  const [a, b] = pair(cbor);
  b.handle("count", async (r, call) => {
    const n = await call.receive();
    const s = await r.continue(null);
    for (let i = 0; i < n; i++) await s.send(i);
    await s.closeWrite();
  });
  b.handle("collect", async (r, call) => {
    await call.receive();
    const all = [];
    for await (const v of call) all.push(v);
    await r.return(all);
  });
  b.handle("double", async (r, call) => {
    await call.receive();
    const s = await r.continue(null);
    for await (const v of s) await s.send(v * 2);
    await s.closeWrite();
  });
  const counted = await a.request("count", 5);
  assert.equal(counted.continued, true);
  const got = [];
  for await (const v of counted) got.push(v);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  counted.close();

  // Client streaming: values follow the arguments on the same channel, then EOF.
  const r2 = await streamingCall(a, "collect", [1, "two", [3]]);
  assert.deepEqual(r2, [1, "two", [3]]);

  const d = await a.request("double", null);
  const doubled = (async () => {
    const out = [];
    for await (const v of d) out.push(v);
    return out;
  })();
  for (const v of [1, 2, 3]) await d.send(v);
  await d.closeWrite();
  assert.deepEqual(await doubled, [2, 4, 6]);
  d.close();
  a.close();
});

/** A call whose values follow its arguments (client streaming), answered once they end. */
async function streamingCall(peer, selector, values) {
  const { Stream } = await import("../dist/index.js");
  const ch = await peer.session.open();
  const s = new Stream(peer, ch);
  await s.send({ Selector: selector });
  await s.send(null);
  for (const v of values) await s.send(v);
  await s.closeWrite();
  const header = await s.receive();
  assert.equal(header.Error, null);
  const reply = await s.receive();
  s.close();
  return reply;
}

test("a call continued into a byte stream, as WHATWG streams", async () => {
  const [a, b] = pair();
  b.handle("upper-bytes", async (r, call) => {
    await call.receive();
    const s = await r.continue("ready");
    await s.readable
      .pipeThrough(new TransformStream({ transform: (c, ctl) => ctl.enqueue(c.map((x) => (x >= 97 && x <= 122 ? x - 32 : x))) }))
      .pipeTo(s.writable);
  });
  const resp = await a.request("upper-bytes", null);
  assert.equal(resp.reply, "ready");
  const reading = new Response(resp.readable).text();
  const w = resp.writable.getWriter();
  await w.write(new TextEncoder().encode("streams "));
  await w.write(new TextEncoder().encode("of bytes"));
  await w.close();
  assert.equal(await reading, "STREAMS OF BYTES");
  resp.close();
  a.close();
});

test("a handler sees the caller give up (the channel closed) through peerClosed", async () => {
  const [a, b] = pair();
  let cancelled;
  const seen = new Promise((r) => (cancelled = r));
  b.handle("slow", async (r, call) => {
    await call.receive();
    await call.peerClosed;
    cancelled(true);
  });
  const ch = await a.session.open();
  const { Stream } = await import("../dist/index.js");
  const s = new Stream(a, ch);
  await s.send({ Selector: "slow" });
  await s.send(null);
  await settle();
  s.close();
  assert.equal(await seen, true);
  a.close();
});

test("responders: bad call headers are answered with an error; missing ones time out", async () => {
  const [ta, tb] = memoryPair();
  const peer = new Peer(new QmuxSession(ta), json, { headerTimeout: 1000 });
  const raw = new RawPeer(tb);
  raw.send(OPEN, 0, 1 << 20, 1 << 20);
  await settle();
  const id = raw.frames[0].fields[1];
  raw.data(id, Uint8Array.of(0, 0, 0, 2, 0x7b, 0x0a)); // "{\n": not JSON
  await settle();
  const reply = Buffer.concat(raw.frames.filter((f) => f.type === DATA).map((f) => f.payload)).toString();
  assert.match(reply, /"Error":"bad call header: json: [^"]+","Continue":false/);
  assert.equal(raw.frames.filter((f) => f.type === CLOSE).length, 1);

  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    raw.send(OPEN, 1, 1 << 20, 1 << 20);
    await settle();
    assert.equal(raw.frames.filter((f) => f.type === OPEN_CONFIRM).length, 2);
    mock.timers.tick(999);
    await settle();
    assert.equal(raw.frames.filter((f) => f.type === CLOSE).length, 1);
    mock.timers.tick(1);
    await settle();
    assert.equal(raw.frames.filter((f) => f.type === CLOSE).length, 2, "closed after the header timeout");
  } finally {
    mock.timers.reset();
  }
  peer.close();
});

test("an rpc frame over the limit is refused before it is read", async () => {
  const [a, b] = pair(json, {}, { maxFrame: 1000 });
  b.handle("big", func((s) => s.length));
  assert.equal(await a.call("big", ["x".repeat(900)]), 900);
  await assert.rejects(a.call("big", ["x".repeat(2000)]), { message: /bad call header|over the limit|ended/ });
  a.close();
});

for (const codec of [json, cbor]) {
  test(`the check sequence between two JavaScript peers (${codec.name})`, async () => {
    const [a, b] = pair(codec, { mux: callbacks() }, { mux: service() });
    const lines = [];
    assert.equal(await runCheck(a, { out: (l) => lines.push(l) }), 15);
    assert.deepEqual(lines.slice(0, 7), [
      "Error: test",
      "Error: not found: /BadSelector",
      "Unary: 100 100",
      "Unary: true true",
      "Unary: hello hello",
      "Unary: map[foo:bar] map[foo:bar]",
      "Unary: [1 2 3] [1 2 3]",
    ]);
    a.close();
    void b;
  });
}
