//! The 360 player in a real headless Chromium (WebGL on SwiftShader): a synthetic cube whose
//! six faces have known colours is played (a) live from `spherecast up` as equirect and (b) as
//! the real worker's VOD cubemap 3x2 and EAC renditions of a 360 recording, served over HTTP
//! with the player the worker publishes beside them, the mode taken from its projection.json. Looking in each direction must show that direction's face colour at the
//! centre of the canvas, and the video's time must advance. Screenshots are kept in
//! `target/tmp/player-360/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::clip::{FACE_COLOURS, make_360_pattern};
use testkit::http::wait_until;
use testkit::up::Spherecast;

/// Every direction the test looks in: (name, yaw, pitch). Right and up are positive.
const VIEWS: [(&str, f64, f64); 6] = [
    ("front", 0.0, 0.0),
    ("up", 0.0, 90.0),
    ("right", 90.0, 0.0),
    ("left", -90.0, 0.0),
    ("back", 180.0, 0.0),
    ("down", 0.0, -90.0),
];

/// Where each view is sampled, as fractions of the canvas from its left and top edges: above
/// and below the middle, and near the four corners (the 16:9 view is wider than a face, so
/// those see the neighbouring faces).
const POINTS: [(f64, f64); 6] = [
    (0.5, 0.3),
    (0.5, 0.7),
    (0.04, 0.25),
    (0.96, 0.25),
    (0.04, 0.75),
    (0.96, 0.75),
];

/// The player's canvas in the test (the page's viewport) and its vertical field of view.
const CANVAS: (f64, f64) = (640.0, 360.0);
const FOV_DEGREES: f64 = 90.0;

/// Per channel, after 4:2:0, H.264 and bilinear filtering.
const TOLERANCE: i32 = 48;

/// The oracle, independent of any layout: what the pattern shows at canvas point (fx, fy)
/// looking at (yaw, pitch): the face the ray meets and whether it meets the face's upper
/// (bright) or lower (dark) half, or `None` within a few degrees of an edge, where filtering
/// blends two colours. Directions: x right, y up, z back.
fn expected(yaw: f64, pitch: f64, fx: f64, fy: f64) -> Option<(&'static str, bool)> {
    let tan = (FOV_DEGREES.to_radians() / 2.0).tan();
    let camera = [
        (2.0 * fx - 1.0) * tan * CANVAS.0 / CANVAS.1,
        (1.0 - 2.0 * fy) * tan,
        -1.0,
    ];
    // Pitch about x, then yaw about y (turning right is a negative rotation about +y).
    let (sp, cp) = pitch.to_radians().sin_cos();
    let pitched = [
        camera[0],
        cp * camera[1] - sp * camera[2],
        sp * camera[1] + cp * camera[2],
    ];
    let (sy, cy) = (-yaw).to_radians().sin_cos();
    let d = [
        cy * pitched[0] + sy * pitched[2],
        pitched[1],
        -sy * pitched[0] + cy * pitched[2],
    ];
    let a = d.map(f64::abs);
    // (face, the face's other two coordinates, the upright "down" coordinate on the face)
    let (face, across, down) = if a[0] >= a[1] && a[0] >= a[2] {
        (
            if d[0] > 0.0 { "right" } else { "left" },
            d[2] / a[0],
            -d[1] / a[0],
        )
    } else if a[1] >= a[2] {
        if d[1] > 0.0 {
            ("up", d[0] / a[1], -d[2] / a[1])
        } else {
            ("down", d[0] / a[1], d[2] / a[1])
        }
    } else {
        (
            if d[2] < 0.0 { "front" } else { "back" },
            d[0] / a[2],
            -d[1] / a[2],
        )
    };
    let margin = 0.12;
    if across.abs() > 1.0 - margin || down.abs() > 1.0 - margin || down.abs() < margin {
        return None;
    }
    Some((face, down < 0.0))
}

fn colour(face: &str, bright: bool) -> [i32; 3] {
    let (_, rgb) = FACE_COLOURS.iter().find(|(n, _)| *n == face).unwrap();
    rgb.map(|c| {
        if bright {
            i32::from(c)
        } else {
            i32::from(c / 2)
        }
    })
}

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
        .map(|(name, yaw, pitch)| {
            serde_json::json!({"name": name, "yaw": yaw, "pitch": pitch, "points": POINTS})
        })
        .collect();
    let views = serde_json::Value::Array(views).to_string();
    let args: [&std::ffi::OsStr; 3] = [page.as_ref(), views.as_ref(), shots.as_os_str()];
    testkit::browser::run_script("play-360.mjs", &args)
}

