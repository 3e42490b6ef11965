//! `spherecast worker` end to end in AWS mode against moto server: an S3 event on SQS becomes an
//! HLS ladder in the egress bucket, also when the event is delivered twice at once, when a
//! worker dies mid-job, when the egress bucket keeps refusing uploads and when the object is
//! gone before its event is read. Each test starts its own moto server, buckets and queues,
//! and runs the real binary with a configuration file, as an operator would.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloud::{ObjectInfo, ObjectStore, PutOptions, Queue, QueueDepth, S3Store, SqsQueue};
use testkit::clip::make_clip;
use testkit::hls::{parse_master, parse_media, verify_ladder};
use testkit::moto::MotoServer;
use testkit::up::Worker;

/// moto accepts any credentials; the worker takes them from the environment like any AWS tool.
const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];
/// Longest a job on a few seconds of media may take on a busy 2-core machine.
const JOB_LIMIT: Duration = Duration::from_secs(180);
/// SIGTERM to exit, with no job running.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// One moto server and S3/SQS clients for it. AWS calls run on the fixture's own runtime, so
/// the tests stay plain blocking code around processes, HTTP and ffprobe.
struct Moto {
    server: MotoServer,
    runtime: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    asg: aws_sdk_autoscaling::Client,
}

impl Moto {
    fn start() -> Moto {
        let server = MotoServer::start().expect("moto server starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = runtime.block_on(cloud::aws::sdk_config_with_credentials(
            Some(&server.endpoint),
            Some("us-east-1"),
            cloud::aws::static_credentials("test", "test"),
        ));
        Moto {
            s3: cloud::aws::s3_client(&config, true),
            sqs: cloud::aws::sqs_client(&config),
            asg: aws_sdk_autoscaling::Client::new(&config),
            server,
            runtime,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A new bucket named `PREFIX-...`.
    fn bucket(&self, prefix: &str) -> S3Store {
        let store = self.store(&unique(prefix));
        self.block_on(store.create_bucket_if_missing()).unwrap();
        store
    }

    /// A handle on bucket `name`, which may not exist.
    fn store(&self, name: &str) -> S3Store {
        S3Store::new(self.s3.clone(), name)
    }

    /// A queue with the visibility timeout `visibility` and a dead-letter queue after
    /// `max_receive_count` receives; returns both.
    fn queues(
        &self,
        prefix: &str,
        visibility: Duration,
        max_receive_count: u32,
    ) -> (SqsQueue, SqsQueue) {
        let settings = cloud::QueueSettings {
            visibility_timeout: visibility,
            max_receive_count,
        };
        self.block_on(SqsQueue::create_with_dead_letter(
            self.sqs.clone(),
            &unique(prefix),
            &settings,
        ))
        .unwrap()
    }

    /// S3 announces every object created in `bucket` on `queue` (and sends s3:TestEvent now).
    fn notify(&self, bucket: &S3Store, queue: &SqsQueue) {
        self.block_on(bucket.notify_object_created(queue)).unwrap();
    }

    /// Uploads `file` as `key`; returns what S3 then reports for it (eTag with quotes).
    fn upload(&self, store: &S3Store, key: &str, file: &Path) -> ObjectInfo {
        self.block_on(async {
            store
                .put_file(key, file, &PutOptions::default())
                .await
                .unwrap();
            store.head(key).await.unwrap().expect("uploaded object")
        })
    }

    /// The ObjectCreated event S3 would send for `object` in `store`.
    fn event_for(store: &S3Store, object: &ObjectInfo) -> String {
        cloud::object_created_event(store.bucket(), &object.key, object.size, &object.etag)
    }

    fn send(&self, queue: &SqsQueue, body: &str) {
        self.block_on(queue.send(body)).unwrap();
    }

    fn depth(&self, queue: &SqsQueue) -> QueueDepth {
        self.block_on(queue.depth()).unwrap()
    }

    /// Downloads every object under `prefix` into `dir`, keeping the rest of each key as its
    /// path; returns those relative paths.
    fn download(&self, store: &S3Store, prefix: &str, dir: &Path) -> BTreeSet<String> {
        self.block_on(async {
            let mut files = BTreeSet::new();
            for object in store.list(prefix).await.unwrap() {
                let relative = &object.key[prefix.len()..];
                store
                    .get_to_file(&object.key, &dir.join(relative))
                    .await
                    .unwrap();
                files.insert(relative.to_owned());
            }
            files
        })
    }

    /// A configuration file for the worker: this moto server, the queue, both buckets, and
    /// `worker` as the body of the `[worker]` section.
    fn config(
        &self,
        dir: &Path,
        queue: &SqsQueue,
        ingress: &str,
        egress: &str,
        worker: &str,
    ) -> PathBuf {
        let path = dir.join("spherecast.toml");
        let text = format!(
            "[aws]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\n\
             [queue]\nurl = \"{}\"\n\n[ingress]\nbucket = \"{ingress}\"\n\n\
             [egress]\nbucket = \"{egress}\"\n\n[worker]\n{worker}\n",
            self.server.endpoint,
            queue.url(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A bucket or queue name no other test uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:08x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `spherecast worker --config CONFIG` with its data folder `DIR/NAME` (log in `DIR/NAME.log`).
fn start_worker(dir: &Path, name: &str, config: &Path) -> Worker {
    Worker::start(
        &dir.join(name),
        &["--config", config.to_str().unwrap()],
        &AWS_ENV,
    )
    .expect("the worker starts")
}

/// The logs of `workers`, for failure messages.
fn logs(workers: &[&Worker]) -> String {
    workers
        .iter()
        .map(|w| format!("--- log of {}:\n{}", w.data.display(), w.log_text()))
        .collect()
}

/// Polls `check` until it returns a value; panics after `limit` naming `what`, with the logs.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    workers: &[&Worker],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after {limit:?}\n{}",
            logs(workers)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET on a worker's status endpoint; `None` when it does not answer 200.
fn fetch(worker: &Worker, path: &str) -> Option<String> {
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(worker.http_url(path))
        .send()
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().ok()
}

/// One `spherecast_worker_NAME` sample from the worker's `/metrics`.
fn metric(worker: &Worker, name: &str) -> Option<f64> {
    let text = fetch(worker, "/metrics")?;
    testkit::http::metric(&text, &format!("spherecast_worker_{name}"))
}

/// Counter `spherecast_worker_NAME_total`, panicking with the log when it cannot be read.
fn counter(worker: &Worker, name: &str) -> f64 {
    metric(worker, &format!("{name}_total")).unwrap_or_else(|| {
        panic!(
            "no {name}_total on the worker's /metrics\n{}",
            logs(&[worker])
        )
    })
}

/// `busy` from the worker's `/status`.
fn busy(worker: &Worker) -> Option<bool> {
    let status: serde_json::Value = serde_json::from_str(&fetch(worker, "/status")?).ok()?;
    status["busy"].as_bool()
}

/// Waits until `queue` holds nothing, visible or in flight.
fn wait_until_empty(moto: &Moto, queue: &SqsQueue, workers: &[&Worker]) {
    wait_for(
        &format!("queue {} empty", queue.url()),
        Duration::from_secs(15),
        workers,
        || (moto.depth(queue) == QueueDepth::default()).then_some(()),
    );
}

/// Every file a player can reach from `dir/master.m3u8`: the master, the media and I-frame
/// playlists, and the segments they list.
fn referenced_files(dir: &Path) -> BTreeSet<String> {
    let master = parse_master(&std::fs::read_to_string(dir.join("master.m3u8")).unwrap());
    let mut files = BTreeSet::from(["master.m3u8".to_owned()]);
    let playlists = master.variants.iter().chain(&master.iframe_variants);
    for playlist in playlists.map(|v| v.uri.clone()) {
        let text = std::fs::read_to_string(dir.join(&playlist))
            .unwrap_or_else(|e| panic!("{playlist} is listed in the master playlist: {e}"));
        let folder = playlist.rsplit_once('/').map_or("", |(folder, _)| folder);
        for segment in parse_media(&text).segments {
            files.insert(format!("{folder}/{}", segment.uri));
        }
        files.insert(playlist);
    }
    files
}

/// Checks a ladder downloaded to `dir` (`files` as listed in the bucket): nothing missing,
/// nothing extra, and [`verify_ladder`]'s rules; returns its report. [`check_iframe_playlists`]
/// is separate: it probes every key frame, which takes a while on long clips.
fn check_ladder(
    dir: &Path,
    files: &BTreeSet<String>,
    segment_secs: u64,
) -> Vec<testkit::hls::RenditionReport> {
    assert!(
        files.contains("master.m3u8"),
        "no master playlist among {files:?}"
    );
    assert_eq!(
        *files,
        referenced_files(dir),
        "the bucket holds exactly what the playlists reference"
    );
    verify_ladder(dir, segment_secs)
}

/// Every I-frame playlist entry addresses, in the segment as stored, the PAT, the PMT and one
/// whole key frame, starting at the offset where that key frame's PES begins. A playlist and
/// segments from two different encodes of the same source fail this: their key frames differ
/// in size and place.
fn check_iframe_playlists(dir: &Path) {
    const TS_PACKET: u64 = 188;
    let master = parse_master(&std::fs::read_to_string(dir.join("master.m3u8")).unwrap());
    assert!(!master.iframe_variants.is_empty(), "no I-frame playlists");
    let chunk_path = dir.with_file_name("iframe-chunk.ts");
    let mut probed: std::collections::HashMap<PathBuf, Vec<(u64, u64, bool)>> = Default::default();
    for variant in &master.iframe_variants {
        let folder = dir.join(&variant.uri).parent().unwrap().to_path_buf();
        let playlist = parse_media(&std::fs::read_to_string(dir.join(&variant.uri)).unwrap());
        assert!(!playlist.segments.is_empty(), "{}: empty", variant.uri);
        for entry in &playlist.segments {
            let what = format!("{} -> {} {:?}", variant.uri, entry.uri, entry.byte_range);
            let (length, offset) = entry
                .byte_range
                .unwrap_or_else(|| panic!("{what}: no range"));
            let segment_path = folder.join(&entry.uri);
            let segment = std::fs::read(&segment_path).unwrap();
            assert!(
                offset % TS_PACKET == 0
                    && length % TS_PACKET == 0
                    && length > 0
                    && offset + length <= segment.len() as u64,
                "{what}: not whole TS packets within the {} bytes of the segment",
                segment.len()
            );
            let range = &segment[offset as usize..(offset + length) as usize];
            let pid = (u16::from(range[1] & 0x1f) << 8) | u16::from(range[2]);
            assert!(
                range[0] == 0x47 && pid == 0,
                "{what}: does not start with the PAT"
            );
            std::fs::write(&chunk_path, range).unwrap();
            let in_chunk = video_packets(&chunk_path);
            assert!(
                in_chunk.len() == 1 && in_chunk[0].2,
                "{what}: holds {in_chunk:?} (position, size, key), not one key frame"
            );
            let (position, size, _) = in_chunk[0];
            let in_segment = probed
                .entry(segment_path.clone())
                .or_insert_with(|| video_packets(&segment_path));
            assert!(
                in_segment.contains(&(offset + position, size, true)),
                "{what}: the key frame of {size} bytes at {} is not in the segment: {in_segment:?}",
                offset + position
            );
        }
    }
    std::fs::remove_file(&chunk_path).unwrap();
}

/// (byte position, size, key frame) of every video packet in a TS file, from ffprobe.
fn video_packets(path: &Path) -> Vec<(u64, u64, bool)> {
    let probed = testkit::clip::probe_packets(path.to_str().unwrap()).unwrap();
    let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    probed["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["codec_type"] == "video")
        .map(|p| {
            (
                number(&p["pos"]).expect("packet position"),
                number(&p["size"]).expect("packet size"),
                p["flags"].as_str().unwrap_or("").starts_with('K'),
            )
        })
        .collect()
}

fn source_etag(store: &S3Store, moto: &Moto, master_key: &str) -> String {
    let master = moto
        .block_on(store.head(master_key))
        .unwrap()
        .unwrap_or_else(|| panic!("no {master_key}"));
    master
        .metadata
        .get("source-etag")
        .unwrap_or_else(|| panic!("{master_key} has no source-etag: {:?}", master.metadata))
        .clone()
}

#[test]
fn an_s3_upload_becomes_a_published_ladder_with_http_metadata_and_an_empty_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = moto.bucket("egress");
    let (queue, dead) = moto.queues("jobs", Duration::from_secs(30), 3);
    moto.notify(&ingress, &queue);

    let key = "talks/day 1/Keynote+Q&A ü.flv";
    let prefix = "talks/day 1/Keynote+Q&A ü/";
    let clip = tmp.path().join("keynote.flv");
    // 8 s rather than 5: x264's ABR overshoots on short clips (ffmpeg's libx264 alike), at
    // 5 s by up to 15 %, at 8 s by about 10 %, which leaves room for the 15 % check below.
    make_clip(&clip, Some((1280, 720, 30)), true, 8.0).unwrap();
    let source = moto.upload(&ingress, key, &clip);
    // S3 sent s3:TestEvent when the notification was configured, then the upload's event.
    let depth = wait_for(
        "both S3 events on the queue",
        Duration::from_secs(10),
        &[],
        || {
            let depth = moto.depth(&queue);
            (depth.visible == 2).then_some(depth)
        },
    );
    assert_eq!(depth.in_flight, 0);

    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        egress.bucket(),
        "segment_secs = 2\nkeyframe_interval_secs = 1",
    );
    let mut worker = start_worker(tmp.path(), "worker", &config);
    wait_for("one published ladder", JOB_LIMIT, &[&worker], || {
        (metric(&worker, "jobs_succeeded_total")? == 1.0).then_some(())
    });
    wait_for(
        "the test event handled",
        Duration::from_secs(30),
        &[&worker],
        || (metric(&worker, "messages_ignored_total")? == 1.0).then_some(()),
    );
    wait_until_empty(&moto, &queue, &[&worker]);
    assert_eq!(
        moto.depth(&dead),
        QueueDepth::default(),
        "dead-letter queue"
    );
    let log = worker.log_text();
    assert!(
        log.contains("S3 test event; deleting it."),
        "the test event is deleted with a log line\n{log}"
    );
    assert_eq!(counter(&worker, "jobs_failed"), 0.0, "{log}");

    let ladder = tmp.path().join("ladder");
    let files = moto.download(&egress, prefix, &ladder);
    let reports = check_ladder(&ladder, &files, 2);
    check_iframe_playlists(&ladder);
    let names: BTreeSet<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["720p", "480p", "360p", "240p", "180p", "audio"]),
        "the default ladder up to the 720p source, then audio"
    );
    for (name, kbps) in [
        ("720p", 2136.0),
        ("480p", 1080.0),
        ("360p", 500.0),
        ("240p", 250.0),
        ("180p", 110.0),
    ] {
        let report = reports.iter().find(|r| r.name == name).unwrap();
        let measured = report.video_bps / 1000.0;
        assert!(
            (measured / kbps - 1.0).abs() <= 0.15,
            "{name}: video at {measured:.0} kbit/s, configured {kbps} kbit/s"
        );
        assert_eq!(report.profile.as_deref(), Some("High"), "{name}");
    }
    assert_eq!(
        reports.iter().find(|r| r.name == "720p").unwrap().size,
        Some((1280, 720))
    );

    let (mut playlists, mut segments) = (0, 0);
    for file in &files {
        let object = moto
            .block_on(egress.head(&format!("{prefix}{file}")))
            .unwrap()
            .unwrap();
        let content_type = object.content_type.as_deref();
        if file.ends_with(".m3u8") {
            playlists += 1;
            assert_eq!(
                content_type,
                Some("application/vnd.apple.mpegurl"),
                "{file}"
            );
        } else if file.ends_with(".ts") {
            segments += 1;
            assert_eq!(content_type, Some("video/mp2t"), "{file}");
        } else {
            panic!("unexpected output {file}");
        }
        let cache = object.cache_control.unwrap_or_default();
        assert!(
            cache.contains("max-age="),
            "{file}: Cache-Control {cache:?}"
        );
    }
    // master + 6 media playlists + 5 I-frame playlists.
    assert_eq!(playlists, 12, "{files:?}");
    // 8 s in 2 s segments, in five video renditions and the audio one.
    assert!(segments >= 6 * 4, "{files:?}");
    assert_eq!(
        source_etag(&egress, &moto, &format!("{prefix}master.m3u8")),
        source.etag.trim_matches('"'),
        "the master playlist names the source it was made from"
    );

    let exit = worker.stop(STOP_GRACE).unwrap();
    assert!(exit.success(), "worker exited with {exit}");
}

#[test]
fn one_event_delivered_twice_to_two_workers_at_once_publishes_one_consistent_ladder() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = moto.bucket("egress");
    let (queue, dead) = moto.queues("jobs", Duration::from_secs(30), 3);
    let clip = tmp.path().join("clip.flv");
    make_clip(&clip, Some((640, 360, 30)), true, 4.0).unwrap();
    let source = moto.upload(&ingress, "shows/twice.flv", &clip);
    let event = Moto::event_for(&ingress, &source);
    moto.send(&queue, &event);
    moto.send(&queue, &event);

    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        egress.bucket(),
        "concurrency = 1\nsegment_secs = 2\nkeyframe_interval_secs = 1",
    );
    let args = ["--config", config.to_str().unwrap()];
    let mut a = Worker::spawn(&tmp.path().join("a"), &args, &AWS_ENV).unwrap();
    let mut b = Worker::spawn(&tmp.path().join("b"), &args, &AWS_ENV).unwrap();
    a.wait_ready(Duration::from_secs(20)).unwrap();
    b.wait_ready(Duration::from_secs(20)).unwrap();

