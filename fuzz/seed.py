#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the Go reference's recordings
(tests/vectors): whole byte streams, rpc frames and codec bodies as the reference sent them."""
import hashlib, os, pathlib, re

root = pathlib.Path(__file__).resolve().parent
vectors = root.parent / "tests" / "vectors"

def put(target, data):
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)

for path in sorted(vectors.glob("*.txt")):
    if path.name == "SUMMARY.txt":
        continue
    streams = {"C": b"", "S": b""}
    codec = "cbor" if path.name.startswith("cbor") else "json"
    for line in path.read_text().splitlines():
        m = re.match(r"([CS])> ([0-9a-f ]+)", line)
        if not m:
            continue
        tokens = m.group(2).split()
        frame = bytes.fromhex("".join(tokens))
        streams[m.group(1)] += frame
        if frame[0] == 0x68 and len(tokens) >= 5:  # DATA carrying one rpc frame
            payload = bytes.fromhex("".join(tokens[3:]))
            put("rpc_frames", b"\x07" + payload)
            put(f"{codec}_decode", bytes.fromhex("".join(tokens[4:])))
    for side, data in streams.items():
        if data:
            put("frame_decode", data)
            put("session_input", b"\x00" + data)
            put("session_input", b"\x85" + data)
