"""``python -m qtalk_rs interop`` and ``python -m qtalk_rs check``: qtalk's interoperability
test, so the Go reference, the Rust ``qtalk`` command and Python certify each other.

    python -m qtalk_rs interop                      # serve the interop service on stdio
    python -m qtalk_rs interop --listen tcp://127.0.0.1:9000
    python -m qtalk_rs check                        # check `python -m qtalk_rs interop`
    python -m qtalk_rs check "qtalk interop"        # check a command (run with sh -c)
    python -m qtalk_rs check tcp://127.0.0.1:9000   # check a listening peer

The codec is CBOR unless ``QTALK_CODEC=json`` (as the reference), or ``--codec``.
Exit status: 0 passed, 1 a check failed, 2 bad usage, 3 the peer could not be reached or
the session broke.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
from typing import List, Optional

import qtalk_rs
from qtalk_rs._interop import CheckFailed, callbacks, codec_from_env, elapsed_since, run_check
from qtalk_rs._interop import service

URL_SCHEMES = ("tcp://", "tls://", "unix:", "udp://", "quic://", "ws://", "wss://")
SECURE = ("tls://", "wss://", "quic://", "udp://")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qtalk_rs", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("interop", help="serve the interop service (on stdin/stdout unless "
                                       "--listen)")
    i.add_argument("--listen", metavar="URL",
                   help="serve tcp://, ws://, unix:, tls://, wss:// or quic:// instead of "
                        "stdio (port 0 picks one; the address is printed on stderr)")
    i.add_argument("--cert", help="certificate (PEM) of a tls://, wss:// or quic:// listener; "
                                  "without it a self-signed one is made")
    i.add_argument("--key", help="private key (PEM) for --cert")
    i.add_argument("--codec", choices=["json", "cbor"], help="default: $QTALK_CODEC or cbor")

    c = sub.add_parser("check", help="run the check sequence against an interop peer")
    c.add_argument("peer", nargs="?",
                   help="shell command of the peer (run with sh -c, talked to over its stdio), "
                        "or the URL of a listening one; default: this program's interop")
    c.add_argument("--codec", choices=["json", "cbor"], help="default: $QTALK_CODEC or cbor")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per check (10)")
    c.add_argument("--ca", help="trust the certificates in this PEM file (tls, wss, quic)")
    c.add_argument("--insecure", action="store_true",
                   help="accept any certificate (development servers)")
    return p


async def _interop(args: argparse.Namespace) -> int:
    codec = codec_from_env(args.codec)
    mux = service()
    if not args.listen:
        if sys.stdin.isatty():
            print("python -m qtalk_rs interop: speaking qmux on stdin/stdout, for a checker to "
                  "spawn; to serve a socket use --listen URL", file=sys.stderr)
        peer = await qtalk_rs.connect_stdio(codec=codec, mux=mux)
        await peer.wait_closed()
        return 0
    if bool(args.cert) != bool(args.key):
        print("error: give both --cert and --key", file=sys.stderr)
        return 2
    tls = {}
    if args.listen.startswith(SECURE):
        if args.cert:
            tls = {"cert": args.cert, "key": args.key}
        else:
            host = args.listen.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
            names = ["localhost", "127.0.0.1", "::1"] + ([host] if host else [])
            cert, key = qtalk_rs.self_signed(list(dict.fromkeys(names)))
            tmp = tempfile.mkdtemp(prefix="qtalk-rs-")
            tls = {"cert": os.path.join(tmp, "cert.pem"), "key": os.path.join(tmp, "key.pem")}
            with open(tls["cert"], "w") as f:
                f.write(cert)
            with open(tls["key"], "w") as f:
                f.write(key)
            print("note: serving a self-signed certificate; clients need --insecure, or "
                  f"--ca {tls['cert']}", file=sys.stderr)
    elif args.cert:
        print("error: --cert and --key apply to tls://, wss:// and quic:// listeners only",
              file=sys.stderr)
        return 2
    try:
        server = await qtalk_rs.start_server(args.listen, mux, codec=codec, **tls)
    except (OSError, ValueError) as e:
        print(f"error: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 3
    print(f"listening on {server.address}", file=sys.stderr, flush=True)
    await server.serve_forever()
    return 0


async def _check(args: argparse.Namespace) -> int:
    codec = codec_from_env(args.codec)
    if codec == "json":
        print("* Using JSON codec", file=sys.stderr)
    target: str = args.peer or ""
    target = target.strip()
    mux = callbacks()
    try:
        if target.startswith(URL_SCHEMES):
            peer = await asyncio.wait_for(
                qtalk_rs.connect(target, codec=codec, mux=mux, ca=args.ca,
                                 insecure=args.insecure), args.timeout)
            shown = target
        else:
            if target:
                argv: List[str] = ["sh", "-c", target]
                shown = target
            else:
                argv = [sys.executable, "-m", "qtalk_rs", "interop", "--codec", codec]
                shown = " ".join(shlex.quote(a) for a in argv)
            peer = await qtalk_rs.connect_command(argv, codec=codec, mux=mux)
    except (OSError, ValueError, asyncio.TimeoutError) as e:
        print(f"error: cannot reach the peer {target or 'interop'}: {e or 'no answer'}",
              file=sys.stderr)
        return 3
    start = time.monotonic()
    try:
        passed = await run_check(peer, timeout=args.timeout)
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except (qtalk_rs.QtalkError, OSError, EOFError) as e:
        print(f"error: the session with the peer broke: {e}", file=sys.stderr)
        return 3
    finally:
        peer.close()
    print(f"ok: {passed} checks passed in {elapsed_since(start)} (codec {codec}, peer {shown})",
          flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    run = _interop if args.command == "interop" else _check
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
