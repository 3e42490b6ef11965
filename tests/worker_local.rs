//! `spherecast worker` in local mode, end to end: the ingress bucket is `DATA/ingress`, the queue
//! the embedded one in `DATA/queue`, ladders land in `DATA/egress`. Each test seeds the bucket
//! and the queue, runs the real binary, and opens the queue again after the worker exited (only
//! one process may hold it) to see how every message was settled.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use cloud::{EmbeddedQueue, LocalStore, Message, ObjectInfo, ObjectStore, PutOptions, Queue};
use serde_json::Value;
use testkit::clip::make_clip;
use testkit::hls::{RenditionReport, verify_ladder};
use testkit::http::metric;
use testkit::imds::{FakeImds, INSTANCE_ACTION, NOTICE_TIME, REBALANCE};
use testkit::up::Worker;

const SEGMENT_SECS: u64 = 2;
/// What every test's `[worker]` section starts with; tests append their own keys.
const BASE_CONFIG: &str =
    "[worker]\nconcurrency = 1\nsegment_secs = 2\nkeyframe_interval_secs = 1\nprogress_secs = 1\n";

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(future)
}

/// A data folder with its buckets and queue, seeded while no worker runs.
struct Local {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
}

impl Local {
    fn new() -> Local {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        Local {
            _tmp: tmp,
            dir,
            data,
        }
    }

    /// A scratch file path outside the data folder.
    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ingress(&self) -> LocalStore {
        LocalStore::new(self.data.join("ingress"), "ingress")
    }

    fn egress(&self) -> LocalStore {
        LocalStore::new(self.data.join("egress"), "egress")
    }

    /// Where the ladder of `stem` is published.
    fn ladder_dir(&self, stem: &str) -> PathBuf {
        self.data.join("egress").join(stem)
    }

    /// Uploads `path` as `key` (so the eTag and the sidecar are what the worker expects).
    fn upload(&self, key: &str, path: &Path) -> ObjectInfo {
        block_on(self.ingress().put_file(key, path, &PutOptions::default()))
            .unwrap_or_else(|e| panic!("uploading {key}: {e}"))
    }

    /// The event S3 would send for `info`.
    fn created_event(&self, key: &str, info: &ObjectInfo) -> String {
        cloud::object_created_event("ingress", key, info.size, &info.etag)
    }

    /// Opens the queue (the worker must not be running).
    fn queue(&self) -> EmbeddedQueue {
        EmbeddedQueue::open(
            self.data.join("queue"),
            cloud::QueueSettings {
                visibility_timeout: Duration::from_secs(120),
                max_receive_count: 5,
            },
        )
        .expect("the embedded queue opens (is a worker still running?)")
    }

    /// Sends `bodies` in order and returns their message ids; closes the queue again.
    fn send(&self, bodies: &[&str]) -> Vec<String> {
        let queue = self.queue();
        block_on(async {
            let mut ids = Vec::new();
            for body in bodies {
                ids.push(queue.send(body).await.unwrap());
            }
            ids
        })
    }

