//! The start page: every live stream with a player. hls.js is embedded in the binary.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

pub async fn hls_js() -> Response {
    let mut response = web::HLS_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    response
}

/// The player page (`/player/?url=...&projection=...`): flat, equirect, cubemap 3x2 and EAC.
/// The worker publishes the same files to the egress bucket (see the `web` crate).
pub async fn player() -> Response {
    with_cache(Html(web::PLAYER_HTML).into_response(), "max-age=60")
}

pub async fn player_js() -> Response {
    let mut response = with_cache(web::PLAYER_JS.into_response(), "max-age=60");
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

/// `/player` without the slash: the page's relative script paths need it.
pub async fn player_redirect(uri: axum::http::Uri) -> axum::response::Redirect {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    axum::response::Redirect::permanent(&format!("/player/{query}"))
}

fn with_cache(mut response: Response, value: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// Lists streams from `/api/streams` every few seconds; each gets a player that uses hls.js
/// where Media Source Extensions exist and native HLS elsewhere (iOS), and shows errors
/// instead of a silent black box.
const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Spherecast live</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; background: #111; color: #eee; }
  .stream { margin-bottom: 2rem; }
  video { width: 100%; max-width: 960px; background: #000; }
  .facts, .links { color: #aaa; font-size: 0.9rem; }
  a { color: #9cf; }
  .error { color: #f66; }
  code { color: #9cf; }
</style>
<script src="/static/hls.min.js"></script>
</head>
<body>
<h1>Spherecast live</h1>
<p id="empty">No live streams. Publish one with
<code>ffmpeg -re -i INPUT -c:v libx264 -c:a aac -f flv rtmp://HOST/live/NAME</code>.</p>
<div id="streams"></div>
<script>
const players = new Map();

function describe(s) {
  const res = s.width ? `${s.width}x${s.height}` : "?";
  const kbps = Math.round(s.bitrate / 1000);
  const state = !s.ready ? "starting" : s.publishing ? "live" : "ended";
  return `${state} · ${res} · ${s.video_codec || "no video"} ${s.audio_codec || ""} · ${kbps} kbit/s · up ${Math.round(s.uptime_secs)} s`;
}

function attach(video, url, errorBox) {
  // hls.js wherever Media Source Extensions exist; native HLS (Safari on iOS) otherwise.
  if (!(window.Hls && Hls.isSupported())) {
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      video.addEventListener("error", () => { errorBox.textContent = "Playback error: " + (video.error && video.error.message); });
    } else {
      errorBox.textContent = "This browser cannot play HLS (hls.js missing or unsupported).";
    }
    return null;
  }
  const hls = new Hls({ liveDurationInfinity: true });
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (data.fatal) {
      errorBox.textContent = `Playback error: ${data.type} ${data.details}`;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) setTimeout(() => hls.loadSource(url), 2000);
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    }
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return hls;
}

async function refresh() {
  let streams;
  try {
    streams = await (await fetch("/api/streams")).json();
  } catch (e) {
    return;
  }
  document.getElementById("empty").hidden = streams.length > 0;
  const container = document.getElementById("streams");
  const seen = new Set();
  for (const s of streams) {
    seen.add(s.name);
    let entry = players.get(s.name);
    if (!entry) {
      const div = document.createElement("div");
      div.className = "stream";
      div.dataset.name = s.name;
      div.innerHTML = `<h2></h2><video controls muted autoplay playsinline></video><div class="facts"></div><div class="links">Open in the player: <a data-p="flat">flat</a> · <a data-p="equirect">360</a></div><div class="error"></div>`;
      div.querySelector("h2").textContent = s.name;
      for (const a of div.querySelectorAll(".links a")) {
        a.href = `/player/?url=${encodeURIComponent(s.playlist)}&projection=${a.dataset.p}`;
      }
      container.appendChild(div);
      entry = { div, hls: null, attached: false };
      players.set(s.name, entry);
    }
    // The player starts once the first segment is out, so it never opens a missing playlist.
    if (!entry.attached && s.ready) {
      entry.hls = attach(entry.div.querySelector("video"), s.playlist, entry.div.querySelector(".error"));
      entry.attached = true;
    }
    entry.div.querySelector(".facts").textContent = describe(s);
  }
  for (const [name, entry] of players) {
    if (!seen.has(name)) {
      if (entry.hls) entry.hls.destroy();
      entry.div.remove();
      players.delete(name);
    }
  }
}
refresh();
setInterval(refresh, 3000);
</script>
</body>
</html>
"#;
