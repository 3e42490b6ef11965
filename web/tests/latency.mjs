// Glass-to-glass latency of a live HLS stream as hls.js plays it in headless Chromium.
//
// The stream must be the wall-clock stream (testkit/src/clock.rs, `spherecast-clock`): every
// frame carries the Unix time in ms at which it was made. For every frame the video presents
// (requestVideoFrameCallback), the page copies the code band of the picture into a canvas,
// reads the code (clock-code.mjs) and records latency = display time - code time, where the
// display time is Date.now() moved to the frame's expected display time. Same machine, same
// clock. Frames whose code does not read (bad contrast or CRC) are counted and left out.
//
// The page and hls.js are served by this script from web/node_modules (no CDN), on the
// playlist's own origin (Playwright answers requests under /__latency__/ itself), so any
// server works without CORS: spherecast or nginx-rtmp.
//
// Usage: node web/tests/latency.mjs PLAYLIST_URL [--seconds 60] [--warmup 10]
//          [--low-latency] [--hls-config JSON] [--sync-count N] [--samples] [--timeout 40]
//   --seconds      how long to sample, after the warm-up
//   --warmup       seconds of playback before sampling starts (hls.js settles on its live edge)
//   --low-latency  hls.js lowLatencyMode on (for LL-HLS); otherwise hls.js defaults
//   --hls-config   extra hls.js config as JSON, e.g. '{"liveSyncDurationCount":2}'
//   --sync-count N what the Spherecast player does: hold back N target durations on classic
//                  playlists (set on hls.config after construction, so LL-HLS playlists keep
//                  their PART-HOLD-BACK); 0 = hls.js's default (3)
//   --samples      include every sample [display ms, code ms, media time s] in the output
//   --timeout      seconds to wait for the first presented frame
// Prints one JSON object; exits 1 when no frame could be read.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, "..");

