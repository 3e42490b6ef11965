// Reads the wall-clock code (clock-code.mjs) from raw luma planes, for the round-trip test
// against the Rust encoder (tests/latency_clock.rs).
// Usage: node web/tests/clock-read.mjs WIDTH HEIGHT FILE...   (each FILE: WIDTH*HEIGHT bytes)
// Prints a JSON array: the milliseconds read from each file, or null where the code did not read.
import { readFileSync } from "node:fs";
import { readClock } from "./clock-code.mjs";

const [w, h, ...paths] = process.argv.slice(2);
const width = Number(w);
const height = Number(h);
if (!(width > 0 && height > 0) || !paths.length) {
  console.error("usage: clock-read.mjs WIDTH HEIGHT FILE...");
  process.exit(2);
}
const out = paths.map((path) => {
  const data = readFileSync(path);
  if (data.length < width * height) throw new Error(`${path}: ${data.length} bytes, less than ${width}x${height}`);
  return readClock({ width, height, data, channels: 1 });
});
console.log(JSON.stringify(out));