    /// Writes a config file: [`BASE_CONFIG`] plus `extra` (more `[worker]` keys, then tables).
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.join("spherecast.toml");
        std::fs::write(&path, format!("{BASE_CONFIG}{extra}")).unwrap();
        path
    }

    fn start_worker(&self, config: &Path) -> Worker {
        self.start_worker_with(config, &[])
    }

    fn start_worker_with(&self, config: &Path, env: &[(&str, &str)]) -> Worker {
        Worker::start(&self.data, &["--config", config.to_str().unwrap()], env)
            .expect("spherecast worker starts")
    }

    /// `job-*` folders left in the work folder.
    fn leftover_work(&self) -> Vec<String> {
        std::fs::read_dir(self.data.join("work"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("job-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Everything visible now in `queue`, received (so each receive count goes up by one).
fn drain_visible(queue: &EmbeddedQueue) -> Vec<Message> {
    block_on(async {
        let mut all = Vec::new();
        loop {
            let got = queue.receive(10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    })
}

/// A GET that reports a refused connection instead of panicking (the worker may be exiting).
fn try_get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(url).send().ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().unwrap_or_default()))
}

fn status_json(worker: &Worker) -> Option<Value> {
    let (code, body) = try_get(&worker.http_url("/status"))?;
    assert_eq!(code, 200, "/status: {body}");
    Some(
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}")),
    )
}

fn metrics_text(worker: &Worker) -> Option<String> {
    try_get(&worker.http_url("/metrics")).map(|(_, body)| body)
}

/// A worker counter (`spherecast_worker_NAME_total`), 0 when absent.
fn counter(metrics: &str, name: &str) -> f64 {
    metric(metrics, &format!("spherecast_worker_{name}_total")).unwrap_or(0.0)
}

/// Polls `probe` every 50 ms until it returns `Some`, panicking with the worker's log after
/// `limit` or when the worker exits first.
fn wait_for<T>(
    worker: &mut Worker,
    limit: Duration,
    what: &str,
    mut probe: impl FnMut(&Worker) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe(worker) {
            return found;
        }
        if let Some(status) = worker.exited() {
            panic!(
                "worker exited ({status}) before {what}; log:\n{}",
                worker.log_text()
            );
        }
        if Instant::now() > deadline {
            let log = worker.log_text();
            worker.kill();
            panic!("no {what} after {limit:?}; worker log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the worker to exit on its own within `limit`; returns its status and how long it
/// took.
fn wait_exit(worker: &mut Worker, limit: Duration) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = worker.exited() {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let log = worker.log_text();
            worker.kill();
            panic!("worker still running {limit:?} later; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first log line holding every needle (case-insensitive).
fn log_line<'a>(log: &'a str, needles: &[&str]) -> Option<&'a str> {
    log.lines().find(|line| {
        let line = line.to_lowercase();
        needles.iter().all(|n| line.contains(&n.to_lowercase()))
    })
}

fn assert_logged(log: &str, needles: &[&str]) {
    assert!(
        log_line(log, needles).is_some(),
        "no log line with all of {needles:?}; log:\n{log}"
    );
}

/// The first JSON log event whose line holds every needle (case-insensitive).
fn logged(log: &str, needles: &[&str]) -> Value {
    let line = log_line(log, needles)
        .unwrap_or_else(|| panic!("no log line with all of {needles:?}; log:\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
}

/// The first `fraction` of `src`'s bytes, as a recording cut off by a crash would be.
fn truncate_copy(src: &Path, dest: &Path, fraction: f64) {
    let bytes = std::fs::read(src).unwrap();
    let keep = (bytes.len() as f64 * fraction) as usize;
    std::fs::write(dest, &bytes[..keep]).unwrap();
}

fn png(path: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180", "-frames:v", "1"])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(
        status.success(),
        "ffmpeg could not write {}",
        path.display()
    );
}

/// Total EXTINF seconds of one rendition's media playlist.
fn rendition_seconds(ladder: &Path, name: &str) -> f64 {
    let text = std::fs::read_to_string(ladder.join(name).join("index.m3u8")).unwrap();
    testkit::hls::parse_media(&text)
        .segments
        .iter()
        .map(|s| s.duration)
        .sum()
}

#[test]
fn bad_input_is_dead_lettered_or_ignored_with_a_reason_and_odd_but_playable_input_is_published() {
    let local = Local::new();
    let ingress = local.ingress();

    // Media: 320x180, 3 s, a key frame every second.
    let full = local.scratch("full.flv");
    make_clip(&full, Some((320, 180, 30)), true, 3.0).unwrap();
    let cut = local.scratch("cut.flv");
    truncate_copy(&full, &cut, 0.6);
    let audio_only = local.scratch("audio.flv");
    make_clip(&audio_only, None, true, 3.0).unwrap();
    let video_only = local.scratch("video.flv");
    make_clip(&video_only, Some((320, 180, 30)), false, 3.0).unwrap();
    let image = local.scratch("still.png");
    png(&image);
    let empty = local.scratch("empty");
    std::fs::write(&empty, b"").unwrap();
    let notes = local.scratch("notes.txt");
    std::fs::write(&notes, b"not a recording\n").unwrap();

    let odd_key = "shows/Café Früh + Spät/Übung 1+2 ü.flv";
    let odd_stem = "shows/Café Früh + Spät/Übung 1+2 ü";
    let cut_info = local.upload("cut.flv", &cut);
    let audio_info = local.upload("audio-only.flv", &audio_only);
    let video_info = local.upload("video-only.flv", &video_only);
    let image_info = local.upload("picture.flv", &image);
    let empty_info = local.upload("empty.flv", &empty);
    let odd_info = local.upload(odd_key, &full);
    let notes_info = local.upload("notes.txt", &notes);
    assert_eq!(empty_info.size, 0);

    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-21T00:00:00.000Z","Bucket":"ingress","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
    let not_json = "this is not JSON {";
    let missing = cloud::object_created_event(
        "ingress",
        "missing.flv",
        1234,
        "0123456789abcdef0123456789abcdef",
    );
    let removed = {
        let mut event: Value = serde_json::from_str(&cloud::object_created_event(
            "ingress",
            "removed.flv",
            0,
            "",
        ))
        .unwrap();
        let record = &mut event["Records"][0];
        record["eventName"] = "ObjectRemoved:Delete".into();
        let object = record["s3"]["object"].as_object_mut().unwrap();
        object.remove("size");
        object.remove("eTag");
        event.to_string()
    };
    let bodies = [
        test_event.to_owned(),
        not_json.to_owned(),
        missing,
        local.created_event("empty.flv", &empty_info),
        local.created_event("cut.flv", &cut_info),
        local.created_event("audio-only.flv", &audio_info),
        local.created_event("video-only.flv", &video_info),
        local.created_event("picture.flv", &image_info),
        local.created_event(odd_key, &odd_info),
        removed,
        local.created_event("notes.txt", &notes_info),
    ];
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let ids = local.send(&refs);

    let config = local.config("");
    // JSON logs: each line one event whose fields can be checked by name.
    let mut worker = local.start_worker_with(&config, &[("SPHERECAST_LOG_FORMAT", "json")]);
    let metrics = wait_for(
        &mut worker,
        Duration::from_secs(180),
        "settlement of all 11 messages",
        |w| {
            let busy = status_json(w)?["busy"].as_bool() == Some(true);
            let m = metrics_text(w)?;
            let settled = counter(&m, "jobs_succeeded")
                + counter(&m, "jobs_rejected")
                + counter(&m, "messages_ignored")
                + counter(&m, "jobs_failed");
            (!busy && settled >= 11.0).then_some(m)
        },
    );
    let status = worker.stop(Duration::from_secs(15)).unwrap();
    let log = worker.log_text();
    assert!(status.success(), "worker exit {status}; log:\n{log}");

    assert_eq!(counter(&metrics, "jobs_failed"), 0.0, "{metrics}\n{log}");
    assert_eq!(counter(&metrics, "jobs_succeeded"), 4.0, "{metrics}\n{log}");
    assert_eq!(counter(&metrics, "jobs_rejected"), 4.0, "{metrics}\n{log}");
    assert_eq!(
        counter(&metrics, "messages_ignored"),
        3.0,
        "{metrics}\n{log}"
    );
    assert_eq!(counter(&metrics, "jobs_skipped"), 0.0, "{metrics}\n{log}");

    // Settlement: nothing left, the four that can never succeed in the dead-letter queue.
    let queue = local.queue();
    let depth = block_on(queue.depth()).unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, 0),
        "main queue not empty; log:\n{log}"
    );
    let dlq = queue.dead_letter().expect("the embedded queue has a DLQ");
    let mut dead: Vec<String> = drain_visible(&dlq).into_iter().map(|m| m.body).collect();
    let mut expected: Vec<String> = [1, 2, 3, 7].iter().map(|&i| bodies[i].clone()).collect();
    dead.sort();
    expected.sort();
    assert_eq!(dead, expected, "dead-letter queue; log:\n{log}");
    drop((queue, dlq));

    // Ladders for the playable ones, including the recording cut mid-tag.
    let cut_ladder = local.ladder_dir("cut");
    let reports = verify_ladder(&cut_ladder, SEGMENT_SECS);
    assert!(
        reports.iter().any(|r| r.size == Some((320, 180))),
        "{reports:?}"
    );
    let cut_secs = rendition_seconds(&cut_ladder, "180p");
    assert!(
        (0.5..2.5).contains(&cut_secs),
        "the cut recording's ladder lasts {cut_secs} s, not about the 60 % of 3 s that survived"
    );
    let audio_reports = verify_ladder(&local.ladder_dir("audio-only"), SEGMENT_SECS);
    assert!(
        audio_reports
            .iter()
            .all(|r| r.size.is_none() && r.has_audio),
        "audio-only source: {audio_reports:?}"
    );
    let video_reports = verify_ladder(&local.ladder_dir("video-only"), SEGMENT_SECS);
    assert!(
        !video_reports.is_empty()
            && video_reports
                .iter()
                .all(|r: &RenditionReport| r.size.is_some() && !r.has_audio),
        "video-only source: {video_reports:?}"
    );
    let odd_dir = local.ladder_dir(odd_stem);
    assert!(
        odd_dir.join("master.m3u8").is_file(),
        "no ladder under {}",
        odd_dir.display()
    );
    verify_ladder(&odd_dir, SEGMENT_SECS);
    let egress = local.egress();
    for stem in ["missing", "empty", "picture", "removed", "notes"] {
        let published = block_on(egress.list(stem)).unwrap();
        assert!(
            published.is_empty(),
            "egress has objects for {stem}, which cannot be published: {published:?}"
        );
    }
    assert_eq!(
        local.leftover_work(),
        Vec::<String>::new(),
        "work folders left"
    );
    // The inputs are left as they were.
    assert!(block_on(ingress.head("cut.flv")).unwrap().is_some());

    // One clear line per bad input, naming the message or the key and the reason.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            event["fields"]["message"].is_string(),
            "log event without a message: {line}"
        );
        // A field called `message` would be a second "message" key, hiding the sentence.
        assert_eq!(
            line.matches("\"message\":").count(),
            1,
            "two \"message\" fields in one event: {line}"
        );
    }
    let event = logged(&log, &[&ids[0], "test event"]);
    assert_eq!(event["fields"]["message_id"], ids[0].as_str(), "{event}");
    let event = logged(&log, &[&ids[1], "not an S3 event", "not JSON"]);
    assert_eq!(event["fields"]["message_id"], ids[1].as_str(), "{event}");
    assert_eq!(event["level"], "WARN", "{event}");
    logged(&log, &["missing.flv", "no longer exists"]);
    logged(&log, &["empty.flv", "empty (0 bytes)"]);
    logged(
        &log,
        &["picture.flv", "not a playable media file", "still image"],
    );
    let event = logged(&log, &["removed.flv", "Not an object-created event"]);
    assert_eq!(event["fields"]["event"], "ObjectRemoved:Delete", "{event}");
    assert_eq!(event["fields"]["message_id"], ids[9].as_str(), "{event}");
    let event = logged(&log, &["notes.txt", "suffixes"]);
    assert_eq!(event["fields"]["key"], "notes.txt", "{event}");
    let event = logged(&log, &[odd_key, "Ladder published"]);
    assert_eq!(event["fields"]["prefix"], odd_stem, "{event}");
}

/// Length of the clip that keeps a worker busy for several seconds (1280x720: five rungs).
const LONG_SECS: f64 = 10.0;

/// Uploads a 1280x720 clip as `key` and returns the event for it.
fn seed_long_clip(local: &Local, key: &str) -> String {
    let path = local.scratch("long.flv");
    if !path.exists() {
        make_clip(&path, Some((1280, 720, 30)), true, LONG_SECS).unwrap();
    }
    let info = local.upload(key, &path);
    local.created_event(key, &info)
}

/// The running job of `key` from `/status`, once it has reported progress.
fn job_with_progress(worker: &Worker, key: &str) -> Option<Value> {
    let status = status_json(worker)?;
    let jobs = status["jobs"].as_object()?;
    let job = jobs.values().find(|j| j["key"] == key)?;
    job["percent"].as_f64().map(|_| job.clone())
}

/// After an interruption: the worker handed the message back at once (visible now, received
/// once before), published nothing and left no work folder.
fn assert_handed_back(local: &Local, stem: &str, body: &str, log: &str) {
    let queue = local.queue();
    let messages = block_on(queue.receive(10, Duration::ZERO)).unwrap();
    assert_eq!(
        messages.len(),
        1,
        "the message is not visible at once: {messages:?}; log:\n{log}"
    );
    assert_eq!(messages[0].body, body);
    assert_eq!(
        messages[0].receive_count, 2,
        "received once by the worker, once now; log:\n{log}"
    );
    let dlq = queue.dead_letter().unwrap();
    assert_eq!(block_on(dlq.depth()).unwrap().visible, 0);
    let master = local.ladder_dir(stem).join("master.m3u8");
    assert!(!master.exists(), "{} was published", master.display());
    assert_eq!(
        local.leftover_work(),
        Vec::<String>::new(),
        "work folders left"
    );
    assert_logged(log, &["Job cancelled; message handed back"]);
    assert!(
        log_line(log, &["Ladder published"]).is_none(),
        "a ladder was published: {log}"
    );
}

#[test]
fn a_spot_interruption_notice_hands_the_running_job_back_and_exits_at_once() {
    let local = Local::new();
    let imds = FakeImds::start();
    let body = seed_long_clip(&local, "talk.flv");
    local.send(&[&body]);
    let config = local.config(&imds.spot_config());
    let mut worker = local.start_worker(&config);

    // Mid-transcode, with the notice still absent (404) on at least one poll.
    let job = wait_for(&mut worker, Duration::from_secs(60), "progress", |w| {
        job_with_progress(w, "talk.flv")
    });
    wait_for(&mut worker, Duration::from_secs(10), "a poll", |_| {
        (imds.count(INSTANCE_ACTION, 404) > 0).then_some(())
    });
    let percent = job["percent"].as_f64().unwrap();
    assert!(percent < 100.0, "not mid-transcode: {job}");
    imds.raise_interruption();
    let (status, took) = wait_exit(&mut worker, Duration::from_secs(15));
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after the notice (polled every second); log:\n{log}"
    );
    assert!(imds.count(INSTANCE_ACTION, 200) >= 1);
    imds.assert_token_used();
    let notice = logged_text(&log, &["Spot interruption notice", NOTICE_TIME]);
    assert!(notice.contains("terminate"), "{notice}");
    assert_handed_back(&local, "talk", &body, &log);
}

/// The first text log line with every needle.
fn logged_text<'a>(log: &'a str, needles: &[&str]) -> &'a str {
    log_line(log, needles)
        .unwrap_or_else(|| panic!("no log line with all of {needles:?}; log:\n{log}"))
}

