// The JavaScript benchmark: headless Chromium against the Rust `qtalk interop` over
// WebTransport and over WebSocket, and Node over WebSocket beside a plain `ws` echo (the floor),
// in the same run. Client and server are separate processes; the systems interleave round by
// round (their order rotating), and each figure is the median of the rounds.
//
//   node bench/run.mjs [--ms 2000] [--rounds 3] [--codec cbor] [--qtalk target/release/qtalk]
//
// Rows (each over one fresh connection):
//   plain call:  `Error("x")`, answered at once (one qtalk call, one channel);
//   call back:   `Unary(1)`, which the server answers after calling `Unary` back on the caller
//                (two calls, two channels, as `qtalk bench` measures);
//   bytes:       one `Bytes` call continued into a raw stream, 1 MiB writes for --ms while the
//                echo is read; the server relays through a call back, so the payload crosses
//                the connection twice each way; MB/s (10^6) of echo received.
// The floor: a `ws` server process echoing messages, reached from Node (`ws`) and from the
// page (the browser's WebSocket); calls are 9-byte round trips (1, or 64 in flight), bytes are
// 1 MiB messages echoed.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { connect } from "../dist/node.js";
import { callbacks } from "../dist/interop.js";
import { benchPeer, wsFloor } from "./measure.mjs";
import { launch, openPage, serveFiles, chromiumMissing } from "../test/browser-util.mjs";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const { values: opt } = parseArgs({
  options: {
    ms: { type: "string", default: "2000" },
    rounds: { type: "string", default: "3" },
    codec: { type: "string", default: "cbor" },
    qtalk: { type: "string", default: `${repo}target/release/qtalk` },
  },
});
const ms = Number(opt.ms);
const rounds = Number(opt.rounds);
const codec = opt.codec;
if (!existsSync(opt.qtalk)) {
  console.error(`no ${opt.qtalk}: cargo build --release -p qtalk-cli`);
  process.exit(2);
}

const children = [];
// The servers go with the driver, however it ends.
process.on("exit", () => children.forEach((c) => c.kill("SIGTERM")));
process.on("uncaughtException", (e) => {
  console.error(e);
  process.exit(1);
});
function start(cmd, args, env, pattern, stream = "stderr") {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let text = "";
    const timer = setTimeout(() => resolve(null), 10_000);
    child[stream].on("data", (d) => {
      text += d;
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ match: m, text });
      }
    });
    child.on("exit", () => {
      clearTimeout(timer);
      resolve(null);
    });
    child.on("error", reject);
  });
}

const ws = await start(opt.qtalk, ["interop", "--listen", "ws://127.0.0.1:0"], { QTALK_CODEC: codec }, /listening on (\S+)\n/);
const wt = await start(opt.qtalk, ["interop", "--listen", "https://127.0.0.1:0"], { QTALK_CODEC: codec },
  /listening on (https:\S+)\n[\s\S]*?certificate sha-256: ([0-9a-fA-F:]+)\r?\n/);
const echo = await start(process.execPath, [fileURLToPath(new URL("./ws-echo.mjs", import.meta.url))], {}, /listening (\S+)\n/, "stdout");
const wsUrl = ws.match[1];
const wtUrl = wt?.match[1];
const wtHash = wt?.match[2];

const systems = [];
let browser;
let files;
let page;
if (!chromiumMissing()) {
  files = await serveFiles();
  browser = await launch();
  page = await openPage(browser, `${files.origin}/test/browser/page.html`);
  if (wtUrl) systems.push(["Chromium → Rust, WebTransport", () => page.evaluate(([u, c, h, m]) => window.qtalkBench(u, c, [h], m), [wtUrl, codec, wtHash, ms])]);
  systems.push(["Chromium → Rust, WebSocket", () => page.evaluate(([u, c, m]) => window.qtalkBench(u, c, undefined, m), [wsUrl, codec, ms])]);
  systems.push(["Chromium → ws echo (floor)", () => page.evaluate(([u, m]) => window.qtalkFloor(u, m), [echo.match[1], ms])]);
} else {
  console.error(`note: ${chromiumMissing()}: no browser rows`);
}
systems.push(["Node → Rust, WebSocket", async () => {
  const peer = await connect(wsUrl, { codec, mux: callbacks() });
  try {
    return await benchPeer(peer, ms);
  } finally {
    peer.close();
  }
}]);
systems.push(["Node → ws echo (floor)", () => wsFloor(WebSocket, echo.match[1], ms)]);

const load0 = loadavg().map((x) => x.toFixed(2)).join(" ");
const results = new Map(systems.map(([name]) => [name, []]));
for (let r = 0; r < rounds; r++) {
  for (let i = 0; i < systems.length; i++) {
    const [name, run] = systems[(i + r) % systems.length];
    const res = await run();
    results.get(name).push(res);
    process.stderr.write(`round ${r + 1}: ${name} done\n`);
  }
}
const load1 = loadavg().map((x) => x.toFixed(2)).join(" ");

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const cols = [
  ["plain call, 1", (x) => x.plain1?.callsPerS, "calls/s"],
  ["plain call, 64", (x) => x.plain64?.callsPerS, "calls/s"],
  ["call back, 1", (x) => x.unary1?.callsPerS, "calls/s"],
  ["call back, 64", (x) => x.unary64?.callsPerS, "calls/s"],
  ["bytes", (x) => x.bytes?.mbPerS, "MB/s"],
];
const fmt = (v) => (v === undefined ? "—" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
console.log(`JavaScript bench: codec ${codec}, ${ms} ms per measurement, ${rounds} rounds (medians); load ${load0} → ${load1}`);
console.log(`| system | ${cols.map((c) => `${c[0]} (${c[2]})`).join(" | ")} |`);
console.log(`|---|${cols.map(() => "---:").join("|")}|`);
const med = new Map();
for (const [name, runs] of results) {
  const row = cols.map(([, get]) => {
    const v = runs.map(get).filter((x) => x !== undefined);
    return v.length ? median(v) : undefined;
  });
  med.set(name, row);
  console.log(`| ${name} | ${row.map(fmt).join(" | ")} |`);
}
const ratio = (label, a, b) => {
  const x = med.get(a);
  const y = med.get(b);
  if (!x || !y) return;
  console.log(`| ${label} | ${x.map((v, i) => (v && y[i] ? `${(v / y[i]).toFixed(2)}×` : "—")).join(" | ")} |`);
};
ratio("Chromium: WebTransport ÷ WebSocket", "Chromium → Rust, WebTransport", "Chromium → Rust, WebSocket");
ratio("Chromium: qtalk WebSocket ÷ floor", "Chromium → Rust, WebSocket", "Chromium → ws echo (floor)");
ratio("Node: qtalk WebSocket ÷ floor", "Node → Rust, WebSocket", "Node → ws echo (floor)");
console.log("\nAll runs:");
for (const [name, runs] of results)
  console.log(`  ${name}: ${cols.map(([c, get]) => `${c} ${runs.map((x) => fmt(get(x))).join("/")}`).join("; ")}`);
const qtalkArg = opt.qtalk === `${repo}target/release/qtalk` ? "" : ` --qtalk ${opt.qtalk}`;
console.log(`\ncommand: node bench/run.mjs --ms ${ms} --rounds ${rounds} --codec ${codec}${qtalkArg} (in bindings/js, after node build.mjs and cargo build --release -p qtalk-cli)`);

await browser?.close();
await files?.close();
for (const c of children) c.kill("SIGTERM");
