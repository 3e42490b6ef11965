//! The origin against real and broken RTMP clients: OBS-style command sequences, GStreamer's
//! rtmp2sink, and every bad input the origin must survive without disturbing other streams.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use testkit::clip;
use testkit::http::{get, metric, wait_until};
use testkit::rtmp::{RawPublisher, Reply};
use testkit::up::Spherecast;

fn refused(reply: &Reply) -> bool {
    match reply {
        Reply::Status { code, level, .. } => level == "error" || code != "NetStream.Publish.Start",
        Reply::Error(_) => true,
        Reply::Result(_) => false,
    }
}

fn wait_for_playlist(server: &Spherecast, name: &str, want: &str) -> String {
    wait_until(
        &server.http_url(&format!("/hls/{name}_src/index.m3u8")),
        Duration::from_secs(15),
        |r| r.status == 200 && r.text().contains(want),
    )
    .text()
}

fn wait_for_recording(server: &Spherecast, name: &str) -> PathBuf {
    clip::wait_for_flv_files(
        &server.data.join("ingress"),
        &format!("{name}-"),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log_text()))
    .pop()
    .unwrap()
}

fn metrics(server: &Spherecast) -> String {
    get(&server.http_url("/metrics")).text()
}

#[test]
fn an_obs_style_client_publishes_with_a_chunk_size_change_and_is_served_then_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 4.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();

    let mut publisher = RawPublisher::connect(server.rtmp, "live").unwrap();
    publisher.set_chunk_size(4000).unwrap();
    let reply = publisher.obs_publish("obs").unwrap();
    assert!(
        matches!(&reply, Reply::Status { code, .. } if code == "NetStream.Publish.Start"),
        "{reply:?}"
    );
    publisher.send_tags(&tags, 0).unwrap();

    let master = wait_until(
        &server.http_url("/hls/obs.m3u8"),
        Duration::from_secs(15),
        |r| r.status == 200,
    );
    assert!(
        master.text().contains("RESOLUTION=320x240"),
        "{}",
        master.text()
    );
    let streams = get(&server.http_url("/api/streams")).text();
    assert!(
        streams.contains("\"name\":\"obs\"") && streams.contains("\"publishing\":true"),
        "{streams}"
    );

    publisher.unpublish("obs").unwrap();
    let playlist = wait_for_playlist(&server, "obs", "#EXT-X-ENDLIST");
    assert!(playlist.contains(".ts"), "{playlist}");
    let recording = wait_for_recording(&server, "obs");
    let probe = clip::probe(recording.to_str().unwrap()).unwrap();
    assert_eq!(clip::codec_names(&probe), vec!["h264", "aac"]);
}

