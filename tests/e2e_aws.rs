//! End to end in AWS mode against moto server: `spherecast origin` uploads the finished
//! recording to an S3 bucket, and S3's own notification puts the event on SQS.

use std::time::{Duration, Instant};

use cloud::{ObjectStore, Queue};
use testkit::clip;
use testkit::moto::MotoServer;
use testkit::up::Spherecast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_aws_mode_the_recording_lands_in_the_s3_bucket_and_s3_announces_it() {
    let moto = MotoServer::start().expect("moto server starts");
    let aws = cloud::aws::sdk_config_with_credentials(
        Some(&moto.endpoint),
        Some("us-east-1"),
        cloud::aws::static_credentials("test", "test"),
    )
    .await;
    let s3 = cloud::aws::s3_client(&aws, true);
    let sqs = cloud::aws::sqs_client(&aws);
    let store = cloud::S3Store::new(s3.clone(), "ingress");
    store.create_bucket_if_missing().await.unwrap();
    let settings = cloud::QueueSettings {
        visibility_timeout: Duration::from_secs(30),
        max_receive_count: 3,
    };
    let (queue, _dead) =
        cloud::SqsQueue::create_with_dead_letter(sqs.clone(), "ingress-events", &settings)
            .await
            .unwrap();
    store.notify_object_created(&queue).await.unwrap();
    // Configuring a notification sends s3:TestEvent first; take it off the queue.
    for message in queue.receive(10, Duration::from_secs(1)).await.unwrap() {
        assert_eq!(
            cloud::S3Event::decode(&message.body).unwrap(),
            cloud::S3Event::Test,
            "{}",
            message.body
        );
        queue.delete(&message.receipt).await.unwrap();
    }

    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("spherecast.toml");
    std::fs::write(
        &config,
        format!("[ingress]\nbucket = \"ingress\"\n[aws]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n", moto.endpoint),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut server = Spherecast::start(
        "origin",
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &env,
    )
    .unwrap();

    let mut push = clip::push_test_pattern(&server.rtmp_url("aws"), 640, 360, 30, 3.0, 60).unwrap();
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg push failed");

    let deadline = Instant::now() + Duration::from_secs(30);
    let object = loop {
        let listed = store.list("aws-").await.unwrap();
        if let Some(found) = listed.into_iter().find(|o| o.key.ends_with(".flv")) {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no recording in s3://ingress; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let local = tmp.path().join("downloaded.flv");
    store.get_to_file(&object.key, &local).await.unwrap();
    let duration = clip::packet_span_secs(local.to_str().unwrap()).unwrap();
    assert!(
        (duration - 3.0).abs() <= 0.5,
        "recording lasts {duration} s, pushed 3 s"
    );

    let messages = queue.receive(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let cloud::S3Event::Records(records) = cloud::S3Event::decode(&messages[0].body).unwrap()
    else {
        panic!("not a records event: {}", messages[0].body)
    };
    assert_eq!(records[0].bucket, "ingress");
    assert_eq!(records[0].key, object.key);
    assert_eq!(records[0].size, object.size);

    assert!(server.stop(Duration::from_secs(15)).unwrap().success());
    // Nothing is left waiting in the spool once the upload succeeded.
    let spool: Vec<_> = std::fs::read_dir(tmp.path().join("data/spool"))
        .unwrap()
        .collect();
    assert!(spool.is_empty(), "{spool:?}");
}
