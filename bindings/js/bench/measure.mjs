// The measurements of the JavaScript benchmark, shared by the browser page and Node. Each
// takes a connected qtalk Peer (answering the interop callbacks) and runs for `ms`.

const now = () => performance.now();

/** Calls `selector(args)` from `callers` concurrent loops for `ms`; calls/s and p50 (µs). */
export async function callRate(peer, selector, args, callers, ms, expectError = false) {
  const latencies = [];
  const end = now() + ms;
  const start = now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (now() < end) {
        const t = now();
        try {
          await peer.call(selector, args);
          if (expectError) throw new Error(`${selector} answered without an error`);
        } catch (e) {
          if (!expectError || e?.name !== "RemoteError") throw e;
        }
        latencies.push(now() - t);
      }
    }),
  );
  const elapsed = (now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length, callsPerS: latencies.length / elapsed, p50us: 1000 * latencies[Math.floor(latencies.length / 2)] };
}

/**
 * One `Bytes` call continued into a raw stream: 1 MiB writes for `ms` while the echo is read
 * back; MB/s (10^6 bytes) received over the time until the echo ended.
 */
export async function bytesRate(peer, ms, writeSize = 1 << 20) {
  const resp = await peer.request("Bytes", null);
  const block = new Uint8Array(writeSize);
  for (let i = 0; i < block.length; i++) block[i] = i * 7;
  const start = now();
  const end = start + ms;
  let sent = 0;
  const writing = (async () => {
    while (now() < end) {
      await resp.write(block);
      sent += block.length;
    }
    await resp.closeWrite();
  })();
  let received = 0;
  for (;;) {
    const c = await resp.read();
    if (c === null) break;
    received += c.length;
  }
  await writing;
  resp.close();
  const secs = (now() - start) / 1000;
  if (received !== sent) throw new Error(`Bytes: sent ${sent}, received ${received}`);
  return { bytes: received, mbPerS: received / 1e6 / secs };
}

/** The whole set on one peer: plain calls (Error), calls with a call back (Unary), bytes. */
export async function benchPeer(peer, ms) {
  const out = {};
  // Warm-up: the JIT compiles the paths first.
  await callRate(peer, "Unary", 1, 4, 500);
  await callRate(peer, "Error", "x", 4, 300, true);
  out.plain1 = await callRate(peer, "Error", "x", 1, ms, true);
  out.plain64 = await callRate(peer, "Error", "x", 64, ms, true);
  out.unary1 = await callRate(peer, "Unary", 1, 1, ms);
  out.unary64 = await callRate(peer, "Unary", 1, 64, ms);
  out.bytes = await bytesRate(peer, ms);
  return out;
}

/**
 * The floor: a plain WebSocket to an echo server. Calls are 9-byte round trips (1, or 64 in
 * flight, answered in order); bytes are 1 MiB messages echoed, sent while at most 4 MiB wait.
 * `WS` is the browser's WebSocket or `ws`'s.
 */
export async function wsFloor(WS, url, ms) {
  const sock = new WS(url);
  sock.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    sock.onopen = resolve;
    sock.onerror = reject;
  });
  const waiting = [];
  let onBytes = null;
  sock.onmessage = (ev) => (onBytes ? onBytes(ev.data.byteLength) : waiting.shift()());
  const msg = new Uint8Array([0, 0, 0, 5, 104, 101, 108, 108, 111]);
  const calls = async (callers, dur) => {
    const lat = [];
    const end = now() + dur;
    const t0 = now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (now() < end) {
          const t = now();
          await new Promise((r) => {
            waiting.push(r);
            sock.send(msg);
          });
          lat.push(now() - t);
        }
      }),
    );
    lat.sort((a, b) => a - b);
    return { calls: lat.length, callsPerS: lat.length / ((now() - t0) / 1000), p50us: 1000 * lat[lat.length >> 1] };
  };
  await calls(4, 800);
  const out = { plain1: await calls(1, ms), plain64: await calls(64, ms) };
  const block = new Uint8Array(1 << 20).fill(7);
  let sent = 0;
  let received = 0;
  const t0 = now();
  await new Promise((resolve) => {
    onBytes = (n) => {
      received += n;
      if (received === sent && now() >= t0 + ms) resolve();
    };
    const pump = () => {
      while (now() < t0 + ms && sock.bufferedAmount < 4 << 20) {
        sent += block.length;
        sock.send(block);
      }
      if (now() < t0 + ms) setTimeout(pump, 1);
    };
    pump();
  });
  out.bytes = { bytes: received, mbPerS: received / 1e6 / ((now() - t0) / 1000) };
  sock.close();
  return out;
}
