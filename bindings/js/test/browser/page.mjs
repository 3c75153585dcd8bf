// What the browser tests run in the page (test/browser.test.mjs drives it).
import { connect, WebTransportSession } from "/dist/index.js";
import { callbacks, runCheck, bytesCheck, randomBytes } from "/dist/interop.js";

const options = (codec, hashes) => ({ codec, mux: callbacks(), serverCertificateHashes: hashes });
const transportOf = (peer) => (peer.session instanceof WebTransportSession ? "webtransport" : "websocket");

/** The check sequence against `url`: its printed lines, or the error that stopped it. */
window.qtalkCheck = async (url, codec, hashes) => {
  const lines = [];
  let peer;
  try {
    peer = await connect(url, options(codec, hashes));
    const passed = await runCheck(peer, { out: (l) => lines.push(l) });
    return { lines, passed, transport: transportOf(peer) };
  } catch (e) {
    return { lines, error: `${e?.name}: ${e?.message ?? e}` };
  } finally {
    peer?.close();
  }
};

/** Sends `size` random bytes through Bytes in `writeSize` writes and checks the echo. */
window.qtalkBytes = async (url, codec, hashes, size, writeSize) => {
  let peer;
  try {
    peer = await connect(url, options(codec, hashes));
    const data = randomBytes(size);
    const start = performance.now();
    const echoed = await bytesCheck(peer, data, writeSize);
    const ms = performance.now() - start;
    const same = echoed.length === data.length && echoed.every((b, i) => b === data[i]);
    return { ok: same, received: echoed.length, ms, transport: transportOf(peer) };
  } catch (e) {
    return { ok: false, error: `${e?.name}: ${e?.message ?? e}` };
  } finally {
    peer?.close();
  }
};

window.qtalkReady = true;

/** The benchmark's measurements over one fresh connection (bench/run.mjs drives it). */
window.qtalkBench = async (url, codec, hashes, ms) => {
  const { benchPeer } = await import("/bench/measure.mjs");
  const peer = await connect(url, options(codec, hashes));
  try {
    return { transport: transportOf(peer), ...(await benchPeer(peer, ms)) };
  } finally {
    peer.close();
  }
};

/** The benchmark's floor: the browser's own WebSocket to a plain echo server. */
window.qtalkFloor = async (url, ms) => {
  const { wsFloor } = await import("/bench/measure.mjs");
  return wsFloor(WebSocket, url, ms);
};
