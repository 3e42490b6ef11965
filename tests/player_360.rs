//! The 360 player in a real headless Chromium (WebGL on SwiftShader): a synthetic cube whose
//! six faces have known colours is played (a) live from `spherecast up` as equirect and (b) as
//! VOD cubemap 3x2 and EAC files served over HTTP with the player beside them, as the worker
//! publishes them. Looking in each direction must show that direction's face colour at the
//! centre of the canvas, and the video's time must advance. Screenshots are kept in
//! `target/tmp/player-360/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::clip::{FACE_COLOURS, make_360_pattern};
use testkit::http::wait_until;
use testkit::up::Spherecast;

/// Every direction the test looks in: (face straight ahead, yaw, pitch, face at the left edge
/// of the view, face at its right edge). The view is 90 degrees high and 16:9, so the edges
/// see the neighbouring faces; those catch a face drawn rotated or mirrored.
const VIEWS: [(&str, f64, f64, &str, &str); 6] = [
    ("front", 0.0, 0.0, "left", "right"),
    ("up", 0.0, 90.0, "left", "right"),
    ("right", 90.0, 0.0, "front", "back"),
    ("left", -90.0, 0.0, "back", "front"),
    ("back", 180.0, 0.0, "right", "left"),
    ("down", 0.0, -90.0, "left", "right"),
];

/// Per channel, after 4:2:0, H.264 and bilinear filtering of solid colours.
const TOLERANCE: i32 = 48;

fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("player-360")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs web/tests/play-360.mjs on `page`; returns what it saw.
fn play(page: &str, shots: &Path) -> serde_json::Value {
    let views: Vec<serde_json::Value> = VIEWS
        .iter()
        .map(|(name, yaw, pitch, _, _)| serde_json::json!({"name": name, "yaw": yaw, "pitch": pitch}))
        .collect();
    let output = Command::new("node")
        .arg(testkit::repo_root().join("web/tests/play-360.mjs"))
        .arg(page)
        .arg(serde_json::Value::Array(views).to_string())
        .arg(shots)
        .output()
        .expect("node runs (scripts/setup.sh installs it with playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the player did not play {page}:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).expect("the script prints JSON")
}

/// The video played on, and each direction showed its face's colour.
fn check(seen: &serde_json::Value, mode: &str) {
    assert_eq!(seen["mode"], mode, "{seen}");
    assert_eq!(
        seen["advanced"], true,
        "the video's time did not advance: {seen}"
    );
    let views = seen["views"].as_array().expect("views");
    assert_eq!(views.len(), VIEWS.len(), "{seen}");
    for (view, (name, _, _, left, right)) in views.iter().zip(VIEWS) {
        for (key, face, place) in [
            ("rgb", name, "ahead"),
            ("leftRgb", left, "at the left"),
            ("rightRgb", right, "at the right"),
        ] {
            let (_, want) = FACE_COLOURS.iter().find(|(n, _)| *n == face).unwrap();
            let got: Vec<i32> = view[key]
                .as_array()
                .unwrap_or_else(|| panic!("no pixel read looking {name}: {seen}"))
                .iter()
                .map(|c| c.as_i64().unwrap() as i32)
                .collect();
            let close = got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - i32::from(*w)).abs() <= TOLERANCE);
            assert!(
                close,
                "{mode}: looking {name}, {place} showed {got:?}, not the {face} face's {want:?}\n{seen}"
            );
        }
    }
}

#[test]
fn a_live_equirect_stream_shows_each_face_where_it_belongs() {
    let tmp = tempfile::tempdir().unwrap();
    let pattern = tmp.path().join("equirect.flv");
    make_360_pattern(&pattern, "e", 128, 30.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let mut push = testkit::clip::push_file(&pattern, &server.rtmp_url("sphere")).unwrap();
    wait_until(
        &server.http_url("/hls/sphere.m3u8"),
        Duration::from_secs(20),
        |r| r.status == 200,
    );
    let page = server.http_url("/player/?url=/hls/sphere.m3u8&projection=equirect");
    let seen = play(&page, &artifacts("live-equirect"));
    let _ = push.kill();
    let _ = push.wait();
    assert_eq!(seen["videoWidth"], 512, "{seen}");
    check(&seen, "equirect");
}

/// `python3 -m http.server` on a free loopback port, serving `dir`; killed on drop.
struct StaticServer {
    child: Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &Path) -> StaticServer {
        let addr = testkit::net::free_addr();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "python3 http.server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        StaticServer {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A VOD rendition of the pattern in `projection`, as HLS under `dir/NAME/`.
fn vod(dir: &Path, name: &str, projection: &str) {
    let source = dir.join(format!("{name}.flv"));
    make_360_pattern(&source, projection, 128, 8.0).unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&source)
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
        ])
        .arg(out.join("index.m3u8"))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn vod_cubemap_and_eac_renditions_show_each_face_where_it_belongs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    vod(root, "c3x2", "c3x2");
    vod(root, "eac", "eac");
    // The EAC rendition says what it is in a sidecar; the cubemap one by the page parameter.
    std::fs::write(root.join("eac/projection.json"), r#"{"projection": "eac"}"#).unwrap();
    // The player beside the renditions, as it is published with a ladder.
    let player = root.join("player");
    std::fs::create_dir_all(&player).unwrap();
    let web = testkit::repo_root().join("web");
    for (from, to) in [
        ("player/index.html", "index.html"),
        ("player/player.js", "player.js"),
        ("node_modules/hls.js/dist/hls.min.js", "hls.min.js"),
    ] {
        std::fs::copy(web.join(from), player.join(to)).unwrap();
    }
    let server = StaticServer::start(root);

    let seen = play(
        &format!(
            "{}/player/index.html?url=../c3x2/index.m3u8&projection=c3x2",
            server.url
        ),
        &artifacts("vod-c3x2"),
    );
    assert_eq!(seen["videoWidth"], 384, "{seen}");
    check(&seen, "c3x2");

    let seen = play(
        &format!("{}/player/index.html?url=../eac/index.m3u8", server.url),
        &artifacts("vod-eac"),
    );
    check(&seen, "eac");
}

#[test]
fn the_player_says_what_is_wrong_in_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let script = r#"
import { chromium } from "playwright-core";
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"] });
const out = {};
try {
  const page = await browser.newPage();
  for (const [name, path] of Object.entries(JSON.parse(process.argv[2]))) {
    await page.goto(path);
    await page.waitForFunction(() => document.getElementById("error").textContent !== "", null, { timeout: 20000 })
      .catch(() => {});
    out[name] = await page.evaluate(() => document.getElementById("error").textContent);
  }
} finally { await browser.close(); }
console.log(JSON.stringify(out));
"#;
    let file = testkit::repo_root().join("web/tests/.errors-probe.mjs");
    std::fs::write(&file, script).unwrap();
    let pages = serde_json::json!({
        "no_url": server.http_url("/player/"),
        "missing": server.http_url("/player/?url=/hls/nothing.m3u8&projection=equirect"),
        "bad_projection": server.http_url("/player/?url=/hls/nothing.m3u8&projection=cylinder"),
    });
    let output = Command::new("node")
        .arg(&file)
        .arg(pages.to_string())
        .output()
        .expect("node runs");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert!(seen["no_url"].as_str().unwrap().contains("?url="), "{seen}");
    assert!(
        seen["missing"].as_str().unwrap().contains("Playback error"),
        "{seen}"
    );
    assert!(
        seen["bad_projection"]
            .as_str()
            .unwrap()
            .contains("Unknown projection"),
        "{seen}"
    );
}
