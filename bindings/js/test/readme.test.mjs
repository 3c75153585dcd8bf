// Every JavaScript block of README.md compiles (as a module, the package's imports resolved);
// the browser quick start also runs, in test/browser.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

test("the README's JavaScript blocks compile", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 5, `${blocks.length} blocks`);
  const dist = fileURLToPath(new URL("../dist/node.js", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "qtalk-readme-"));
  try {
    blocks.forEach((code, i) => {
      const file = join(dir, `block${i}.mjs`);
      writeFileSync(file, code.replaceAll('"@qtalk-rs/qtalk"', JSON.stringify(dist)));
      execFileSync(process.execPath, ["--check", file], { stdio: "pipe" });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the repository's READMEs' JavaScript blocks compile", () => {
  // The top-level README's browser quick start and the qtalk-mux README's certificate pinning.
  const files = ["../../../README.md", "../../../crates/qmux/README.md"];
  const blocks = files.flatMap((f) => {
    const text = readFileSync(new URL(f, import.meta.url), "utf8");
    return [...text.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => [f, m[1]]);
  });
  assert.ok(blocks.length >= 2, `${blocks.length} blocks`);
  const dist = fileURLToPath(new URL("../dist/node.js", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "qtalk-readme-"));
  try {
    blocks.forEach(([f, code], i) => {
      const file = join(dir, `block${i}.mjs`);
      // Indented blocks (inside a list item) are fine as they are.
      writeFileSync(file, code.replaceAll('"@qtalk-rs/qtalk"', JSON.stringify(dist)));
      try {
        execFileSync(process.execPath, ["--check", file], { stdio: "pipe" });
      } catch (e) {
        assert.fail(`${f}, block ${i}: ${e.stderr}`);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