/// The video played on, and every sampled point showed what the oracle says: the straight
/// ahead face's bright half above the middle and its dark half below, the neighbours upright
/// at the corners.
fn check(seen: &serde_json::Value, mode: &str) {
    assert_eq!(seen["mode"], mode, "{seen}");
    assert_eq!(
        seen["advanced"], true,
        "the video's time did not advance: {seen}"
    );
    let views = seen["views"].as_array().expect("views");
    assert_eq!(views.len(), VIEWS.len(), "{seen}");
    for (view, (name, yaw, pitch)) in views.iter().zip(VIEWS) {
        let mut checked = 0;
        for sample in view["samples"].as_array().expect("samples") {
            let (fx, fy) = (
                sample["fx"].as_f64().unwrap(),
                sample["fy"].as_f64().unwrap(),
            );
            let Some((face, bright)) = expected(yaw, pitch, fx, fy) else {
                continue;
            };
            let want = colour(face, bright);
            let got: Vec<i32> = sample["rgb"]
                .as_array()
                .unwrap_or_else(|| panic!("no pixel read looking {name}: {seen}"))
                .iter()
                .map(|c| c.as_i64().unwrap() as i32)
                .collect();
            let close = got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - w).abs() <= TOLERANCE);
            let half = if bright { "upper" } else { "lower" };
            assert!(
                close,
                "{mode}: looking {name}, at ({fx}, {fy}) the canvas showed {got:?}, not the \
                 {face} face's {half} half {want:?}\n{seen}"
            );
            checked += 1;
        }
        assert!(
            checked >= 4,
            "looking {name}: only {checked} points away from edges"
        );
    }
}

#[test]
fn the_oracle_sees_the_faces_where_they_are() {
    // Straight ahead, above the middle: the front face's upper half.
    assert_eq!(expected(0.0, 0.0, 0.5, 0.3), Some(("front", true)));
    assert_eq!(expected(0.0, 0.0, 0.5, 0.7), Some(("front", false)));
    // Looking up, the top of the view is toward the back: the up face's upper half.
    assert_eq!(expected(0.0, 90.0, 0.5, 0.3), Some(("up", true)));
    assert_eq!(expected(90.0, 0.0, 0.04, 0.25), Some(("front", true)));
    assert_eq!(expected(90.0, 0.0, 0.96, 0.25), Some(("back", true)));
    assert_eq!(expected(0.0, 0.0, 0.5, 0.5), None);
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

/// Runs the real worker (local buckets, embedded queue) on a 360 recording of the pattern
/// named `NAME_360-…`, with an EAC and a c3x2 cubemap rung; returns the egress folder, which
/// then holds the ladder under `cube_360-1731000000/` and the player the worker publishes under
/// `player/`.
fn worker_ladder(dir: &Path) -> PathBuf {
    use cloud::{EmbeddedQueue, LocalStore, ObjectStore, PutOptions, Queue};

    let data = dir.join("data");
    let source = dir.join("pattern.flv");
    make_360_pattern(&source, "e", 128, 8.0).unwrap();
    let key = "cube_360-1731000000.flv";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ingress = LocalStore::new(data.join("ingress"), "ingress");
        let info = ingress
            .put_file(key, &source, &PutOptions::default())
            .await
            .unwrap();
        let queue = EmbeddedQueue::open(
            data.join("queue"),
            cloud::QueueSettings {
                visibility_timeout: Duration::from_secs(120),
                max_receive_count: 5,
            },
        )
        .unwrap();
        queue
            .send(&cloud::object_created_event(
                "ingress", key, info.size, &info.etag,
            ))
            .await
            .unwrap();
    });
    let config = dir.join("spherecast.toml");
    std::fs::write(
        &config,
        r#"[worker]
segment_secs = 2
keyframe_interval_secs = 1
[[worker.rungs]]
name = "240p"
height = 240
video_kbps = 400
audio_kbps = 64
[[worker.immersive.rungs]]
name = "eac_288"
layout = "eac"
height = 288
video_kbps = 1500
audio_kbps = 64
[[worker.immersive.rungs]]
name = "c3x2_256"
layout = "c3x2"
height = 256
video_kbps = 1500
audio_kbps = 64
"#,
    )
    .unwrap();
    let mut worker =
        testkit::up::Worker::start(&data, &["--config", config.to_str().unwrap()], &[]).unwrap();
    let egress = data.join("egress");
    let master = egress.join("cube_360-1731000000/master.m3u8");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !master.exists() {
        assert!(
            std::time::Instant::now() < deadline && worker.exited().is_none(),
            "the worker made no ladder:\n{}",
            worker.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    worker.stop(Duration::from_secs(10)).unwrap();
    egress
}

#[test]
fn the_workers_vod_cubemaps_show_each_face_where_it_belongs() {
    let tmp = tempfile::tempdir().unwrap();
    let egress = worker_ladder(tmp.path());
    // The player the worker published beside the ladders, served as a bucket would be.
    assert!(egress.join("player/index.html").exists());
    let server = StaticServer::start(&egress);

    // No projection parameter: the page reads the worker's projection.json.
    let seen = play(
        &format!(
            "{}/player/index.html?url=../cube_360-1731000000/c3x2.m3u8",
            server.url
        ),
        &artifacts("vod-c3x2"),
    );
    assert_eq!(seen["videoWidth"], 384, "{seen}");
    check(&seen, "c3x2");

    let seen = play(
        &format!(
            "{}/player/index.html?url=../cube_360-1731000000/eac.m3u8",
            server.url
        ),
        &artifacts("vod-eac"),
    );
    assert_eq!(seen["videoWidth"], 512, "{seen}");
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
    let seen = testkit::browser::run_script(".errors-probe.mjs", &[pages.to_string()]);
    let _ = std::fs::remove_file(&file);
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
