/**
 * `qtalk-js interop` and `qtalk-js check`: qtalk's interoperability test, so that the Go
 * reference, the Rust `qtalk` command, Python and this package certify each other.
 *
 *     qtalk-js interop                                # serve the interop service on stdio
 *     qtalk-js interop --listen ws://127.0.0.1:9000   # ... over WebSocket
 *     qtalk-js check                                  # check `qtalk-js interop`
 *     qtalk-js check "qtalk interop"                  # check a command (run with sh -c)
 *     qtalk-js check ws://127.0.0.1:9000              # check a listening peer
 *
 * The codec is CBOR unless QTALK_CODEC=json (as the reference), or --codec.
 * Exit status: 0 passed, 1 a check failed, 2 bad usage, 3 the peer could not be reached or
 * the session broke.
 */
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { connect, listen, NodeStreamTransport, QmuxSession, Peer, codecByName } from "./node.js";
import { CheckFailed, callbacks, elapsedSince, isTransportFailure, runCheck, service } from "./interop/index.js";

const USAGE = `usage: qtalk-js interop [--listen ws://HOST:PORT] [--codec json|cbor]
       qtalk-js check [PEER] [--codec json|cbor] [--timeout SECONDS]

  interop   serve the interop service (Unary, Stream, Bytes, Error) on stdin/stdout,
            or on a WebSocket with --listen (port 0 picks one; the address is printed on stderr)
  check     run the reference's check sequence against PEER: the URL of a listening peer
            (ws://, wss://), or a shell command run with sh -c and spoken to over its stdio;
            default: this program's own interop
The codec is CBOR unless QTALK_CODEC=json, or --codec.
Exit status: 0 passed, 1 a check failed, 2 bad usage, 3 the peer could not be reached or the
session broke.`;

class Usage extends Error {}

function codecFrom(explicit: string | undefined): "json" | "cbor" {
  const c = explicit ?? ((process.env.QTALK_CODEC ?? "").trim().toLowerCase() === "json" ? "json" : "cbor");
  if (c !== "json" && c !== "cbor") throw new Usage(`--codec must be json or cbor, not ${c}`);
  return c;
}

async function interop(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { listen: { type: "string" }, codec: { type: "string" } },
    strict: true,
    allowPositionals: false,
  });
  const codec = codecFrom(values.codec);
  const mux = service();
  if (!values.listen) {
    if (process.stdin.isTTY)
      console.error(
        "qtalk-js interop: speaking qmux on stdin/stdout, for a checker to spawn; to serve a socket use --listen URL",
      );
    const session = new QmuxSession(new NodeStreamTransport(process.stdin, process.stdout));
    new Peer(session, codecByName(codec), { mux });
    await session.closed;
    return 0;
  }
  if (!values.listen.startsWith("ws://")) throw new Usage(`--listen takes ws://HOST:PORT, not ${values.listen}`);
  let listener;
  try {
    listener = await listen(values.listen, { codec, mux });
  } catch (e) {
    console.error(`error: cannot listen on ${values.listen}: ${(e as Error).message}`);
    return 3;
  }
  console.error(`listening on ${listener.url.replace(/\/$/, "")}`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await listener.close();
  return 0;
}

async function check(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { codec: { type: "string" }, timeout: { type: "string", default: "10" } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > 1) throw new Usage(`one PEER at most (quote a command): ${positionals.join(" ")}`);
  const codec = codecFrom(values.codec);
  const timeout = Number(values.timeout) * 1000;
  if (!(timeout > 0)) throw new Usage(`--timeout takes seconds, not ${values.timeout}`);
  if (codec === "json") console.error("* Using JSON codec");
  const target = (positionals[0] ?? "").trim();
  const mux = callbacks();
  let peer: Peer;
  let shown = target;
  let child: ReturnType<typeof spawn> | undefined;
  try {
    if (/^(ws|wss|https):\/\//.test(target)) {
      peer = await connect(target, { codec, mux, timeout });
    } else {
      const argv = target
        ? ["sh", "-c", target]
        : [process.execPath, fileURLToPath(import.meta.url), "interop", "--codec", codec];
      if (!target) shown = argv.map(quoteArg).join(" ");
      child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
      const spawned = child;
      await new Promise<void>((resolve, reject) => {
        spawned.once("spawn", resolve);
        spawned.once("error", reject);
      });
      const session = new QmuxSession(new NodeStreamTransport(spawned.stdout!, spawned.stdin!));
      peer = new Peer(session, codecByName(codec), { mux });
    }
  } catch (e) {
    console.error(`error: cannot reach the peer ${target || "interop"}: ${(e as Error).message || "no answer"}`);
    return 3;
  }
  const start = performance.now();
  let passed: number;
  try {
    passed = await runCheck(peer, { timeout });
  } catch (e) {
    if (e instanceof CheckFailed) {
      console.error(`FAILED: ${e.message}`);
      return 1;
    }
    if (isTransportFailure(e)) {
      console.error(`error: the session with the peer broke: ${(e as Error).message}`);
      return 3;
    }
    throw e;
  } finally {
    peer.close();
    if (child) {
      const c = child;
      await new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        const t = setTimeout(() => c.kill("SIGINT"), 3000);
        c.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  console.log(`ok: ${passed} checks passed in ${elapsedSince(start)} (codec ${codec}, peer ${shown})`);
  return 0;
}

function quoteArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\"'\"'")}'`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "interop") return await interop(rest);
    if (command === "check") return await check(rest);
    if (command === "-h" || command === "--help") {
      console.log(USAGE);
      return 0;
    }
    throw new Usage(command ? `unknown command ${command}` : "a command is required");
  } catch (e) {
    if (e instanceof Usage || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`${USAGE}\nerror: ${(e as Error).message}`);
      return 2;
    }
    console.error(`error: ${(e as Error).stack ?? e}`);
    return 3;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Sessions and listeners are closed; nothing else should keep the process alive.
  setTimeout(() => process.exit(code), 100).unref();
});
