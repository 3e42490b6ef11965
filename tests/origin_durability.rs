//! Nothing is lost: recordings survive a full disk, SIGTERM, a crash and an unreachable
//! object store; uploads resume after a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloud::ObjectStore;
use media::flv::TagKind;
use testkit::clip;
use testkit::http::{get, metric, wait_until};
use testkit::moto::MotoServer;
use testkit::net::free_port;
use testkit::rtmp::RawPublisher;
use testkit::up::Spherecast;

/// Media time of the frames actually in the file (not its metadata), after checking that it
/// parses cleanly.
fn probed_duration(path: &Path) -> f64 {
    let probe = clip::probe(path.to_str().unwrap()).unwrap();
    assert_eq!(probe["stderr"], "", "{} is damaged", path.display());
    clip::packet_span_secs(path.to_str().unwrap()).unwrap()
}

/// Unmounts on drop so a failed test leaves no mount behind.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_disk_that_fills_stops_the_recording_cleanly_while_live_hls_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 640, 360, 6.0).unwrap();
    let data = tmp.path().join("data");
    let recordings = data.join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    // A 64 KiB filesystem for recordings only: it fills within the first second of video.
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&recordings)
        .status()
        .expect("mount runs");
    assert!(
        status.success(),
        "this test mounts a small tmpfs and needs root"
    );
    let _mount = Tmpfs(recordings.clone());

    let server = Spherecast::up(&data, &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "full").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    publisher.unpublish("full").unwrap();

    // Live HLS carried on through the whole clip.
    let playlist = wait_until(
        &server.http_url("/hls/full_src/index.m3u8"),
        Duration::from_secs(15),
        |r| r.text().contains("#EXT-X-ENDLIST"),
    )
    .text();
    let listed: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!(
        listed >= 5.0,
        "live HLS stopped with the recording ({listed} s listed):\n{playlist}"
    );
    let metrics = get(&server.http_url("/metrics")).text();
    assert_eq!(
        metric(&metrics, "spherecast_origin_recordings_failed_total"),
        Some(1.0),
        "{metrics}"
    );
    let log = server.log_text();
    assert!(log.contains("Recording stopped"), "{log}");
    assert!(
        log.to_lowercase().contains("no space left"),
        "the log does not name the cause:\n{log}"
    );
    // What was written before the disk filled is kept and uploaded, and it plays.
    let uploaded =
        clip::wait_for_flv_files(&data.join("ingress"), "full-", Duration::from_secs(15)).unwrap();
    assert!(probed_duration(&uploaded[0]) > 0.0);
}

#[test]
fn sigterm_finalises_a_live_recording_and_a_restart_finishes_its_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 3.0).unwrap();
    let data = tmp.path().join("data");
    let mut server = Spherecast::up(&data, &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "term").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    wait_until(
        &server.http_url("/hls/term.m3u8"),
        Duration::from_secs(10),
        |r| r.status == 200,
    );

    let status = server.stop(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit status {status}");
    drop(publisher);
    // Finalised: in the ingress bucket already, or waiting in the spool.
    let mut found = clip::flv_files(&data.join("ingress"), "term-");
    found.extend(clip::flv_files(&data.join("spool"), "term-"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!((probed_duration(&found[0]) - 3.0).abs() < 0.5);
    assert!(clip::flv_files(&data.join("recordings"), "term-").is_empty());

    let _again = Spherecast::up(&data, &[]).unwrap();
    let uploaded =
        clip::wait_for_flv_files(&data.join("ingress"), "term-", Duration::from_secs(15)).unwrap();
    assert!((probed_duration(&uploaded[0]) - 3.0).abs() < 0.5);
}

#[test]
fn a_crash_mid_recording_is_repaired_and_uploaded_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 4.0).unwrap();
    let data = tmp.path().join("data");
    let mut server = Spherecast::up(&data, &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "crash").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    wait_until(
        &server.http_url("/hls/crash.m3u8"),
        Duration::from_secs(10),
        |r| r.status == 200,
    );
    // Give the buffered writer a moment to hand the tags to the kernel, then crash.
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    drop(publisher);
    let left = clip::flv_files(&data.join("recordings"), "crash-");
    assert_eq!(left.len(), 1, "the crash left no recording behind");

    let _again = Spherecast::up(&data, &[]).unwrap();
    let uploaded =
        clip::wait_for_flv_files(&data.join("ingress"), "crash-", Duration::from_secs(15)).unwrap();
    let duration = probed_duration(&uploaded[0]);
    assert!(
        duration > 2.0,
        "recovered recording lasts only {duration} s of 4 s"
    );
}

