"""Benchmarks of qtalk_rs from Python, beside grpcio's asyncio API in the same run.

    python bench.py [--seconds 3] [--rounds 3] [--mib 256]

Unary echo of "hello": a Python server and a Python client, in two processes, one connection,
with 1 and 64 concurrent tasks; qtalk_rs (JSON codec, TCP) against grpcio.aio (a generic
unary method on raw bytes, no protobuf, insecure channel). Then bytes/s through a call
continued into a byte stream (both directions), against a plain asyncio TCP stream. Systems
are interleaved round by round; the table shows medians and the ratio qtalk_rs / grpcio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD = "hello"
CHUNK = 256 * 1024


# --- servers (run as child processes) -----------------------------------------------------


async def serve_qtalk() -> None:
    import qtalk_rs

    mux = qtalk_rs.RespondMux()

    async def echo(call, text):
        return text

    async def sink(call):
        stream = await call.continue_with(None)
        total = 0
        while True:
            chunk = await stream.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
        await stream.send(total)
        await stream.close_write()

    async def source(call, n):
        stream = await call.continue_with(None)
        block = b"\0" * CHUNK
        left = n
        while left > 0:
            await stream.write(block[: min(left, CHUNK)])
            left -= CHUNK
        await stream.close_write()

    mux.handle("Echo", echo)
    mux.handle("Sink", sink)
    mux.handle("Source", source)
    server = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux, codec="json")
    print(server.address[len("tcp://"):], flush=True)
    await server.serve_forever()


async def serve_grpc() -> None:
    import grpc

    async def echo(request: bytes, context) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def serve_tcp() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = await reader.readexactly(1)
        if mode == b"u":  # upload: count until EOF, answer the count
            total = 0
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
            writer.write(f"{total}\n".encode())
        else:  # download: n bytes
            n = int((await reader.readline()).decode())
            block = b"\0" * CHUNK
            while n > 0:
                writer.write(block[: min(n, CHUNK)])
                await writer.drain()
                n -= CHUNK
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"127.0.0.1:{port}", flush=True)
    await server.serve_forever()


# --- clients -------------------------------------------------------------------------------


async def load(call: Callable[[], "asyncio.Future"], tasks: int, seconds: float) -> float:
    """Calls/s with ``tasks`` concurrent loops over ``seconds`` (after a short warm-up)."""
    stop = False
    count = 0

    async def worker() -> None:
        nonlocal count
        while not stop:
            await call()
            count += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(tasks)]
    await asyncio.sleep(min(0.5, seconds / 4))
    count = 0
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    done = count
    elapsed = time.perf_counter() - start
    stop = True
    await asyncio.gather(*workers)
    return done / elapsed


async def qtalk_unary(addr: str, tasks: int, seconds: float) -> float:
    import qtalk_rs

    async with await qtalk_rs.connect(f"tcp://{addr}", codec="json") as peer:
        assert await peer.call("Echo", PAYLOAD) == PAYLOAD
        return await load(lambda: peer.call("Echo", PAYLOAD), tasks, seconds)


async def grpc_unary(addr: str, tasks: int, seconds: float) -> float:
    import grpc

    async with grpc.aio.insecure_channel(addr) as channel:
        echo = channel.unary_unary("/bench.Echo/Echo")
        payload = PAYLOAD.encode()
        assert await echo(payload) == payload
        return await load(lambda: echo(payload), tasks, seconds)


async def qtalk_bytes(addr: str, size: int) -> Tuple[float, float]:
    """(upload MB/s, download MB/s) through continued calls."""
    import qtalk_rs

    async with await qtalk_rs.connect(f"tcp://{addr}", codec="json") as peer:
        block = os.urandom(CHUNK)
        resp = await peer.call_raw("Sink")
        await resp.receive()
        start = time.perf_counter()
        sent = 0
        while sent < size:
            await resp.write(block)
            sent += len(block)
        await resp.close_write()
        assert await resp.receive() == sent
        up = sent / (time.perf_counter() - start) / 1e6
        resp.close()

        resp = await peer.call_raw("Source", size)
        await resp.receive()
        start = time.perf_counter()
        got = 0
        while True:
            chunk = await resp.read(CHUNK)
            if not chunk:
                break
            got += len(chunk)
        assert got == size
        down = got / (time.perf_counter() - start) / 1e6
        resp.close()
        return up, down


async def tcp_bytes(addr: str, size: int) -> Tuple[float, float]:
    host, port = addr.rsplit(":", 1)
    block = os.urandom(CHUNK)
    reader, writer = await asyncio.open_connection(host, int(port))
    start = time.perf_counter()
    writer.write(b"u")
    sent = 0
    while sent < size:
        writer.write(block)
        await writer.drain()
        sent += len(block)
    writer.write_eof()
    assert int((await reader.readline()).decode()) == sent
    up = sent / (time.perf_counter() - start) / 1e6
    writer.close()

    reader, writer = await asyncio.open_connection(host, int(port))
    start = time.perf_counter()
    writer.write(f"d{size}\n".encode())
    got = 0
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            break
        got += len(chunk)
    assert got == size
    down = got / (time.perf_counter() - start) / 1e6
    writer.close()
    return up, down


# --- driver --------------------------------------------------------------------------------


def start(kind: str) -> Tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit(f"the {kind} server did not start")
    return proc, line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per run (3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--mib", type=int, default=256, help="MiB per byte-stream run (256)")
    p.add_argument("--serve", choices=["qtalk", "grpc", "tcp"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        server = {"qtalk": serve_qtalk, "grpc": serve_grpc, "tcp": serve_tcp}[a.serve]
        try:
            asyncio.run(server())
        except KeyboardInterrupt:
            pass
        return

    import grpc
    import qtalk_rs

    print(f"python {sys.version.split()[0]}, qtalk_rs (Rust core), grpcio {grpc.__version__}, "
          f"{os.cpu_count()} CPUs; {a.seconds:g} s per run, {a.rounds} rounds, medians")
    servers = {k: start(k) for k in ("qtalk", "grpc", "tcp")}
    calls: Dict[Tuple[str, int], List[float]] = {}
    streams: Dict[str, List[Tuple[float, float]]] = {"qtalk": [], "tcp": []}
    size = a.mib << 20
    try:
        for r in range(a.rounds):
            for tasks in (1, 64):
                for name, client in (("qtalk", qtalk_unary), ("grpc", grpc_unary)):
                    rate = asyncio.run(client(servers[name][1], tasks, a.seconds))
                    calls.setdefault((name, tasks), []).append(rate)
                    print(f"  round {r + 1}: {name:5} {tasks:2} tasks {rate:9.0f} calls/s",
                          file=sys.stderr)
            for name, client in (("qtalk", qtalk_bytes), ("tcp", tcp_bytes)):
                up, down = asyncio.run(client(servers[name][1], size))
                streams[name].append((up, down))
                print(f"  round {r + 1}: {name:5} bytes up {up:7.0f} MB/s, down {down:7.0f} "
                      "MB/s", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    del qtalk_rs

    med = statistics.median
    print()
    print("| unary echo, one connection | qtalk_rs calls/s | grpcio calls/s | ratio |")
    print("|---|---|---|---|")
    for tasks in (1, 64):
        q, g = med(calls[("qtalk", tasks)]), med(calls[("grpc", tasks)])
        print(f"| {tasks} task{'s' if tasks > 1 else ''} | {q:.0f} | {g:.0f} | {q / g:.2f}x |")
    print()
    print(f"| {a.mib} MiB through one stream, {CHUNK >> 10} KiB writes | qtalk_rs continued "
          "call | asyncio TCP stream | ratio |")
    print("|---|---|---|---|")
    for i, what in enumerate(("upload", "download")):
        q = med(x[i] for x in streams["qtalk"])
        t = med(x[i] for x in streams["tcp"])
        print(f"| {what} | {q:.0f} MB/s | {t:.0f} MB/s | {q / t:.2f}x |")


if __name__ == "__main__":
    main()
