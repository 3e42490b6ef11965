// Opens the Spherecast player page in headless Chromium, waits until the video plays, then
// turns the view to each requested direction and reads the colour at the centre of the
// canvas; saves a screenshot per direction.
// Usage: node web/tests/play-360.mjs PAGE_URL VIEWS_JSON SCREENSHOT_DIR
//   VIEWS_JSON: [{"name": "front", "yaw": 0, "pitch": 0, "points": [[fx, fy], ...]}, ...]
//   (points as fractions of the canvas from its left and top edges)
// Prints one JSON line: {played, currentTime, advanced, videoWidth, mode, error,
//   views: [{name, yaw, pitch, samples: [{fx, fy, rgb}]}], consoleErrors}.
import { chromium } from "playwright-core";

const [url, viewsJson, shots] = process.argv.slice(2);
if (!url || !viewsJson || !shots) {
  console.error("usage: play-360.mjs PAGE_URL VIEWS_JSON SCREENSHOT_DIR");
  process.exit(2);
}
const views = JSON.parse(viewsJson);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--no-first-run", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    // WebGL on the CPU: SwiftShader, which newer Chromium only allows when asked.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  ],
});
const result = { played: false, currentTime: 0, advanced: false, views: [], error: "", consoleErrors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 640, height: 360 } });
  page.on("console", (msg) => { if (msg.type() === "error") result.consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => result.consoleErrors.push(String(err)));
  await page.goto(url);
  await page.waitForFunction(() => {
    const v = document.getElementById("video");
    return v && v.currentTime > 1.0 && v.videoWidth > 0;
  }, null, { timeout: 45000, polling: 200 }).then(() => { result.played = true; }, () => {});
  const first = await page.evaluate(() => document.getElementById("video").currentTime);
  await page.waitForTimeout(1500);
  result.currentTime = await page.evaluate(() => document.getElementById("video").currentTime);
  result.advanced = result.currentTime > first;
  result.videoWidth = await page.evaluate(() => document.getElementById("video").videoWidth);
  result.videoHeight = await page.evaluate(() => document.getElementById("video").videoHeight);
  result.mode = await page.evaluate(() => window.spherecastPlayer.view.mode);
  for (const view of views) {
    await page.evaluate(({ yaw, pitch }) => window.spherecastPlayer.look(yaw, pitch), view);
    const samples = [];
    for (const [fx, fy] of view.points) {
      samples.push({ fx, fy, rgb: await page.evaluate(([x, y]) => window.spherecastPlayer.pixelAt(x, y), [fx, fy]) });
    }
    await page.screenshot({ path: `${shots}/${view.name}.png` });
    result.views.push({ name: view.name, yaw: view.yaw, pitch: view.pitch, samples });
  }
  result.error = await page.evaluate(() => window.spherecastPlayer.error());
} catch (err) {
  result.error = result.error || String(err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.played && !result.error ? 0 : 1);