    let done = |w: &Worker| -> Option<f64> {
        Some(metric(w, "jobs_succeeded_total")? + metric(w, "jobs_skipped_total")?)
    };
    wait_for("both deliveries handled", JOB_LIMIT, &[&a, &b], || {
        (done(&a)? + done(&b)? == 2.0).then_some(())
    });
    wait_until_empty(&moto, &queue, &[&a, &b]);
    assert_eq!(
        moto.depth(&dead),
        QueueDepth::default(),
        "dead-letter queue"
    );
    for worker in [&a, &b] {
        for name in ["jobs_failed", "jobs_rejected"] {
            assert_eq!(counter(worker, name), 0.0, "{name}\n{}", logs(&[worker]));
        }
        let log = worker.log_text();
        let troubles: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        assert!(troubles.is_empty(), "{troubles:#?}\n{}", logs(&[worker]));
    }
    assert!(
        counter(&a, "jobs_succeeded") + counter(&b, "jobs_succeeded") >= 1.0,
        "someone published\n{}",
        logs(&[&a, &b])
    );

    let ladder = tmp.path().join("ladder");
    let files = moto.download(&egress, "shows/twice/", &ladder);
    check_ladder(&ladder, &files, 2);
    // What mixing two encodes breaks first: byte ranges of one into segments of the other.
    check_iframe_playlists(&ladder);
    assert_eq!(
        source_etag(&egress, &moto, "shows/twice/master.m3u8"),
        source.etag.trim_matches('"')
    );