function parseArgs(argv) {
  const opts = { seconds: 60, warmup: 10, lowLatency: false, hlsConfig: {}, syncCount: 0, samples: false, timeout: 40 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name) => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${name} needs a number, got ${argv[i]}`);
      return v;
    };
    if (a === "--seconds") opts.seconds = num(a);
    else if (a === "--warmup") opts.warmup = num(a);
    else if (a === "--timeout") opts.timeout = num(a);
    else if (a === "--low-latency") opts.lowLatency = true;
    else if (a === "--samples") opts.samples = true;
    else if (a === "--hls-config") opts.hlsConfig = JSON.parse(argv[++i]);
    else if (a === "--sync-count") opts.syncCount = num(a);
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else rest.push(a);
  }
  if (rest.length !== 1) throw new Error("one playlist URL is needed");
  opts.url = rest[0];
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`latency.mjs: ${e.message}`);
  console.error("usage: latency.mjs PLAYLIST_URL [--seconds 60] [--warmup 10] [--low-latency] [--hls-config JSON] [--samples] [--timeout 40]");
  process.exit(2);
}

// The page: hls.js plays the playlist muted; every presented frame is sampled.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>latency</title></head>
<body style="margin:0;background:#000">
<video id="video" muted autoplay playsinline></video>
<script src="hls.min.js"></script>
<script type="module">
import { readClock, BAND_ROWS, GRID_ROWS } from "./clock-code.mjs";
const state = window.__latency = {
  samples: [], unreadable: [], errors: [], waiting: [], firstFrameAt: null, sizes: {},
};
const { url, hlsConfig, syncCount } = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const video = document.getElementById("video");
const canvas = document.createElement("canvas");
canvas.width = 680;
canvas.height = 20 * BAND_ROWS;
const ctx = canvas.getContext("2d", { willReadFrequently: true });

function sample(now, meta) {
  // When the frame is (expected to be) on screen, in Date.now()'s clock.
  const shown = Date.now() + ((meta && meta.expectedDisplayTime) ? meta.expectedDisplayTime - now : 0);
  const w = video.videoWidth, h = video.videoHeight;
  if (w > 0 && h > 0) {
    ctx.drawImage(video, 0, 0, w, (h * BAND_ROWS) / GRID_ROWS, 0, 0, canvas.width, canvas.height);
    const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const ms = readClock({ width: image.width, height: image.height, data: image.data, channels: 4 }, BAND_ROWS);
    if (state.firstFrameAt === null) state.firstFrameAt = shown;
    state.sizes[w + "x" + h] = (state.sizes[w + "x" + h] || 0) + 1;
    if (ms === null) state.unreadable.push(shown);
    else state.samples.push([shown, ms, meta ? meta.mediaTime : video.currentTime]);
  }
  next();
}
const next = "requestVideoFrameCallback" in HTMLVideoElement.prototype
  ? () => video.requestVideoFrameCallback(sample)
  : () => requestAnimationFrame((now) => sample(now, null));
next();

video.addEventListener("waiting", () => { state.waiting.push(Date.now()); });
if (!window.Hls || !Hls.isSupported()) {
  state.errors.push("hls.js is not supported in this browser");
} else {
  const hls = window.__hls = new Hls(hlsConfig);
  if (syncCount > 0) hls.config.liveSyncDurationCount = syncCount;
  hls.on(Hls.Events.ERROR, (_, d) => {
    state.errors.push(d.type + "/" + d.details + (d.fatal ? " (fatal)" : ""));
    if (d.fatal && d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else if (d.fatal && d.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch((e) => state.errors.push("play: " + e)); });
  hls.loadSource(url);
  hls.attachMedia(video);
}
</script>
</body></html>`;

const files = {
  "index.html": ["text/html", PAGE],
  "hls.min.js": ["text/javascript", readFileSync(join(web, "node_modules/hls.js/dist/hls.min.js"))],
  "clock-code.mjs": ["text/javascript", readFileSync(join(here, "clock-code.mjs"))],
};

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

const origin = new URL(opts.url).origin;
const hlsConfig = { ...(opts.lowLatency ? { lowLatencyMode: true } : {}), ...opts.hlsConfig };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    // A headless page is never hidden, but keep Chromium from slowing a page it thinks is.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
  ],
});
const result = {
  url: opts.url, lowLatency: opts.lowLatency, hlsConfig, syncCount: opts.syncCount, warmupSeconds: opts.warmup,
  seconds: opts.seconds, samples: 0, unreadable: 0, latencyMs: null, errors: [],
};
let state = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on("console", (msg) => { if (msg.type() === "error") result.errors.push("console: " + msg.text()); });
  page.on("pageerror", (e) => result.errors.push("page: " + e.message));
  await page.route(`${origin}/__latency__/**`, (route) => {
    const name = new URL(route.request().url()).pathname.split("/").pop();
    const file = files[name];
    if (!file) return route.fulfill({ status: 404, body: "" });
    return route.fulfill({ status: 200, contentType: file[0], body: file[1] });
  });
  const started = Date.now();
  await page.goto(`${origin}/__latency__/index.html#${encodeURIComponent(JSON.stringify({ url: opts.url, hlsConfig, syncCount: opts.syncCount }))}`);
  const firstFrame = await page.waitForFunction(
    () => window.__latency && window.__latency.firstFrameAt,
    null,
    { timeout: opts.timeout * 1000, polling: 100 },
  ).then((h) => h.jsonValue(), () => null);
  if (firstFrame !== null) {
    result.firstFrameSeconds = (firstFrame - started) / 1000;
    const end = firstFrame + (opts.warmup + opts.seconds) * 1000;
    await page.waitForTimeout(Math.max(0, end - Date.now()));
  }
  state = await page.evaluate(() => window.__latency);
  const hlsInfo = await page.evaluate(() => {
    const h = window.__hls;
    const v = document.getElementById("video");
    return {
      hlsLatency: h ? h.latency : null,
      hlsTargetLatency: h ? h.targetLatency : null,
      currentTime: v.currentTime,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
    };
  });
  Object.assign(result, hlsInfo);
} finally {
  await browser.close();
}

if (state) {
  const from = (state.firstFrameAt ?? 0) + opts.warmup * 1000;
  const kept = state.samples.filter((s) => s[0] >= from);
  const latencies = kept.map((s) => s[0] - s[1]).sort((a, b) => a - b);
  const round = (v) => (v === null ? null : Math.round(v));
  result.samples = kept.length;
  result.unreadable = state.unreadable.filter((t) => t >= from).length;
  result.samplesInWarmup = state.samples.length - kept.length;
  result.unreadableInWarmup = state.unreadable.length - result.unreadable;
  // Stalls while measuring (the player also waits once while it starts).
  result.waitingEvents = state.waiting.filter((t) => t >= from).length;
  result.frameSizes = state.sizes;
  result.errors.push(...state.errors);
  if (latencies.length) {
    result.latencyMs = {
      p50: round(percentile(latencies, 50)),
      p95: round(percentile(latencies, 95)),
      min: round(latencies[0]),
      max: round(latencies[latencies.length - 1]),
      mean: round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
    };
  }
  if (opts.samples) result.frames = kept.map(([shown, ms, media]) => [Math.round(shown), ms, media]);
}
console.log(JSON.stringify(result));
process.exit(result.samples > 0 ? 0 : 1);
