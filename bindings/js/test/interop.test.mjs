// The check sequence across implementations, as separate processes over real sockets:
// `qtalk-js check` against the Rust `qtalk interop` and the Go reference's interop service,
// `qtalk check` (Rust) and the reference's checker against `qtalk-js interop`, in both codecs;
// the 16 MiB exchange from Node; exit codes.
//
// QTALK_BIN: the Rust qtalk command (default: target/debug/qtalk of this checkout).
// QTALK_GO_PEER: the Go reference peer (interop/go); its cases are SKIPPED without it, or fail
// with QTALK_REQUIRE_GO_PEER=1. QTALK_GO_PEER_TALLY: a file to count them in (scripts/test.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect } from "../dist/node.js";
import { callbacks, bytesCheck, randomBytes } from "../dist/interop.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const QTALK = process.env.QTALK_BIN ?? `${repo}target/debug/qtalk`;
const LINES = readFileSync(`${repo}tests/vectors/cli_check/cbor_check_output.txt`, "utf8").trim().split("\n");
const CODECS = ["cbor", "json"];

function goPeer(t) {
  const p = process.env.QTALK_GO_PEER;
  const found = p && existsSync(p) ? p : undefined;
  if (!found && process.env.QTALK_REQUIRE_GO_PEER === "1")
    assert.fail("QTALK_REQUIRE_GO_PEER=1 but QTALK_GO_PEER names no built Go peer");
  if (process.env.QTALK_GO_PEER_TALLY)
    appendFileSync(process.env.QTALK_GO_PEER_TALLY, `${found ? "ran" : "skipped"} js: ${t.name}\n`);
  if (!found) t.skip("SKIPPED: Go reference peer not available (QTALK_GO_PEER unset)");
  return found;
}

/** Runs a command to its end (failing the test after `ms`). */
function run(cmd, args, env = {}, ms = 60_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} did not finish within ${ms} ms:\n${stdout}${stderr}`));
    }, ms);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts a listening peer; resolves with it and the address it printed on stderr. */
function listening(cmd, args, env, pattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} printed no address: ${err}`));
    }, 20_000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = pattern.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, address: m[1], stop: () => stop(child) });
      }
    });
    child.on("error", reject);
  });
}

function stop(child) {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
}

const rust = (codec) =>
  listening(QTALK, ["interop", "--listen", "ws://127.0.0.1:0"], { QTALK_CODEC: codec }, /listening on (ws:\/\/\S+)\n/);
const ours = (codec) =>
  listening(process.execPath, [CLI, "interop", "--listen", "ws://127.0.0.1:0"], { QTALK_CODEC: codec }, /listening on (ws:\/\/\S+)\n/);

function assertReport(out, codec, peer, what) {
  assert.equal(out.code, 0, `${what}: exit ${out.code}\n${out.stdout}${out.stderr}`);
  const lines = out.stdout.trim().split("\n");
  assert.deepEqual(lines.slice(0, 15), LINES, what);
  if (peer) assert.match(lines[15], new RegExp(`^ok: 15 checks passed in \\d+(ms|\\.\\d\\ds) \\(codec ${codec}, peer ${peer}\\)$`));
}

test("qtalk-js check against the Rust qtalk interop over WebSocket, both codecs", async () => {
  assert.ok(existsSync(QTALK), `no Rust qtalk at ${QTALK} (cargo build -p qtalk-cli, or set QTALK_BIN)`);
  for (const codec of CODECS) {
    const peer = await rust(codec);
    try {
      const out = await run(process.execPath, [CLI, "check", peer.address], { QTALK_CODEC: codec });
      assertReport(out, codec, peer.address, `${codec}: qtalk-js check ${peer.address}`);
      assert.equal(out.stderr, codec === "json" ? "* Using JSON codec\n" : "");
    } finally {
      await peer.stop();
    }
  }
});