    for worker in [&mut a, &mut b] {
        let exit = worker.stop(STOP_GRACE).unwrap();
        assert!(exit.success(), "worker exited with {exit}");
    }
}

#[test]
fn a_worker_killed_mid_job_keeps_its_message_hidden_until_then_and_another_worker_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = moto.bucket("egress");
    // The queue's own visibility equals the worker's: only the heartbeat keeps a message
    // hidden for longer.
    let visibility = Duration::from_secs(4);
    let (queue, dead) = moto.queues("jobs", visibility, 3);
    let clip = tmp.path().join("long.flv");
    // Long enough that the job outlasts the observation window below several times over on
    // two cores (the ladder is made at about 2x real time there).
    make_clip(&clip, Some((1280, 720, 30)), true, 20.0).unwrap();
    let source = moto.upload(&ingress, "crash/long.flv", &clip);
    moto.send(&queue, &Moto::event_for(&ingress, &source));

    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        egress.bucket(),
        "segment_secs = 2\nkeyframe_interval_secs = 1\nvisibility_secs = 4\nheartbeat_secs = 1",
    );
    let mut a = start_worker(tmp.path(), "a", &config);
    wait_for("worker A busy", Duration::from_secs(30), &[&a], || {
        busy(&a).filter(|&b| b)
    });
    let busy_at = Instant::now();

    // Past the 4 s visibility, the message is still in flight: A's heartbeat renews it.
    let window = visibility + Duration::from_millis(1500);
    while busy_at.elapsed() < window {
        let depth = moto.depth(&queue);
        assert_eq!(
            (depth.visible, depth.in_flight),
            (0, 1),
            "{:?} after A took the job\n{}",
            busy_at.elapsed(),
            logs(&[&a])
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        busy(&a),
        Some(true),
        "A finished before the window ended, which then proves nothing; use a longer clip\n{}",
        logs(&[&a])
    );
    assert_eq!(counter(&a, "jobs_succeeded"), 0.0);

    a.kill();
    let killed_at = Instant::now();
    let depth = moto.depth(&queue);
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, 1),
        "hidden until the last heartbeat's visibility ends"
    );
    wait_for(
        "the message visible again",
        visibility + Duration::from_secs(4),
        &[&a],
        || (moto.depth(&queue).visible == 1).then_some(()),
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "the message came back {:?} after the kill, before the heartbeat's visibility ended",
        killed_at.elapsed()
    );

    let mut b = start_worker(tmp.path(), "b", &config);
    wait_for("worker B publishes", JOB_LIMIT, &[&b], || {
        (metric(&b, "jobs_succeeded_total")? == 1.0).then_some(())
    });
    let log = b.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("Job started.") && l.contains("receive_count=2")),
        "B took the message on its second receive\n{log}"
    );
    wait_until_empty(&moto, &queue, &[&b]);
    assert_eq!(
        moto.depth(&dead),
        QueueDepth::default(),
        "dead-letter queue"
    );

    let ladder = tmp.path().join("ladder");
    let files = moto.download(&egress, "crash/long/", &ladder);
    check_ladder(&ladder, &files, 2);
    let exit = b.stop(STOP_GRACE).unwrap();
    assert!(exit.success(), "worker B exited with {exit}");
}

