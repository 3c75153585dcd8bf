// Internals the tests reach (bundled into test/.build/internal.js by build.mjs).
export * from "../src/mux/frame.js";