#[test]
fn sigterm_mid_job_hands_the_job_back_like_a_spot_notice() {
    let local = Local::new();
    let body = seed_long_clip(&local, "talk.flv");
    local.send(&[&body]);
    let config = local.config("");
    let mut worker = local.start_worker(&config);
    let job = wait_for(&mut worker, Duration::from_secs(60), "progress", |w| {
        job_with_progress(w, "talk.flv")
    });
    assert!(job["percent"].as_f64().unwrap() < 100.0, "{job}");
    let asked = Instant::now();
    let status = worker.stop(Duration::from_secs(15)).unwrap();
    let took = asked.elapsed();
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM; log:\n{log}"
    );
    assert_handed_back(&local, "talk", &body, &log);
}

#[test]
fn a_rebalance_recommendation_drains_the_running_job_and_takes_no_more() {
    let local = Local::new();
    let imds = FakeImds::start();
    let first = seed_long_clip(&local, "first.flv");
    let small = local.scratch("small.flv");
    make_clip(&small, Some((320, 180, 30)), true, 2.0).unwrap();
    let info = local.upload("second.flv", &small);
    let second = local.created_event("second.flv", &info);
    local.send(&[&first, &second]);
    let config = local.config(&imds.spot_config());
    let mut worker = local.start_worker(&config);

    wait_for(&mut worker, Duration::from_secs(60), "the first job", |w| {
        let status = status_json(w)?;
        let jobs = status["jobs"].as_object()?;
        jobs.values().any(|j| j["key"] == "first.flv").then_some(())
    });
    imds.raise_rebalance();
    let draining = wait_for(
        &mut worker,
        Duration::from_secs(10),
        "the draining phase",
        |w| status_json(w).filter(|s| s["phase"] == "draining"),
    );
    assert_eq!(
        draining["busy"], true,
        "the job ended before the notice was seen; the test proves nothing: {draining}"
    );
    let (status, _) = wait_exit(&mut worker, Duration::from_secs(120));
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");
    imds.assert_token_used();
    assert!(imds.count(REBALANCE, 200) >= 1);
    assert_logged(
        &log,
        &["Rebalance recommendation", "finishing running jobs"],
    );
    assert_logged(&log, &["first.flv", "Ladder published"]);
    assert!(
        log_line(&log, &["second.flv"]).is_none(),
        "the second message was taken: {log}"
    );

    verify_ladder(&local.ladder_dir("first"), SEGMENT_SECS);
    let queue = local.queue();
    let left = drain_visible(&queue);
    assert_eq!(left.len(), 1, "{left:?}; log:\n{log}");
    assert_eq!(left[0].body, second, "the first message was not deleted");
    assert_eq!(left[0].receive_count, 1, "the second message was received");
}