#[test]
fn a_job_that_keeps_failing_is_retried_with_backoff_then_dead_lettered_while_the_worker_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = unique("no-such-egress");
    let (queue, dead) = moto.queues("jobs", Duration::from_secs(5), 2);
    let clip = tmp.path().join("clip.flv");
    make_clip(&clip, Some((640, 360, 30)), true, 2.0).unwrap();
    let source = moto.upload(&ingress, "fail/rec.flv", &clip);
    let event = Moto::event_for(&ingress, &source);
    moto.send(&queue, &event);

    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        &egress,
        "segment_secs = 2\nkeyframe_interval_secs = 1\nvisibility_secs = 5\nheartbeat_secs = 1\n\
         retry_base_secs = 1",
    );
    let mut worker = start_worker(tmp.path(), "worker", &config);
    // The worker must outlive every failure: check that it runs while waiting.
    let deadline = Instant::now() + JOB_LIMIT;
    let dead_lettered = loop {
        if let Some(status) = worker.exited() {
            panic!("the worker exited with {status}\n{}", logs(&[&worker]));
        }
        let received = moto.block_on(dead.receive(1, Duration::from_secs(1)));
        if let Some(message) = received.unwrap().pop() {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "nothing in the dead-letter queue after {JOB_LIMIT:?}\n{}",
            logs(&[&worker])
        );
    };
    assert_eq!(
        dead_lettered.body, event,
        "the dead-letter queue holds the event"
    );
    assert_eq!(worker.exited(), None, "the worker is still running");
    assert_eq!(moto.depth(&queue), QueueDepth::default(), "queue");

    let log = worker.log_text();
    let failures = log.lines().filter(|l| l.contains("Job failed.")).count();
    assert_eq!(failures, 2, "one failure per receive\n{log}");
    assert!(
        log.contains(&format!("bucket \"{egress}\" does not exist")),
        "the failure names the missing bucket\n{log}"
    );
    let released: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Message released for a later retry."))
        .collect();
    assert_eq!(released.len(), 2, "{log}");
    assert!(released[0].contains("retry_in=1s"), "{}", released[0]);
    assert!(released[1].contains("retry_in=2s"), "{}", released[1]);
    assert_eq!(counter(&worker, "jobs_failed"), 2.0);
    assert_eq!(counter(&worker, "jobs_rejected"), 0.0);
    assert_eq!(counter(&worker, "jobs_succeeded"), 0.0);

    let exit = worker.stop(STOP_GRACE).unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "SIGTERM ends the worker cleanly\n{log}"
    );
}

