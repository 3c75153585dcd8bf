#!/usr/bin/env bash
# Measures what a hostile peer can make `qtalk interop --listen` hold: the server's RSS while
# busy_channels (crates/qtalk-cli/examples) calls `Bytes`, never confirms the server's
# callback OPENs and fills its call channels, and again 10 s after it left; a bystander session
# calls `Unary` throughout the attack and reports its latency.
#
# Every scenario gets a fresh server on 127.0.0.1 (so VmHWM is that scenario's peak):
#   1. start the server; a 1 s bystander run warms it up; baseline = VmRSS after it;
#   2. bystander in the background; the attacker in the foreground (fill, then --hold);
#      VmRSS sampled every 100 ms while the attacker runs;
#   3. the bystander is stopped when the attacker exits; VmRSS read again AFTER_SECS later.
#
# Usage: scripts/attack-rss.sh
# Environment:
#   QTALK_BIN    the server binary to attack (default: the qtalk built here, release)
#   SCENARIOS    SESSIONSxCHANNELS list (default "1x64 1x150 1x1000 10x150")
#   HOLD         seconds the attacker holds its channels after filling them (default 10)
#   AFTER_SECS   seconds after the attack before the last reading (default 10)
#   SERVER_ENV   extra environment of the server, e.g. "MALLOC_ARENA_MAX=2"
#   QTALK_CODEC  codec of all parties (default CBOR, as `qtalk interop`)
#   NO_BUILD=1   use the binaries already built
set -euo pipefail

cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
scenarios=${SCENARIOS:-"1x64 1x150 1x1000 10x150"}
hold=${HOLD:-10}
after=${AFTER_SECS:-10}
server_env=${SERVER_ENV:-}

if [[ -z ${NO_BUILD:-} ]]; then
    cargo build --release -q -p qtalk-cli --bin qtalk --example busy_channels --example bystander
fi
qtalk=${QTALK_BIN:-$target/release/qtalk}
attacker=$target/release/examples/busy_channels
bystander=$target/release/examples/bystander
for b in "$qtalk" "$attacker" "$bystander"; do
    [[ -x $b ]] || { echo "attack-rss: $b is missing" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# status_kib PID FIELD: a field of /proc/PID/status in KiB (0 when gone).
status_kib() {
    { cat "/proc/$1/status" 2>/dev/null || true; } |
        awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }'
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# start_server: starts a fresh server, sets server_pid and addr.
start_server() {
    : >"$work/server.err"
    # shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=VALUE words.
    env $server_env "$qtalk" interop --listen tcp://127.0.0.1:0 2>"$work/server.err" &
    server_pid=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's|^listening on tcp://||p' "$work/server.err")
        [[ -n $addr ]] && return
        sleep 0.05
    done
    echo "attack-rss: the server did not report its address:" >&2
    cat "$work/server.err" >&2
    exit 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# field LINE NAME: the value of NAME=VALUE in LINE.
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "server: $qtalk${server_env:+ (env $server_env)}; fresh server per scenario; hold ${hold}s; RSS again ${after}s after the attack"
rows=()
for scenario in $scenarios; do
    sessions=${scenario%x*}
    channels=${scenario#*x}
    start_server
    "$bystander" "$addr" --secs 1 >/dev/null
    baseline=$(status_kib "$server_pid" VmRSS)

    "$bystander" "$addr" --secs 120 >"$work/bystander.out" &
    bystander_pid=$!
    "$attacker" "$addr" "$sessions" "$channels" --hold "$hold" >"$work/attacker.out" \
        2>"$work/attacker.err" &
    attacker_pid=$!
    peak=0
    for _ in $(seq 1200); do # at most 120 s
        kill -0 "$attacker_pid" 2>/dev/null || break
        rss=$(status_kib "$server_pid" VmRSS)
        ((rss > peak)) && peak=$rss
        sleep 0.1
    done
    wait "$attacker_pid" || echo "attack-rss: busy_channels failed: $(cat "$work/attacker.err")" >&2
    kill -TERM "$bystander_pid" 2>/dev/null || true
    wait "$bystander_pid" || true
    hwm=$(status_kib "$server_pid" VmHWM)
    sleep "$after"
    later=$(status_kib "$server_pid" VmRSS)
    alive=yes
    kill -0 "$server_pid" 2>/dev/null || alive=no
    stop_server

    summary=$(grep '^busy_channels:' "$work/attacker.out" || true)
    by=$(cat "$work/bystander.out")
    sed 's/^/  /' "$work/attacker.out" | cut -c1-400
    echo "  $by"
    if grep -qv '^listening on' "$work/server.err"; then
        echo "  server stderr (last lines):"
        grep -v '^listening on' "$work/server.err" | tail -n 5 | sed 's/^/    /'
    fi
    rows+=("$(printf '%8s %8s %12s %10s %8s %10s %10s %9s %8s %8s' \
        "$channels" "$sessions" "$(field "$summary" written)" "$(field "$summary" confirmed)" \
        "$(mib "$peak")" "$(mib "$hwm")" "$(mib "$later")" "$(mib "$baseline")" \
        "$(field "$by" p99_ms)" "$(field "$by" failures)") $alive")
done

echo
printf '%8s %8s %12s %10s %8s %10s %10s %9s %8s %8s %s\n' channels sessions written confirmed \
    peak_MiB VmHWM_MiB after_MiB base_MiB p99_ms failures server_alive
printf '%s\n' "${rows[@]}"