#[test]
fn uploads_wait_in_the_spool_while_the_store_is_unreachable_and_go_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 320, 240, 2.0).unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(
        &config,
        format!(
            "[ingress]\nbucket = \"ingress\"\n[aws]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             [origin.upload]\nmin_backoff = 100\nmax_backoff = 1\n"
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let data = tmp.path().join("data");
    let server = Spherecast::start(
        "origin",
        &data,
        &["--config", config.to_str().unwrap()],
        &env,
    )
    .unwrap();

    let mut publisher = RawPublisher::publish_started(server.rtmp, "later").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    publisher.unpublish("later").unwrap();
    let metrics_url = server.http_url("/metrics");
    wait_until(&metrics_url, Duration::from_secs(20), |r| {
        metric(&r.text(), "spherecast_origin_uploads_failed_total").is_some_and(|v| v >= 2.0)
    });
    assert_eq!(
        clip::flv_files(&data.join("spool"), "later-").len(),
        1,
        "the recording left the spool"
    );
    assert_eq!(
        metric(
            &get(&metrics_url).text(),
            "spherecast_origin_upload_spool_depth"
        ),
        Some(1.0)
    );

    // The store comes back on the same address.
    let _moto = MotoServer::start_on_port(port).expect("moto starts on the reserved port");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let aws = cloud::aws::sdk_config_with_credentials(
            Some(&endpoint),
            Some("us-east-1"),
            cloud::aws::static_credentials("test", "test"),
        )
        .await;
        let store = cloud::S3Store::new(cloud::aws::s3_client(&aws, true), "ingress");
        store.create_bucket_if_missing().await.unwrap();
        store
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime
        .block_on(store.list("later-"))
        .unwrap()
        .iter()
        .any(|o| o.key.ends_with(".flv"))
    {
        assert!(
            Instant::now() < deadline,
            "never uploaded; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !clip::flv_files(&data.join("spool"), "later-").is_empty() {
        assert!(Instant::now() < deadline, "uploaded but still in the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_audio_only_stream_is_served_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let tags: Vec<_> = clip::sample_tags(tmp.path(), 320, 240, 4.0)
        .unwrap()
        .into_iter()
        .filter(|t| t.0 == TagKind::Audio)
        .collect();
    let data = tmp.path().join("data");
    let server = Spherecast::up(&data, &[]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "radio").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    publisher.unpublish("radio").unwrap();
    let playlist = wait_until(
        &server.http_url("/hls/radio_src/index.m3u8"),
        Duration::from_secs(15),
        |r| r.text().contains("#EXT-X-ENDLIST"),
    )
    .text();
    assert!(playlist.lines().any(|l| l.ends_with(".ts")), "{playlist}");
    let master = get(&server.http_url("/hls/radio.m3u8")).text();
    assert!(
        master.contains("CODECS=\"mp4a.40.2\"") && !master.contains("RESOLUTION"),
        "{master}"
    );
    let uploaded =
        clip::wait_for_flv_files(&data.join("ingress"), "radio-", Duration::from_secs(15)).unwrap();
    let probe = clip::probe(uploaded[0].to_str().unwrap()).unwrap();
    assert_eq!(clip::codec_names(&probe), vec!["aac"]);
}

#[test]
fn a_recording_rolls_over_into_parts_that_each_play_and_together_hold_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = clip::sample_tags(tmp.path(), 640, 360, 6.0).unwrap();
    let video_frames = tags
        .iter()
        .filter(|t| t.0 == TagKind::Video && t.2.get(1) == Some(&1))
        .count();
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(&config, "[origin.record]\nmax_size_kib = 150\n").unwrap();
    let data = tmp.path().join("data");
    let server = Spherecast::up(&data, &["--config", config.to_str().unwrap()]).unwrap();
    let mut publisher = RawPublisher::publish_started(server.rtmp, "parts").unwrap();
    publisher.send_tags(&tags, 0).unwrap();
    publisher.unpublish("parts").unwrap();
    wait_until(&server.http_url("/metrics"), Duration::from_secs(20), |r| {
        let text = r.text();
        metric(&text, "spherecast_origin_recordings_uploaded_total")
            == metric(&text, "spherecast_origin_recordings_finished_total")
            && metric(&text, "spherecast_origin_recordings_finished_total").unwrap_or(0.0) >= 2.0
    });
    let parts = clip::flv_files(&data.join("ingress"), "parts-");
    assert!(parts.len() >= 2, "no rollover at 150 KiB: {parts:?}");
    let mut frames = 0;
    for part in &parts {
        let probe = clip::probe_packets(part.to_str().unwrap()).unwrap();
        assert_eq!(probe["stderr"], "", "{} is damaged", part.display());
        let video: Vec<_> = probe["packets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["codec_type"] == "video")
            .collect();
        assert!(
            video[0]["flags"].as_str().unwrap().contains('K'),
            "{} does not start on a keyframe",
            part.display()
        );
        frames += video.len();
    }
    assert_eq!(
        frames, video_frames,
        "frames lost or repeated between parts"
    );
}