#[test]
fn an_event_for_a_deleted_object_goes_to_the_dead_letter_queue_on_its_first_receive() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = moto.bucket("egress");
    // Redrive alone would take 5 receives of 30 s each: minutes, not seconds.
    let (queue, dead) = moto.queues("jobs", Duration::from_secs(30), 5);
    let key = "gone/rec.flv";
    let file = tmp.path().join("rec.flv");
    std::fs::write(&file, b"not for long").unwrap();
    let source = moto.upload(&ingress, key, &file);
    moto.block_on(ingress.delete(key)).unwrap();
    let event = Moto::event_for(&ingress, &source);
    moto.send(&queue, &event);

    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        egress.bucket(),
        "segment_secs = 2\nkeyframe_interval_secs = 1",
    );
    let started = Instant::now();
    let mut worker = start_worker(tmp.path(), "worker", &config);
    let message = wait_for(
        "the message in the dead-letter queue",
        Duration::from_secs(60),
        &[&worker],
        || {
            moto.block_on(
                moto.sqs
                    .receive_message()
                    .queue_url(dead.url())
                    .message_attribute_names("All")
                    .wait_time_seconds(1)
                    .send(),
            )
            .unwrap()
            .messages
            .unwrap_or_default()
            .pop()
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "dead-lettered after {:?}: at once, not by the queue's redrive",
        started.elapsed()
    );
    assert_eq!(message.body.as_deref(), Some(event.as_str()));
    let reason = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(SqsQueue::REASON_ATTRIBUTE))
        .and_then(|v| v.string_value.clone())
        .unwrap_or_default();
    assert!(reason.contains("no longer exists"), "reason {reason:?}");
    // The copy goes to the dead-letter queue first, then the original is deleted.
    wait_until_empty(&moto, &queue, &[&worker]);

    let log = worker.log_text();
    assert!(log.contains("no longer exists"), "{log}");
    let starts: Vec<&str> = log.lines().filter(|l| l.contains("Job started.")).collect();
    assert_eq!(starts.len(), 1, "{log}");
    assert!(starts[0].contains("receive_count=1"), "{}", starts[0]);
    assert_eq!(counter(&worker, "jobs_rejected"), 1.0);
    assert_eq!(counter(&worker, "jobs_failed"), 0.0);
    // Only the player the worker publishes at start (`player/`), nothing of the job.
    let left: Vec<String> = moto
        .block_on(egress.list(""))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        left,
        ["player/hls.min.js", "player/index.html", "player/player.js"],
        "nothing of the job left in the egress bucket"
    );
    let exit = worker.stop(STOP_GRACE).unwrap();
    assert!(exit.success(), "worker exited with {exit}");
}

