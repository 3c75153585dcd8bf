// In headless Chromium: the check sequence and the 16 MiB exchange against the Rust
// `qtalk interop` over WebSocket and over WebTransport (when the qtalk command serves
// https://), both codecs; and the README's browser quick start against a Node server.
//
// CHROMIUM: the browser (default /usr/bin/chromium); without it these tests fail, unless
// QTALK_SKIP_BROWSER=1 (then they print SKIPPED).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromiumMissing, launch, openPage, serveFiles } from "./browser-util.mjs";
import { listen, RespondMux, func } from "../dist/node.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const QTALK = process.env.QTALK_BIN ?? `${repo}target/debug/qtalk`;
const LINES = readFileSync(`${repo}tests/vectors/cli_check/cbor_check_output.txt`, "utf8").trim().split("\n");
const CODECS = ["cbor", "json"];

const missing = chromiumMissing();
const skip = missing && process.env.QTALK_SKIP_BROWSER === "1" ? `SKIPPED: ${missing}` : false;
let browser;
let files;
let page;
const servers = [];

/**
 * `qtalk interop --listen URL`; resolves with the listening URL and, for https://, the SHA-256
 * of its certificate (printed for `serverCertificateHashes`), or with `undefined` when this
 * qtalk does not serve that scheme (it exits at once).
 */
function qtalkInterop(listenUrl, codec) {
  return new Promise((resolve, reject) => {
    const child = spawn(QTALK, ["interop", "--listen", listenUrl], {
      env: { ...process.env, QTALK_CODEC: codec },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`qtalk interop printed no address: ${err}`)), 20_000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = /listening on (\S+)\r?\n/.exec(err);
      const hash = /certificate sha-256: ([0-9a-fA-F:]+)\r?\n/.exec(err);
      if (m && (!m[1].startsWith("https") || hash)) {
        clearTimeout(timer);
        servers.push(child);
        resolve({ url: m[1], hash: hash?.[1] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 2) resolve(undefined);
      else reject(new Error(`qtalk interop exited with ${code}: ${err}`));
    });
    child.on("error", reject);
  });
}

/** A WebTransport server of the Rust qtalk, or why there is none. */
async function webTransportServer(codec) {
  const s = await qtalkInterop("https://127.0.0.1:0/", codec);
  if (!s && process.env.QTALK_REQUIRE_WEBTRANSPORT === "1")
    assert.fail("QTALK_REQUIRE_WEBTRANSPORT=1 but this qtalk serves no https:// (WebTransport)");
  return s;
}

before(async () => {
  if (skip) return;
  assert.ok(!missing, missing);
  assert.ok(existsSync(QTALK), `no Rust qtalk at ${QTALK}`);
  files = await serveFiles();
  browser = await launch();
  page = await openPage(browser, `${files.origin}/test/browser/page.html`);
});

after(async () => {
  await browser?.close();
  await files?.close();
  for (const s of servers) s.kill("SIGTERM");
});

for (const codec of CODECS) {
  test(`Chromium → Rust over WebSocket: the check sequence and 16 MiB in 1 MiB writes (${codec})`, { skip }, async () => {
    const { url } = await qtalkInterop("ws://127.0.0.1:0", codec);
    const r = await page.evaluate(([u, c]) => window.qtalkCheck(u, c), [url, codec]);
    assert.equal(r.error, undefined, `${r.error}\n${r.lines.join("\n")}`);
    assert.deepEqual(r.lines, LINES);
    assert.equal(r.transport, "websocket");
    const b = await page.evaluate(([u, c]) => window.qtalkBytes(u, c, undefined, 16 << 20, 1 << 20), [url, codec]);
    assert.equal(b.error, undefined, b.error);
    assert.equal(b.received, 16 << 20);
    assert.ok(b.ok, "the echo differs");
  });
}

for (const codec of CODECS) {
  test(`Chromium → Rust over WebTransport: the check sequence and 16 MiB in 1 MiB writes (${codec})`, { skip }, async (t) => {
    const server = await webTransportServer(codec);
    if (!server) return t.skip("SKIPPED: this qtalk serves no https:// (WebTransport) yet");
    const { url, hash } = server;
    const r = await page.evaluate(([u, c, h]) => window.qtalkCheck(u, c, [h]), [url, codec, hash]);
    assert.equal(r.error, undefined, `${r.error}\n${r.lines.join("\n")}`);
    assert.deepEqual(r.lines, LINES);
    assert.equal(r.transport, "webtransport");
    const b = await page.evaluate(([u, c, h]) => window.qtalkBytes(u, c, [h], 16 << 20, 1 << 20), [url, codec, hash]);
    assert.equal(b.error, undefined, b.error);
    assert.equal(b.received, 16 << 20);
    assert.ok(b.ok, "the echo differs");
    assert.equal(b.transport, "webtransport");
  });
}

test("Chromium falls back to WebSocket when WebTransport cannot connect", { skip }, async () => {
  const { url } = await qtalkInterop("ws://127.0.0.1:0", "cbor");
  const r = await page.evaluate(async (u) => {
    const { connect, WebTransportSession } = await import("/dist/index.js");
    const t0 = performance.now();
    const peer = await connect(["https://127.0.0.1:9/", u], { codec: "cbor", timeout: 5000 });
    const out = { webtransport: peer.session instanceof WebTransportSession, ms: performance.now() - t0 };
    out.reply = await peer.call("Error", "fell back").catch((e) => e.message);
    peer.close();
    return out;
  }, url);
  assert.equal(r.webtransport, false);
  assert.equal(r.reply, "fell back");
});

test("the README's browser quick start runs as written against a Node server", { skip }, async () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const m = /<!-- quick start: browser -->\s*```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, "README.md has no browser quick start block");
  const mux = new RespondMux()
    .handle("Upper", func((s) => s.toUpperCase()))
    .handle("Error", func((s) => {
      throw new Error(s);
    }));
  const server = await listen("ws://127.0.0.1:0", { mux });
  try {
    const code = m[1]
      .replace(/from "@qtalk-rs\/qtalk"/, 'from "/dist/qtalk.min.js"')
      .replace(/ws:\/\/localhost:8080\//, server.url);
    assert.ok(code.split("\n").filter((l) => l.trim()).length <= 10, "the quick start is over 10 lines");
    const logs = [];
    const p = await browser.newPage();
    p.on("console", (msg) => logs.push(msg.text()));
    const done = new Promise((resolve) => p.on("console", (msg) => msg.text() === "done" && resolve()));
    await p.goto(`${files.origin}/test/browser/page.html`);
    await p.addScriptTag({ type: "module", content: `${code}\nconsole.log("done");` });
    await done;
    assert.deepEqual(logs.filter((l) => l !== "done"), ["HELLO WORLD", "remote error: user error"]);
    await p.close();
  } finally {
    await server.close();
  }
});
