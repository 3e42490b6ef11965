//! The HTTP surface and publish authorisation by callback: headers, HEAD, 404s, the streams
//! API, metrics, the start page, and an nginx-rtmp compatible `on_publish` server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use media::flv::TagKind;
use testkit::clip;
use testkit::http::{get, metric, request, wait_until};
use testkit::rtmp::RawPublisher;
use testkit::up::Spherecast;

#[test]
fn live_hls_is_served_with_the_right_headers_and_unknown_names_are_404() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 3.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let (mut publisher, reply) = RawPublisher::publish(server.rtmp, "hdr").unwrap();
    assert!(reply.is_started(), "{reply:?}");
    for (kind, ts, body) in &tags {
        match kind {
            TagKind::Video => publisher.send_video(*ts, body).unwrap(),
            _ => publisher.send_audio(*ts, body).unwrap(),
        }
    }
    let playlist_url = server.http_url("/hls/hdr_src/index.m3u8");
    let playlist = wait_until(&playlist_url, Duration::from_secs(10), |r| {
        r.text().contains(".ts\n")
    });
    let first = playlist
        .text()
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap()
        .to_string();
    let segment_url = server.http_url(&format!("/hls/hdr_src/{first}"));
    assert_eq!(
        playlist.header("content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(playlist.header("access-control-allow-origin"), "*");
    assert_eq!(playlist.header("cache-control"), "max-age=1");

    let segment = get(&segment_url);
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("content-type"), "video/mp2t");
    assert_eq!(segment.header("cache-control"), "max-age=900");
    assert_eq!(segment.header("access-control-allow-origin"), "*");
    assert_eq!(segment.body.first(), Some(&0x47), "not MPEG-TS");

    let head = request(reqwest::Method::HEAD, &segment_url, None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        segment.body.len().to_string()
    );
    assert_eq!(
        request(
            reqwest::Method::HEAD,
            &server.http_url("/hls/hdr.m3u8"),
            None
        )
        .status,
        200
    );

    for path in [
        "/hls/nope.m3u8",
        "/hls/nope_src/index.m3u8",
        "/hls/hdr_src/999.ts",
        "/hls/hdr_src/x.ts",
        "/hls/hdr",
        "/hls/a/b/c",
        "/nothing-here",
    ] {
        let response = get(&server.http_url(path));
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.header("access-control-allow-origin"),
            "*",
            "{path}"
        );
    }

    let api = get(&server.http_url("/api/streams/hdr"));
    let stream: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(stream["name"], "hdr");
    assert_eq!(stream["width"], 320);
    assert_eq!(stream["height"], 240);
    assert_eq!(stream["audio_codec"], "mp4a.40.2");
    assert!(
        stream["video_codec"].as_str().unwrap().starts_with("avc1."),
        "{stream}"
    );
    assert!(stream["bitrate"].as_u64().unwrap() > 0, "{stream}");

    let metrics = get(&server.http_url("/metrics")).text();
    assert_eq!(
        metric(&metrics, "spherecast_origin_publishers"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "spherecast_origin_live_streams"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "spherecast_origin_bytes_in_total").unwrap() > 10_000.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "spherecast_origin_segments_written_total").unwrap() >= 1.0,
        "{metrics}"
    );
}

#[test]
fn the_start_page_serves_a_player_with_hls_js_from_the_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let page = get(&server.http_url("/"));
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(
        page.text().contains("<script src=\"/static/hls.min.js\">"),
        "{}",
        page.text()
    );
    let js = get(&server.http_url("/static/hls.min.js"));
    assert_eq!(js.status, 200);
    // The real library, not the placeholder the build writes when npm assets are missing.
    assert!(
        js.body.len() > 100_000 && js.text().contains("isSupported"),
        "hls.js is missing: run scripts/setup.sh"
    );
}

/// What an `on_publish` server received.
struct CallbackRequest {
    path: String,
    form: Vec<(String, String)>,
}

/// A one-thread HTTP server answering each request with `answer(form)`: (status line, extra headers).
fn callback_server(
    answer: impl Fn(&[(String, String)]) -> (&'static str, String) + Send + Sync + 'static,
) -> (String, mpsc::Receiver<CallbackRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/auth", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (answer, tx) = (answer.clone(), tx.clone());
            // One thread per request, so a slow answer does not hold up the next one.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let form: Vec<(String, String)> = url_decode(&String::from_utf8_lossy(&body));
                let (status, headers) = answer(&form);
                if status == "sleep" {
                    std::thread::sleep(Duration::from_secs(3));
                } else {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
                let _ = tx.send(CallbackRequest { path, form });
            });
        }
    });
    (url, rx)
}

fn url_decode(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let bytes = s.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' && i + 2 < bytes.len() {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_on_publish_callback_decides_with_nginx_rtmp_semantics() {
    let (url, requests) = callback_server(|form| match field(form, "name") {
        Some("allowed") => ("200 OK", String::new()),
        Some("renamed") => ("302 Found", "Location: newname\r\n".into()),
        Some("slow") => ("sleep", String::new()),
        _ => ("403 Forbidden", String::new()),
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(
        &config,
        format!("[origin.publish]\non_publish = \"{url}\"\non_publish_timeout = 1000\n"),
    )
    .unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();

    let (_allowed, reply) = RawPublisher::publish(server.rtmp, "allowed?token=a%20b&x=1").unwrap();
    assert!(reply.is_started(), "{reply:?}");
    let seen = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen.path, "/auth");
    assert_eq!(field(&seen.form, "call"), Some("publish"));
    assert_eq!(field(&seen.form, "app"), Some("live"));
    assert_eq!(field(&seen.form, "name"), Some("allowed"));
    assert_eq!(field(&seen.form, "addr"), Some("127.0.0.1"));
    assert_eq!(field(&seen.form, "token"), Some("a b"));
    assert_eq!(field(&seen.form, "x"), Some("1"));

    let (_denied, reply) = RawPublisher::publish(server.rtmp, "denied").unwrap();
    assert!(!reply.is_started(), "{reply:?}");
    let (_slow, reply) = RawPublisher::publish(server.rtmp, "slow").unwrap();
    assert!(
        !reply.is_started(),
        "a callback timeout must reject: {reply:?}"
    );

    let (_renamed, reply) = RawPublisher::publish(server.rtmp, "renamed").unwrap();
    assert!(reply.is_started(), "{reply:?}");
    assert_eq!(get(&server.http_url("/api/streams/newname")).status, 200);
    assert_eq!(get(&server.http_url("/api/streams/renamed")).status, 404);
    assert_eq!(get(&server.http_url("/api/streams/denied")).status, 404);
}

#[test]
fn an_open_publish_point_on_a_public_address_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(testkit::up::binary())
        .args(["up", "--data"])
        .arg(tmp.path())
        .args(["--rtmp", "0.0.0.0:0", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen for RTMP on 0.0.0.0:0")
            && stderr.contains("--allow-open-publish"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_config_key_stops_the_start_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[origin.hls]\nwindw = 3\n").unwrap();
    let output = std::process::Command::new(testkit::up::binary())
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("windw"), "{stderr}");
}