/// An Auto Scaling group `name` with one instance; returns the instance's id.
fn one_instance_group(moto: &Moto, name: &str) -> String {
    moto.block_on(async {
        moto.asg
            .create_launch_configuration()
            .launch_configuration_name(name)
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .unwrap();
        moto.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(name)
            .min_size(0)
            .max_size(2)
            .desired_capacity(1)
            .availability_zones("us-east-1a")
            .send()
            .await
            .unwrap();
    });
    protected(moto, None).0
}

/// (instance id, protected from scale-in) of the one instance in moto, or of `id`.
fn protected(moto: &Moto, id: Option<&str>) -> (String, bool) {
    moto.block_on(async {
        let out = moto
            .asg
            .describe_auto_scaling_instances()
            .send()
            .await
            .unwrap();
        let instance = out
            .auto_scaling_instances()
            .iter()
            .find(|i| id.is_none_or(|id| i.instance_id() == Some(id)))
            .expect("an instance in a group")
            .clone();
        (
            instance.instance_id().unwrap().to_owned(),
            instance.protected_from_scale_in().unwrap(),
        )
    })
}

#[test]
fn a_worker_in_an_auto_scaling_group_protects_its_instance_only_while_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let ingress = moto.bucket("ingress");
    let egress = moto.bucket("egress");
    let (queue, _dead) = moto.queues("jobs", Duration::from_secs(30), 3);
    let instance = one_instance_group(&moto, "workers");
    let imds = testkit::imds::FakeImds::start();
    let worker_section = format!(
        "segment_secs = 2\nkeyframe_interval_secs = 1\nscale_in_protection = true\n\
         [worker.spot]\nmetadata_url = \"{}\"",
        imds.url()
    );
    let config = moto.config(
        tmp.path(),
        &queue,
        ingress.bucket(),
        egress.bucket(),
        &worker_section,
    );

    // An instance the metadata service names but no group holds: the setting cannot be
    // honoured, and the worker says so instead of running unprotected.
    imds.set_instance_id("i-0000000000000dead");
    let mut stray = Worker::spawn(
        &tmp.path().join("stray"),
        &["--config", config.to_str().unwrap()],
        &AWS_ENV,
    )
    .expect("the worker process starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = stray.exited() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the stray worker did not exit\n{}",
            stray.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!exit.success(), "{}", logs(&[&stray]));
    assert!(
        stray.log_text().contains("is not in an Auto Scaling group"),
        "{}",
        logs(&[&stray])
    );

    imds.set_instance_id(&instance);
    let mut worker = start_worker(tmp.path(), "w", &config);
    wait_for(
        "the worker ready",
        Duration::from_secs(30),
        &[&worker],
        || busy(&worker).filter(|&b| !b),
    );
    assert!(!protected(&moto, Some(&instance)).1, "idle, so unprotected");

    let clip = tmp.path().join("clip.flv");
    make_clip(&clip, Some((1280, 720, 30)), true, 8.0).unwrap();
    let source = moto.upload(&ingress, "asg/clip.flv", &clip);
    moto.send(&queue, &Moto::event_for(&ingress, &source));
    // Protected while the job runs...
    wait_for(
        "protected while busy",
        Duration::from_secs(60),
        &[&worker],
        || (busy(&worker) == Some(true) && protected(&moto, Some(&instance)).1).then_some(()),
    );
    // ...and not once it is done.
    wait_for("the job done", JOB_LIMIT, &[&worker], || {
        (metric(&worker, "jobs_succeeded_total")? == 1.0).then_some(())
    });
    wait_for(
        "unprotected when idle",
        Duration::from_secs(30),
        &[&worker],
        || (!protected(&moto, Some(&instance)).1).then_some(()),
    );
    let exit = worker.stop(STOP_GRACE).unwrap();
    assert!(exit.success(), "the worker exited with {exit}");
}
