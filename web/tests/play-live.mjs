// Opens the origin's start page in headless Chromium and checks that the first listed live
// stream really plays: the video's currentTime advances and the page shows no error.
// Usage: node web/tests/play-live.mjs http://127.0.0.1:PORT/ STREAM_NAME
// Prints one JSON line with what it saw; exits 1 when playback did not happen.
import { chromium } from "playwright-core";

const [url, name] = process.argv.slice(2);
if (!url || !name) {
  console.error("usage: play-live.mjs URL STREAM_NAME");
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
const result = { played: false, currentTime: 0, error: "", facts: "", consoleErrors: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") result.consoleErrors.push(msg.text()); });
  await page.goto(url);
  const card = page.locator(`.stream[data-name="${name}"]`);
  await card.waitFor({ timeout: 20000 });
  const video = card.locator("video");
  // Wait until the player has decoded past one second of the live stream.
  await page.waitForFunction(
    (n) => {
      const v = document.querySelector(`.stream[data-name="${n}"] video`);
      return v && v.currentTime > 1.0 && v.videoWidth > 0;
    },
    name,
    { timeout: 30000, polling: 200 },
  ).then(() => { result.played = true; }, () => {});
  result.currentTime = await video.evaluate((v) => v.currentTime);
  result.videoWidth = await video.evaluate((v) => v.videoWidth);
  result.videoHeight = await video.evaluate((v) => v.videoHeight);
  result.error = await card.locator(".error").textContent();
  result.facts = await card.locator(".facts").textContent();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.played && !result.error ? 0 : 1);
