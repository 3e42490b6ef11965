// Plays an LL-HLS stream from the origin with hls.js (served by the origin) in low-latency
// mode in headless Chromium, and reports what the player did: whether the video advanced,
// its size, whether hls.js saw parts and blocking reload in the playlist and loaded parts,
// and its latency estimate.
// Usage: node web/tests/play-llhls.mjs http://127.0.0.1:PORT STREAM_NAME
// Prints one JSON line; exits 1 when playback did not happen.
import { chromium } from "playwright-core";

const [origin, name] = process.argv.slice(2);
if (!origin || !name) {
  console.error("usage: play-llhls.mjs ORIGIN_URL STREAM_NAME");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
let result = { played: false, consoleErrors: [], failedRequests: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") result.consoleErrors.push(msg.text()); });
  page.on("response", (r) => { if (r.status() >= 400) result.failedRequests.push(`${r.status()} ${r.url()}`); });
  // Same origin as the stream, so nothing depends on CORS here.
  await page.goto(`${origin}/healthz`);
  await page.addScriptTag({ url: `${origin}/static/hls.min.js` });
  await page.evaluate((src) => {
    const seen = { partsInPlaylist: 0, canBlockReload: false, partsLoaded: 0, fatal: "" };
    window.seen = seen;
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    document.body.appendChild(video);
    const hls = new Hls({ lowLatencyMode: true });
    window.hls = hls;
    hls.on(Hls.Events.LEVEL_UPDATED, (_, data) => {
      seen.partsInPlaylist = Math.max(seen.partsInPlaylist, data.details.partList?.length || 0);
      seen.canBlockReload ||= !!data.details.canBlockReload;
    });
    hls.on(Hls.Events.FRAG_LOADED, (_, data) => { if (data.part) seen.partsLoaded += 1; });
    hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) seen.fatal = `${data.type}: ${data.details}`; });
    hls.loadSource(src);
    hls.attachMedia(video);
  }, `${origin}/hls/${name}.m3u8`);
  await page.waitForFunction(
    () => {
      const v = document.querySelector("video");
      return v && v.currentTime > 2.0 && v.videoWidth > 0 && window.seen.partsLoaded > 3;
    },
    null,
    { timeout: 40000, polling: 200 },
  ).then(() => { result.played = true; }, () => {});
  result = {
    ...result,
    ...(await page.evaluate(() => ({
      ...window.seen,
      currentTime: document.querySelector("video").currentTime,
      videoWidth: document.querySelector("video").videoWidth,
      videoHeight: document.querySelector("video").videoHeight,
      latency: window.hls.latency,
      targetLatency: window.hls.targetLatency,
    }))),
  };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.played && !result.fatal ? 0 : 1);