test("qtalk check (Rust) against qtalk-js interop over WebSocket, both codecs", async () => {
  for (const codec of CODECS) {
    const peer = await ours(codec);
    try {
      const out = await run(QTALK, ["check", "--connect", peer.address], { QTALK_CODEC: codec });
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.deepEqual(out.stdout.trim().split("\n").slice(0, 15), LINES);
    } finally {
      await peer.stop();
    }
  }
});

test("over stdio: qtalk check spawning qtalk-js interop, and qtalk-js check spawning qtalk interop", async () => {
  for (const codec of CODECS) {
    let out = await run(QTALK, ["check", `${process.execPath} ${CLI} interop`], { QTALK_CODEC: codec });
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.deepEqual(out.stdout.trim().split("\n").slice(0, 15), LINES);
    out = await run(process.execPath, [CLI, "check", `${QTALK} interop`], { QTALK_CODEC: codec });
    assertReport(out, codec, `${QTALK} interop`, `${codec}: over stdio`);
  }
});

test("qtalk-js check against the Go reference's interop over WebSocket (mux.ListenWS)", async (t) => {
  const go = goPeer(t);
  if (!go) return;
  for (const codec of CODECS) {
    const peer = await listening(go, ["-mode", "interop", "-ws", "-listen", "127.0.0.1:0"], { QTALK_CODEC: codec }, /listening (\S+)\n/);
    try {
      const url = `ws://${peer.address}`;
      const out = await run(process.execPath, [CLI, "check", url], { QTALK_CODEC: codec });
      assertReport(out, codec, url, `${codec}: qtalk-js check against Go`);
    } finally {
      await peer.stop();
    }
  }
});

test("the Go reference's check against qtalk-js interop over WebSocket (mux.DialWS)", async (t) => {
  const go = goPeer(t);
  if (!go) return;
  for (const codec of CODECS) {
    const peer = await ours(codec);
    try {
      const out = await run(go, ["-mode", "check", "-ws", "-dial", peer.address.replace("ws://", "")], { QTALK_CODEC: codec });
      assert.equal(out.code, 0, out.stdout + out.stderr);
      for (const l of LINES) assert.ok(out.stdout.includes(l), `missing ${l}:\n${out.stdout}`);
    } finally {
      await peer.stop();
    }
  }
});

test("16 MiB through Bytes, written by Node in 1 MiB writes, to the Rust peer and back, both codecs", async () => {
  for (const codec of CODECS) {
    const peer = await rust(codec);
    try {
      const client = await connect(peer.address, { codec, mux: callbacks() });
      const data = randomBytes(16 << 20);
      const echoed = await bytesCheck(client, data, 1 << 20);
      assert.equal(echoed.length, data.length);
      assert.ok(Buffer.from(echoed).equals(Buffer.from(data)), `${codec}: the echo differs`);
      client.close();
    } finally {
      await peer.stop();
    }
  }
});

test("exit codes: 2 bad usage, 3 unreachable, 1 a failed check", async () => {
  let out = await run(process.execPath, [CLI, "check", "--codec", "xml"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /error: --codec must be json or cbor/);
  out = await run(process.execPath, [CLI, "frobnicate"]);
  assert.equal(out.code, 2);
  out = await run(process.execPath, [CLI, "check", "ws://127.0.0.1:1"], {}, 30_000);
  assert.equal(out.code, 3, out.stderr);
  assert.match(out.stderr, /^error: cannot reach the peer ws:\/\/127\.0\.0\.1:1: /);
  // The peer speaks CBOR, the checker JSON: the first check fails.
  const peer = await rust("cbor");
  try {
    out = await run(process.execPath, [CLI, "check", peer.address], { QTALK_CODEC: "json" });
    assert.equal(out.code, 1, out.stdout + out.stderr);
    assert.match(out.stderr, /FAILED: Error\("test"\): .*does the peer use the same codec\?/);
  } finally {
    await peer.stop();
  }
});