#[test]
fn gstreamer_rtmp2sink_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let location = format!("location={}", server.rtmp_url("gst"));
    let pipeline = [
        "-e",
        "videotestsrc",
        "num-buffers=120",
        "!",
        "video/x-raw,width=320,height=240,framerate=30/1",
        "!",
        "x264enc",
        "key-int-max=30",
        "tune=zerolatency",
        "speed-preset=ultrafast",
        "!",
        "h264parse",
        "!",
        "flvmux",
        "name=mux",
        "streamable=true",
        "!",
        "rtmp2sink",
        &location,
        "audiotestsrc",
        "num-buffers=180",
        "!",
        "audio/x-raw,rate=48000,channels=2",
        "!",
        "avenc_aac",
        "!",
        "aacparse",
        "!",
        "mux.",
    ];
    let status = std::process::Command::new("gst-launch-1.0")
        .args(pipeline)
        .stdout(std::process::Stdio::null())
        .status();
    assert!(
        status
            .expect("gst-launch-1.0 is installed by scripts/setup.sh")
            .success()
    );
    let playlist = wait_for_playlist(&server, "gst", "#EXT-X-ENDLIST");
    assert!(playlist.lines().any(|l| l.ends_with(".ts")), "{playlist}");
    let master = get(&server.http_url("/hls/gst.m3u8")).text();
    assert!(
        master.contains("avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
}

#[test]
fn garbage_and_cut_handshakes_are_dropped_without_disturbing_a_live_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 4.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let mut live = RawPublisher::publish_started(server.rtmp, "steady").unwrap();
    live.send_tags(&tags[..tags.len() / 2], 0).unwrap();

    // Garbage instead of a handshake.
    let mut garbage = TcpStream::connect(server.rtmp).unwrap();
    let _ = garbage.write_all(&[0x42; 4096]);
    // A handshake cut midway: C0 and half of C1, then gone.
    let mut cut = TcpStream::connect(server.rtmp).unwrap();
    cut.write_all(&[3]).unwrap();
    cut.write_all(&[0u8; 700]).unwrap();
    drop(cut);
    // Garbage after a valid handshake and connect: a chunk stream the session cannot parse.
    let mut broken = RawPublisher::connect(server.rtmp, "live").unwrap();
    broken.send_raw(&[0xff; 2048]).unwrap();
    assert!(
        broken.is_closed_by_server(Duration::from_secs(5)),
        "garbage chunks did not close the connection"
    );

    live.send_tags(&tags[tags.len() / 2..], 0).unwrap();
    live.unpublish("steady").unwrap();
    let playlist = wait_for_playlist(&server, "steady", "#EXT-X-ENDLIST");
    assert!(
        !playlist.contains("#EXT-X-DISCONTINUITY"),
        "the live stream was disturbed:\n{playlist}"
    );
    assert_eq!(get(&server.http_url("/healthz")).status, 200);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("origin.toml");
    std::fs::write(&config, "[origin]\nidle_timeout = 2\n").unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();

    // Ping requests make the server answer; never reading fills the socket buffers until the
    // server's write deadline drops us.
    let publisher = RawPublisher::connect(server.rtmp, "live").unwrap();
    let mut socket = publisher.into_socket();
    // Generous: the server must drop us well before our own write gives up.
    socket
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ping = [0x02, 0, 0, 0, 0, 0, 6, 0x04, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1];
    let mut burst = Vec::new();
    for _ in 0..4096 {
        burst.extend_from_slice(&ping);
    }
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(30) {
        if let Err(e) = socket.write_all(&burst) {
            use std::io::ErrorKind::*;
            assert!(
                matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted),
                "our write failed for another reason than the server closing: {e}"
            );
            closed = true;
            break;
        }
    }
    assert!(closed, "the server kept a client that never reads");
    wait_until(&server.http_url("/metrics"), Duration::from_secs(5), |r| {
        metric(&r.text(), "spherecast_origin_connections") == Some(0.0)
    });
    let tags = clip::sample_tags(tmp.path(), 320, 240, 2.0).unwrap();
    let mut other = RawPublisher::publish_started(server.rtmp, "other").unwrap();
    other.send_tags(&tags, 0).unwrap();
    other.unpublish("other").unwrap();
    wait_for_playlist(&server, "other", "#EXT-X-ENDLIST");
}

#[test]
fn a_bad_key_is_refused_and_a_good_key_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("origin.toml");
    std::fs::write(&config, "[origin.publish]\nkeys = [\"s3cret\"]\n").unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();

    for name in ["cam?key=wrong", "cam", "cam?key="] {
        let mut publisher = RawPublisher::connect(server.rtmp, "live").unwrap();
        let reply = publisher.obs_publish(name).unwrap();
        assert!(refused(&reply), "{name} was allowed: {reply:?}");
    }
    assert_eq!(get(&server.http_url("/api/streams/cam")).status, 404);
    assert_eq!(
        metric(
            &metrics(&server),
            "spherecast_origin_publishes_rejected_total"
        ),
        Some(3.0)
    );
    let _ok = RawPublisher::publish_started(server.rtmp, "cam?key=s3cret").unwrap();
    assert_eq!(get(&server.http_url("/api/streams/cam")).status, 200);
}

#[test]
fn stream_names_that_could_escape_their_folder_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    for name in ["../escape", "a/b", "..", "x\\y", "name with space"] {
        let mut publisher = RawPublisher::connect(server.rtmp, "live").unwrap();
        let reply = publisher.obs_publish(name).unwrap();
        assert!(refused(&reply), "{name:?} was allowed: {reply:?}");
    }
    assert_eq!(get(&server.http_url("/api/streams")).text(), "[]");
}

#[test]
fn a_second_publisher_on_a_live_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let _first = RawPublisher::publish_started(server.rtmp, "dup").unwrap();
    let mut second = RawPublisher::connect(server.rtmp, "live").unwrap();
    let reply = second.obs_publish("dup").unwrap();
    assert!(refused(&reply), "{reply:?}");
    assert!(
        server.log_text().contains("already live"),
        "{}",
        server.log_text()
    );
}

#[test]
fn hevc_is_rejected_with_a_log_line_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    // Legacy FLV codec id 12 (HEVC), keyframe, sequence header.
    let mut legacy = RawPublisher::publish_started(server.rtmp, "hevc1").unwrap();
    legacy
        .send_video(0, &[0x1c, 0x00, 0, 0, 0, 1, 2, 3])
        .unwrap();
    assert!(legacy.is_closed_by_server(Duration::from_secs(5)));
    // Enhanced RTMP: ExVideoTagHeader with FourCC hvc1.
    let mut enhanced = RawPublisher::publish_started(server.rtmp, "hevc2").unwrap();
    enhanced
        .send_video(0, &[0x90, b'h', b'v', b'c', b'1', 1, 2, 3])
        .unwrap();
    assert!(enhanced.is_closed_by_server(Duration::from_secs(5)));

    let log = server.log_text();
    for stream in ["hevc1", "hevc2"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("stream={stream}")) && l.contains("codec=HEVC")),
            "no log line names HEVC for {stream}:\n{log}"
        );
    }
    assert_eq!(get(&server.http_url("/api/streams")).text(), "[]");
}

