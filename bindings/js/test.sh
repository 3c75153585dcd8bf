#!/usr/bin/env bash
# The JavaScript package (bindings/js): build (esbuild bundles, TypeScript declarations, the
# browser bundle's size against its 15 KB budget), what `npm pack` would publish, then the
# tests: codecs and sessions against the Go recordings, RPC, the WebTransport mapping in memory,
# the check sequence against the Rust `qtalk` command and the Go reference peer as separate
# processes, and headless Chromium against the Rust server.
#
#   bindings/js/test.sh              # everything
#   bindings/js/test.sh test/rpc.test.mjs   # some test files only (after the build)
#
# Environment: QTALK_BIN (the Rust qtalk command; default target/debug/qtalk, built here),
# QTALK_GO_PEER (the Go reference peer; its cases SKIP without it, or fail with
# QTALK_REQUIRE_GO_PEER=1), CHROMIUM (default /usr/bin/chromium), QTALK_SKIP_BROWSER=1 (skip the
# browser tests where no Chromium can be installed), QTALK_REQUIRE_WEBTRANSPORT (default: 1 when
# the qtalk command serves https://, else its WebTransport tests print SKIPPED).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
start=$(date +%s)
cd "$here"

if [[ ! -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    echo "== npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi

echo "== build"
node build.mjs

echo "== the published types, as a TypeScript user sees them (test/consumer.ts)"
node node_modules/typescript/bin/tsc -p test/tsconfig.json

echo "== npm pack (what would be published)"
npm pack --dry-run --json --ignore-scripts 2>/dev/null | node -e '
  const [pack] = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const files = pack.files.map((f) => f.path);
  const stray = files.filter((f) => !/^(dist\/|README\.md$|LICENSE$|package\.json$)/.test(f));
  if (stray.length) { console.error("npm pack would publish stray files:", stray); process.exit(1); }
  for (const need of ["dist/index.js", "dist/node.js", "dist/cli.js", "dist/interop.js", "dist/types/index.d.ts", "README.md", "LICENSE"])
    if (!files.includes(need)) { console.error("npm pack lacks", need); process.exit(1); }
  console.log(`${pack.name}@${pack.version}: ${files.length} files, ${(pack.size / 1024).toFixed(1)} KB packed`);
'

if [[ -z "${QTALK_BIN:-}" ]]; then
    echo "== the Rust qtalk command (cargo build -p qtalk-cli)"
    (cd "$repo" && cargo build --quiet -p qtalk-cli)
    export QTALK_BIN="$repo/target/debug/qtalk"
fi

# A qtalk that serves https:// (WebTransport) must pass the browser's WebTransport tests; one
# that does not yet makes them print SKIPPED.
if [[ -z "${QTALK_REQUIRE_WEBTRANSPORT:-}" ]] && "$QTALK_BIN" interop --help 2>/dev/null | grep -q 'https://'; then
    export QTALK_REQUIRE_WEBTRANSPORT=1
fi
echo "== node --test (QTALK_REQUIRE_WEBTRANSPORT=${QTALK_REQUIRE_WEBTRANSPORT:-0})"
if [[ $# -gt 0 ]]; then
    node --test "$@"
else
    # Two files at a time: much of it waits on other processes (qtalk, Chromium, the Go peer).
    node --test --test-concurrency=2 test/*.test.mjs
fi
echo "== bindings/js: ok in $(( $(date +%s) - start )) s"
