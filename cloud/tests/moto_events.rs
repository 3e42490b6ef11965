//! S3 event notifications as moto server sends them to SQS, decoded by `S3Event::decode`:
//! the whole ingress path of the AWS mode (upload -> S3 event -> queue -> worker) on loopback.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cloud::{ObjectStore, PutOptions, Queue, QueueSettings, S3Event, S3Store, SqsQueue};
use testkit::moto::MotoServer;

#[tokio::test]
async fn moto_events_decode_to_the_uploaded_keys() {
    let moto = MotoServer::start().expect("moto server starts");
    let config = common::aws_config(&moto.endpoint).await;
    let store = S3Store::new(
        cloud::aws::s3_client(&config, false),
        common::unique_name("ingress"),
    )
    .with_multipart(6 * 1024 * 1024, 5 * 1024 * 1024);
    store.create_bucket_if_missing().await.unwrap();
    let settings = QueueSettings {
        visibility_timeout: Duration::from_secs(30),
        max_receive_count: 3,
    };
    let sqs = cloud::aws::sqs_client(&config);
    let (queue, _) =
        SqsQueue::create_with_dead_letter(sqs.clone(), &common::unique_name("jobs"), &settings)
            .await
            .unwrap();

    store.notify_object_created(&queue).await.unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.mp4");
    std::fs::write(&big, vec![42u8; 11 * 1024 * 1024]).unwrap();
    let mut uploaded = BTreeMap::new();
    for key in ["rec/live-1700000000.mp4", "rec/my show ü.mp4"] {
        let info = store
            .put_bytes(
                key,
                Bytes::from_static(b"recording"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        uploaded.insert(key.to_owned(), info);
    }
    let info = store
        .put_file("rec/big.mp4", &big, &PutOptions::default())
        .await
        .unwrap();
    uploaded.insert("rec/big.mp4".to_owned(), info);

    let mut decoded = BTreeMap::new();
    let mut test_events = 0;
    while decoded.len() < uploaded.len() {
        let messages = queue.receive(10, Duration::from_secs(5)).await.unwrap();
        assert!(!messages.is_empty(), "events missing; got {decoded:?}");
        for message in messages {
            match S3Event::decode(&message.body)
                .unwrap_or_else(|err| panic!("{err}: {}", message.body))
            {
                S3Event::Test => test_events += 1,
                S3Event::Records(records) => {
                    for record in records {
                        decoded.insert(record.key.clone(), record);
                    }
                }
            }
            queue.delete(&message.receipt).await.unwrap();
        }
    }

    assert_eq!(
        test_events, 1,
        "moto sends one s3:TestEvent when the notification is configured"
    );
    assert_eq!(
        decoded.keys().collect::<Vec<_>>(),
        uploaded.keys().collect::<Vec<_>>()
    );
    for (key, record) in &decoded {
        let info = &uploaded[key];
        assert_eq!(record.bucket, store.bucket());
        assert!(
            record.event_name.starts_with("ObjectCreated:"),
            "{}",
            record.event_name
        );
        assert_eq!(record.size, info.size, "{key}");
        assert_eq!(format!("\"{}\"", record.etag), info.etag, "{key}");
    }
}