#[test]
fn timestamps_that_jump_backwards_give_a_discontinuity_and_the_stream_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 4.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "jumpy").unwrap();
    publisher.send_tags(&tags, 60_000).unwrap();
    // The encoder restarts its clock: timestamps go back by a minute.
    publisher.send_tags(&tags, 0).unwrap();
    publisher.unpublish("jumpy").unwrap();
    let playlist = wait_for_playlist(&server, "jumpy", "#EXT-X-ENDLIST");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    let segments = playlist.lines().filter(|l| l.ends_with(".ts")).count();
    assert!(
        segments >= 4,
        "segments after the jump are missing:\n{playlist}"
    );
}

#[test]
fn a_publisher_that_disconnects_mid_tag_still_ends_its_stream_and_its_recording_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 3.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "cut").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    let big = vec![0x27u8; 20_000];
    let chunks = publisher.video_chunks(3_100, &big).unwrap();
    publisher.send_raw(&chunks[..chunks.len() / 2]).unwrap();
    drop(publisher);

    wait_for_playlist(&server, "cut", "#EXT-X-ENDLIST");
    let recording = wait_for_recording(&server, "cut");
    let probe = clip::probe(recording.to_str().unwrap()).unwrap();
    assert_eq!(probe["stderr"], "", "recording is damaged");
    let duration = clip::packet_span_secs(recording.to_str().unwrap()).unwrap();
    assert!((duration - 3.0).abs() < 0.5, "recording lasts {duration} s");
}

#[test]
fn an_idle_publisher_is_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("origin.toml");
    std::fs::write(&config, "[origin]\nidle_timeout = 1\n").unwrap();
    let server = Spherecast::up(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "sleepy").unwrap();
    assert!(
        publisher.is_closed_by_server(Duration::from_secs(5)),
        "idle publisher kept"
    );
    assert!(server.log_text().contains("idle"), "{}", server.log_text());
}

#[test]
fn the_operator_can_drop_a_stream_only_with_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &["--api-token", "t0ken"]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "victim").unwrap();
    let url = server.http_url("/api/streams/victim");
    assert_eq!(
        testkit::http::request(reqwest::Method::DELETE, &url, None).status,
        401
    );
    assert_eq!(
        testkit::http::request(reqwest::Method::DELETE, &url, Some("wrong")).status,
        401
    );
    assert!(!publisher.is_closed_by_server(Duration::from_millis(500)));
    assert_eq!(
        testkit::http::request(reqwest::Method::DELETE, &url, Some("t0ken")).status,
        204
    );
    assert!(publisher.is_closed_by_server(Duration::from_secs(5)));
}

#[test]
fn a_message_that_crashes_the_rtmp_parser_costs_only_its_connection() {
    use testkit::rtmp::Amf0Value;
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 2.0).unwrap();
    let server = Spherecast::up(&tmp.path().join("data"), &[]).unwrap();
    // rml_rtmp 0.8 indexes past the end of an @setDataFrame without its metadata.
    let mut publisher = RawPublisher::publish_started(server.rtmp, "fragile").unwrap();
    publisher.send_tags(&tags[..tags.len() / 2], 0).unwrap();
    publisher
        .send_data(vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
        ])
        .unwrap();
    assert!(
        publisher.is_closed_by_server(Duration::from_secs(5)),
        "the connection survived a parser panic?"
    );
    let mut before_publish = RawPublisher::connect(server.rtmp, "live").unwrap();
    before_publish
        .send_data(vec![Amf0Value::Utf8String("@setDataFrame".into())])
        .unwrap();
    assert!(before_publish.is_closed_by_server(Duration::from_secs(5)));

    // The name is free again, the stream ended cleanly and no gauge leaked.
    wait_for_playlist(&server, "fragile", "#EXT-X-ENDLIST");
    let mut again = RawPublisher::publish_started(server.rtmp, "fragile").unwrap();
    again.send_tags(&tags, 0).unwrap();
    again.unpublish("fragile").unwrap();
    drop(again);
    wait_until(&server.http_url("/metrics"), Duration::from_secs(5), |r| {
        let text = r.text();
        metric(&text, "spherecast_origin_connections") == Some(0.0)
            && metric(&text, "spherecast_origin_publishers") == Some(0.0)
    });
    assert_eq!(get(&server.http_url("/healthz")).status, 200);
    let log = server.log_text();
    assert!(
        log.contains("the session parser panicked"),
        "the malformed message did not reach the parser:\n{log}"
    );
}
