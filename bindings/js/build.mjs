// Builds dist/: ES modules for Node and bundlers (split, so that the entry points share their
// classes), the minified browser bundle dist/qtalk.min.js (both codecs), and the TypeScript
// declarations. Prints the bundle's size minified and gzipped, and fails past the budget.
//
//   node build.mjs            # everything
//   node build.mjs --no-types # skip the declarations (faster, for tests)
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const BUDGET = 15 * 1024; // bytes, minified and gzipped

rmSync(dist, { recursive: true, force: true });

await build({
  entryPoints: {
    index: "src/index.ts",
    node: "src/node.ts",
    interop: "src/interop/index.ts",
    cli: "src/cli.ts",
  },
  absWorkingDir: here,
  outdir: dist,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  external: ["ws", "node:*"],
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
});

// Internals for the tests (not part of the package).
await build({
  entryPoints: ["test/internal.ts"],
  absWorkingDir: here,
  outfile: join(here, "test", ".build", "internal.js"),
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  logLevel: "warning",
});

// The command (package.json "bin") starts with a shebang and is executable.
const cli = join(dist, "cli.js");
writeFileSync(cli, "#!/usr/bin/env node\n" + readFileSync(cli, "utf8"));
chmodSync(cli, 0o755);

await build({
  entryPoints: ["src/index.ts"],
  absWorkingDir: here,
  outfile: join(dist, "qtalk.min.js"),
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  logLevel: "warning",
});

if (!process.argv.includes("--no-types")) {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", here], { stdio: "inherit" });
}

const min = readFileSync(join(dist, "qtalk.min.js"));
const gz = gzipSync(min, { level: 9 }).length;
const kb = (n) => (n / 1024).toFixed(1);
console.log(
  `browser bundle dist/qtalk.min.js: ${kb(min.length)} KB minified, ${kb(gz)} KB min+gzip ` +
    `(${gz} bytes; budget ${kb(BUDGET)} KB)`,
);
if (gz > BUDGET) {
  console.error(`the browser bundle is over its budget by ${gz - BUDGET} bytes`);
  process.exit(1);
}