#[test]
fn an_idle_worker_exits_and_runs_the_idle_command() {
    let local = Local::new();
    let marker = local.scratch("idle-ran");
    let config = local.config(&format!(
        "idle_shutdown_secs = 2\nidle_command = [\"touch\", {:?}]\n",
        marker.to_str().unwrap()
    ));
    let started = Instant::now();
    let mut worker = local.start_worker(&config);
    assert!(!marker.exists(), "the idle command ran at start");
    let (status, _) = wait_exit(&mut worker, Duration::from_secs(10));
    let took = started.elapsed();
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the 2 s idle limit; log:\n{log}"
    );
    assert!(marker.exists(), "the idle command did not run; log:\n{log}");
    assert_logged(&log, &["No job for the idle limit"]);
    assert_logged(&log, &["Worker stopped", "Idle"]);
}

#[test]
fn the_status_endpoint_reports_health_progress_and_busy() {
    let local = Local::new();
    let body = seed_long_clip(&local, "status.flv");
    local.send(&[&body]);
    let config = local.config("");
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut worker = local.start_worker(&config);

    let health = testkit::http::get(&worker.http_url("/healthz"));
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let job = wait_for(&mut worker, Duration::from_secs(60), "progress", |w| {
        job_with_progress(w, "status.flv")
    });
    let percent = job["percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&percent), "{job}");
    assert!(job["speed"].as_f64().is_some_and(|s| s >= 0.0), "{job}");
    assert_eq!(job["receive_count"], 1, "{job}");
    let started_at = job["started_at"].as_u64().unwrap();
    assert!(
        started_at >= before && started_at <= before + 60,
        "started_at {started_at} vs {before}"
    );
    let status = status_json(&worker).unwrap();
    assert_eq!(status["phase"], "running", "{status}");
    let metrics = testkit::http::get(&worker.http_url("/metrics"));
    assert!(
        metrics
            .header("content-type")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        metrics.headers
    );
    let busy_metrics = metrics.text();

    // Progress keeps pace with the job: once it reads 100 % the job is about to end, and it
    // rises between reports.
    let mut seen: Vec<(Instant, f64)> = Vec::new();
    let ended = wait_for(
        &mut worker,
        Duration::from_secs(120),
        "the job's end",
        |w| {
            let status = status_json(w)?;
            if let Some(job) = status["jobs"].as_object()?.values().next() {
                if let Some(p) = job["percent"].as_f64()
                    && seen.last().is_none_or(|&(_, last)| last != p)
                {
                    seen.push((Instant::now(), p));
                }
                return None;
            }
            (status["busy"] == false).then(Instant::now)
        },
    );
    let idle = status_json(&worker).unwrap();
    let idle_metrics = metrics_text(&worker).unwrap();
    let status = worker.stop(Duration::from_secs(15)).unwrap();
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");

    assert_eq!(
        metric(&busy_metrics, "spherecast_worker_busy"),
        Some(1.0),
        "{busy_metrics}"
    );
    assert_eq!(
        metric(&busy_metrics, "spherecast_worker_jobs_running"),
        Some(1.0)
    );
    assert_eq!(idle["busy"], false, "{idle}");
    assert_eq!(idle["jobs"], serde_json::json!({}), "{idle}");
    assert_eq!(metric(&idle_metrics, "spherecast_worker_busy"), Some(0.0));
    assert_eq!(
        metric(&idle_metrics, "spherecast_worker_jobs_running"),
        Some(0.0)
    );
    assert_eq!(
        counter(&idle_metrics, "jobs_succeeded"),
        1.0,
        "{idle_metrics}"
    );

    let percents: Vec<f64> = seen.iter().map(|&(_, p)| p).collect();
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "progress went back: {percents:?}"
    );
    if let Some(&(at, _)) = seen.iter().find(|&&(_, p)| p >= 99.5) {
        let left = ended.duration_since(at);
        assert!(
            left < Duration::from_millis(2500),
            "progress read 100 % {left:?} before the job ended: {percents:?}"
        );
    }
}

/// Every file of a published ladder with its modification time and size.
fn snapshot(dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.push((entry.path(), meta.modified().unwrap(), meta.len()));
            }
        }
    }
    files.sort();
    files
}

/// Runs a worker over what is queued until `done` holds for its metrics, then stops it;
/// returns the metrics and the log.
fn run_until(local: &Local, done: impl Fn(&str) -> bool) -> (String, String) {
    let config = local.config("");
    let mut worker = local.start_worker(&config);
    let metrics = wait_for(&mut worker, Duration::from_secs(120), "the jobs", |w| {
        let busy = status_json(w)?["busy"] == true;
        metrics_text(w).filter(|m| !busy && done(m))
    });
    let status = worker.stop(Duration::from_secs(15)).unwrap();
    let log = worker.log_text();
    assert!(status.success(), "exit {status}; log:\n{log}");
    (metrics, log)
}

#[test]
fn the_same_event_twice_is_skipped_and_a_new_version_of_the_source_replaces_the_ladder() {
    let local = Local::new();
    let four = local.scratch("four.flv");
    make_clip(&four, Some((320, 180, 30)), true, 4.0).unwrap();
    let info = local.upload("talk.flv", &four);
    let event = local.created_event("talk.flv", &info);
    let ladder = local.ladder_dir("talk");

    // Twice in a row in one run: one ladder, one skip.
    local.send(&[&event, &event]);
    let (metrics, log) = run_until(&local, |m| {
        counter(m, "jobs_succeeded") + counter(m, "jobs_skipped") >= 2.0
    });
    assert_eq!(counter(&metrics, "jobs_succeeded"), 1.0, "{metrics}\n{log}");
    assert_eq!(counter(&metrics, "jobs_skipped"), 1.0, "{metrics}\n{log}");
    assert_logged(&log, &["talk.flv", "already published"]);
    verify_ladder(&ladder, SEGMENT_SECS);
    let published = snapshot(&ladder);
    let master_before = std::fs::read_to_string(ladder.join("master.m3u8")).unwrap();

    // Once more after a restart: nothing is written.
    local.send(&[&event]);
    let (metrics, log) = run_until(&local, |m| counter(m, "jobs_skipped") >= 1.0);
    assert_eq!(counter(&metrics, "jobs_succeeded"), 0.0, "{metrics}\n{log}");
    assert_logged(&log, &["talk.flv", "already published"]);
    assert_eq!(
        snapshot(&ladder),
        published,
        "the skipped job touched the ladder"
    );
    assert!(drain_visible(&local.queue()).is_empty(), "messages left");

    // A new version of the source (new eTag): the ladder is replaced, stale segments go.
    let two = local.scratch("two.flv");
    make_clip(&two, Some((320, 180, 30)), true, 2.0).unwrap();
    let new_info = local.upload("talk.flv", &two);
    assert_ne!(new_info.etag, info.etag);
    local.send(&[&local.created_event("talk.flv", &new_info)]);
    let (metrics, log) = run_until(&local, |m| counter(m, "jobs_succeeded") >= 1.0);
    assert_eq!(counter(&metrics, "jobs_skipped"), 0.0, "{metrics}\n{log}");
    assert_logged(
        &log,
        &["talk", "Replacing a ladder made from another version"],
    );
    let master_after = std::fs::read_to_string(ladder.join("master.m3u8")).unwrap();
    assert_ne!(
        master_after, master_before,
        "the master playlist was not replaced"
    );
    let head = block_on(local.egress().head("talk/master.m3u8"))
        .unwrap()
        .expect("master published");
    assert_eq!(
        head.metadata.get("source-etag").map(String::as_str),
        Some(new_info.etag.trim_matches('"')),
        "{head:?}"
    );
    for report in verify_ladder(&ladder, SEGMENT_SECS) {
        let playlist =
            std::fs::read_to_string(ladder.join(&report.name).join("index.m3u8")).unwrap();
        let mut listed: Vec<String> = testkit::hls::parse_media(&playlist)
            .segments
            .into_iter()
            .map(|s| s.uri)
            .collect();
        let mut on_disk: Vec<String> = std::fs::read_dir(ladder.join(&report.name))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ts"))
            .collect();
        listed.sort();
        on_disk.sort();
        assert_eq!(on_disk, listed, "{}: stale segments left", report.name);
        assert!(report.segments < 2, "{}: {report:?}", report.name);
    }
}
