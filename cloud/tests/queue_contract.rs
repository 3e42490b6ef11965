//! The queue contract. Each behaviour is one function over `&dyn Queue` (and its dead-letter
//! queue), run against an `EmbeddedQueue` in a temporary folder and an `SqsQueue` on a moto
//! server on loopback (one server per test). Both queues use a 2 s visibility timeout and
//! dead-letter after 3 receives.
//!
//! SQS counts visibility in whole seconds and moto checks for new messages about once a
//! second during a long poll, so waits below are generous and no assertion depends on tight
//! timing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cloud::{EmbeddedQueue, Queue, QueueDepth, QueueError, QueueSettings, SqsQueue};
use tempfile::TempDir;
use testkit::moto::MotoServer;

const VISIBILITY: Duration = Duration::from_secs(2);
const MAX_RECEIVES: u32 = 3;
/// Long enough for anything that should arrive to arrive, on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn settings() -> QueueSettings {
    QueueSettings {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVES,
    }
}

/// A queue under test, its dead-letter queue, and what must live as long as they do.
struct Fixture {
    queue: Box<dyn Queue>,
    dead_letter: Box<dyn Queue>,
    _dir: Option<TempDir>,
    _moto: Option<MotoServer>,
}

async fn embedded_queue() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path().join("jobs"), settings()).expect("queue opens");
    let dead_letter = queue
        .dead_letter()
        .expect("a queue opened with open() has a dead-letter queue");
    Fixture {
        queue: Box::new(queue),
        dead_letter: Box::new(dead_letter),
        _dir: Some(dir),
        _moto: None,
    }
}

async fn sqs_queue() -> Fixture {
    let moto = MotoServer::start().expect("moto server starts");
    let client = cloud::aws::sqs_client(&common::aws_config(&moto.endpoint).await);
    let (queue, dead_letter) =
        SqsQueue::create_with_dead_letter(client, &common::unique_name("jobs"), &settings())
            .await
            .expect("queues created");
    Fixture {
        queue: Box::new(queue),
        dead_letter: Box::new(dead_letter),
        _dir: None,
        _moto: Some(moto),
    }
}

/// Runs each behaviour against both queues.
macro_rules! contract {
    ($($behaviour:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let fixture = super::embedded_queue().await;
                    super::$behaviour(&*fixture.queue, &*fixture.dead_letter).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let fixture = super::sqs_queue().await;
                    super::$behaviour(&*fixture.queue, &*fixture.dead_letter).await;
                }
            )*
        }
    };
}

contract!(
    send_receive_delete,
    received_message_is_invisible_until_its_timeout_then_returns_with_count_two,
    change_visibility_zero_returns_the_message_at_once,
    delete_with_a_stale_receipt_never_resurrects_the_message,
    change_visibility_after_delete_is_an_invalid_receipt,
    long_poll_returns_promptly_when_a_message_arrives,
    message_goes_to_dead_letter_after_max_receives,
    depth_counts_visible_and_in_flight,
    batch_holds_at_most_ten_messages,
    dead_letter_moves_the_message_at_once,
    dead_letter_without_a_dead_letter_queue_leaves_the_message,
    dead_letter_of_a_deleted_message_is_an_invalid_receipt,
);

async fn receive_one(queue: &dyn Queue) -> cloud::Message {
    let mut messages = queue.receive(1, PATIENCE).await.unwrap();
    assert_eq!(
        messages.len(),
        1,
        "expected one message within {PATIENCE:?}"
    );
    messages.remove(0)
}

async fn assert_empty_now(queue: &dyn Queue) {
    let messages = queue.receive(10, Duration::ZERO).await.unwrap();
    assert!(
        messages.is_empty(),
        "expected no visible message, got {messages:?}"
    );
}

async fn send_receive_delete(queue: &dyn Queue, _dead_letter: &dyn Queue) {
    let id = queue.send("{\"job\":1}").await.unwrap();
    assert!(!id.is_empty());

    let message = receive_one(queue).await;
    assert_eq!(message.id, id);
    assert_eq!(message.body, "{\"job\":1}");
    assert_eq!(message.receive_count, 1);
    assert!(!message.receipt.is_empty());

    queue.delete(&message.receipt).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 0,
            delayed: 0
        }
    );
    // Not even after the visibility timeout.
    let later = queue
        .receive(10, VISIBILITY + Duration::from_secs(1))
        .await
        .unwrap();
    assert!(later.is_empty(), "deleted message came back: {later:?}");
}

async fn received_message_is_invisible_until_its_timeout_then_returns_with_count_two(
    queue: &dyn Queue,
    _dead_letter: &dyn Queue,
) {
    let id = queue.send("work").await.unwrap();
    let first = receive_one(queue).await;
    let received_at = Instant::now();
    assert_eq!(first.receive_count, 1);

    assert_empty_now(queue).await;
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 0
        }
    );

    let again = receive_one(queue).await;
    assert_eq!(again.id, id);
    assert_eq!(again.receive_count, 2);
    assert_ne!(
        again.receipt, first.receipt,
        "every receive hands out a new receipt"
    );
    // Generous: SQS rounds to whole seconds, so it cannot come back much before 1 s.
    assert!(
        received_at.elapsed() >= Duration::from_millis(900),
        "came back after {:?}",
        received_at.elapsed()
    );
}

async fn change_visibility_zero_returns_the_message_at_once(
    queue: &dyn Queue,
    _dead_letter: &dyn Queue,
) {
    let id = queue.send("retry me").await.unwrap();
    let first = receive_one(queue).await;
    queue
        .change_visibility(&first.receipt, Duration::ZERO)
        .await
        .unwrap();

    // A wait shorter than the 2 s visibility timeout: only the change can make it visible.
    let messages = queue.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(messages.len(), 1, "message not handed back at once");
    assert_eq!(messages[0].id, id);
    assert_eq!(messages[0].receive_count, 2);
}

/// SQS accepts a delete with an outdated receipt (moto deletes the message; SQS says it
/// "might not"), the embedded queue refuses it with `InvalidReceipt`. What both guarantee:
/// no other error, and once the latest receipt is used the message is gone for good.
async fn delete_with_a_stale_receipt_never_resurrects_the_message(
    queue: &dyn Queue,
    _dead_letter: &dyn Queue,
) {
    queue.send("twice").await.unwrap();
    let first = receive_one(queue).await;
    queue
        .change_visibility(&first.receipt, Duration::ZERO)
        .await
        .unwrap();
    let second = receive_one(queue).await;
    assert_eq!(second.id, first.id);

    match queue.delete(&first.receipt).await {
        Ok(()) | Err(QueueError::InvalidReceipt(_)) => {}
        Err(other) => panic!("stale receipt gave {other}"),
    }
    queue
        .delete(&second.receipt)
        .await
        .expect("the latest receipt deletes");
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 0,
            delayed: 0
        }
    );
    let later = queue
        .receive(10, VISIBILITY + Duration::from_secs(1))
        .await
        .unwrap();
    assert!(later.is_empty(), "deleted message came back: {later:?}");
}

async fn change_visibility_after_delete_is_an_invalid_receipt(
    queue: &dyn Queue,
    _dead_letter: &dyn Queue,
) {
    queue.send("done").await.unwrap();
    let message = receive_one(queue).await;
    queue.delete(&message.receipt).await.unwrap();
    let err = queue
        .change_visibility(&message.receipt, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::InvalidReceipt(ref receipt) if *receipt == message.receipt),
        "{err}"
    );
}

async fn long_poll_returns_promptly_when_a_message_arrives(
    queue: &dyn Queue,
    _dead_letter: &dyn Queue,
) {
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let (received, sent) = tokio::join!(queue.receive(1, wait), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        queue.send("arrived while waiting").await.unwrap()
    });
    let received = received.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].id, sent);
    // Far below the 20 s wait: the poll ended because the message came, not the time.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "long poll took {:?}",
        started.elapsed()
    );
}

async fn message_goes_to_dead_letter_after_max_receives(
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
) {
    let id = queue.send("poison").await.unwrap();
    for attempt in 1..=MAX_RECEIVES {
        let message = receive_one(queue).await;
        assert_eq!(
            (message.id.as_str(), message.receive_count),
            (id.as_str(), attempt)
        );
        queue
            .change_visibility(&message.receipt, Duration::ZERO)
            .await
            .unwrap();
    }

    let after_limit = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert!(
        after_limit.is_empty(),
        "delivered beyond maxReceiveCount: {after_limit:?}"
    );
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 0,
            delayed: 0
        }
    );

    let dead = receive_one(dead_letter).await;
    assert_eq!(dead.body, "poison");
    assert_eq!(dead.id, id);
}

async fn depth_counts_visible_and_in_flight(queue: &dyn Queue, _dead_letter: &dyn Queue) {
    assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
    for n in 0..3 {
        queue.send(&format!("job {n}")).await.unwrap();
    }
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 3,
            in_flight: 0,
            delayed: 0
        }
    );
    let message = receive_one(queue).await;
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 2,
            in_flight: 1,
            delayed: 0
        }
    );
    queue.delete(&message.receipt).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 2,
            in_flight: 0,
            delayed: 0
        }
    );
}

async fn batch_holds_at_most_ten_messages(queue: &dyn Queue, _dead_letter: &dyn Queue) {
    let mut sent = BTreeSet::new();
    for n in 0..12 {
        sent.insert(queue.send(&format!("job {n}")).await.unwrap());
    }
    let mut received = BTreeSet::new();
    // SQS may hand out fewer than asked for; keep asking until all came.
    for _ in 0..12 {
        let batch = queue.receive(50, PATIENCE).await.unwrap();
        assert!((1..=10).contains(&batch.len()), "batch of {}", batch.len());
        received.extend(batch.into_iter().map(|message| message.id));
        if received.len() == sent.len() {
            break;
        }
    }
    assert_eq!(received, sent);
}

async fn dead_letter_moves_the_message_at_once(queue: &dyn Queue, dead_letter: &dyn Queue) {
    queue.send("keep me").await.unwrap();
    queue.send("{\"job\":\"poison\"}").await.unwrap();
    let keep = receive_one(queue).await;
    let poison = receive_one(queue).await;
    assert_eq!(poison.body, "{\"job\":\"poison\"}");
    assert_eq!(poison.receive_count, 1, "moved long before max receives");

    let moved = queue
        .dead_letter(&poison.receipt, &poison.body, "no video track")
        .await
        .unwrap();
    assert!(moved, "the queue has a dead-letter queue");

    let dead = receive_one(dead_letter).await;
    assert_eq!(dead.body, poison.body);
    // Only the other message is left, still in flight.
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 0
        }
    );
    queue.delete(&keep.receipt).await.unwrap();
    let later = queue
        .receive(10, VISIBILITY + Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        later.is_empty(),
        "dead-lettered message came back: {later:?}"
    );
}

/// A dead-letter queue has no dead-letter queue of its own.
async fn dead_letter_without_a_dead_letter_queue_leaves_the_message(
    _queue: &dyn Queue,
    dead_letter: &dyn Queue,
) {
    let id = dead_letter.send("stuck").await.unwrap();
    let message = receive_one(dead_letter).await;
    let moved = dead_letter
        .dead_letter(&message.receipt, &message.body, "no video track")
        .await
        .unwrap();
    assert!(
        !moved,
        "a queue without a dead-letter queue reported a move"
    );

    // Untouched: still in flight under the same receipt (SQS's dead-letter queue keeps the
    // default 30 s visibility timeout, so shorten it), then back with the next receive.
    assert_empty_now(dead_letter).await;
    dead_letter
        .change_visibility(&message.receipt, Duration::from_secs(1))
        .await
        .expect("the receipt is still the message's latest");
    let again = receive_one(dead_letter).await;
    assert_eq!(
        (again.id.as_str(), again.body.as_str(), again.receive_count),
        (id.as_str(), "stuck", 2)
    );
}

async fn dead_letter_of_a_deleted_message_is_an_invalid_receipt(
    queue: &dyn Queue,
    dead_letter: &dyn Queue,
) {
    queue.send("handled").await.unwrap();
    let message = receive_one(queue).await;
    queue.delete(&message.receipt).await.unwrap();
    for receipt in [message.receipt.as_str(), "not-a-receipt"] {
        let err = queue
            .dead_letter(receipt, &message.body, "bad input")
            .await
            .unwrap_err();
        assert!(
            matches!(err, QueueError::InvalidReceipt(ref r) if r == receipt),
            "{receipt:?}: {err}"
        );
    }
    assert_eq!(dead_letter.depth().await.unwrap(), QueueDepth::default());
}

/// Embedded only: the queue is durable and strict.
mod embedded_only {
    use super::*;

    #[tokio::test]
    async fn reopened_queue_keeps_messages_counts_and_in_flight_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs");
        let (first_id, second_id) = {
            let queue = EmbeddedQueue::open(&path, settings()).unwrap();
            let first_id = queue.send("first").await.unwrap();
            let second_id = queue.send("second").await.unwrap();
            let taken = receive_one(&queue).await;
            assert_eq!(taken.id, first_id);
            (first_id, second_id)
        };

        let queue = EmbeddedQueue::open(&path, settings()).unwrap();
        assert_eq!(
            queue.depth().await.unwrap(),
            QueueDepth {
                visible: 1,
                in_flight: 1,
                delayed: 0
            }
        );
        let second = receive_one(&queue).await;
        assert_eq!(
            (
                second.id.as_str(),
                second.body.as_str(),
                second.receive_count
            ),
            (second_id.as_str(), "second", 1)
        );
        // The message in flight at the restart comes back after its timeout, counted.
        let first = receive_one(&queue).await;
        assert_eq!(
            (first.id.as_str(), first.body.as_str(), first.receive_count),
            (first_id.as_str(), "first", 2)
        );
    }

    #[tokio::test]
    async fn dead_letter_queue_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs");
        {
            let queue = EmbeddedQueue::open(&path, settings()).unwrap();
            queue.send("poison").await.unwrap();
            for _ in 0..MAX_RECEIVES {
                let message = receive_one(&queue).await;
                queue
                    .change_visibility(&message.receipt, Duration::ZERO)
                    .await
                    .unwrap();
            }
            assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        }
        let queue = EmbeddedQueue::open(&path, settings()).unwrap();
        assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
        let dead = receive_one(&queue.dead_letter().unwrap()).await;
        assert_eq!(dead.body, "poison");
    }

    #[tokio::test]
    async fn corrupt_message_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs");
        {
            let queue = EmbeddedQueue::open(&path, settings()).unwrap();
            queue.send("good").await.unwrap();
        }
        std::fs::write(
            path.join("messages/broken.json"),
            b"{\"id\": \"broken\", \"bo",
        )
        .unwrap();

        let queue =
            EmbeddedQueue::open(&path, settings()).expect("a corrupt file does not stop the queue");
        assert_eq!(
            queue.depth().await.unwrap(),
            QueueDepth {
                visible: 1,
                in_flight: 0,
                delayed: 0
            }
        );
        assert_eq!(receive_one(&queue).await.body, "good");
        assert!(!path.join("messages/broken.json").exists());
        let aside: Vec<String> = std::fs::read_dir(path.join("corrupt"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("broken.json"), "{aside:?}");
    }

    #[tokio::test]
    async fn stale_receipt_is_refused_and_the_message_kept() {
        let fixture = embedded_queue().await;
        let queue = &*fixture.queue;
        queue.send("twice").await.unwrap();
        let first = receive_one(queue).await;
        queue
            .change_visibility(&first.receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = receive_one(queue).await;

        let err = queue.delete(&first.receipt).await.unwrap_err();
        assert!(matches!(err, QueueError::InvalidReceipt(_)), "{err}");
        let err = queue
            .change_visibility(&first.receipt, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::InvalidReceipt(_)), "{err}");
        assert_eq!(
            queue.depth().await.unwrap(),
            QueueDepth {
                visible: 0,
                in_flight: 1,
                delayed: 0
            }
        );
        queue.delete(&second.receipt).await.unwrap();
    }

    #[tokio::test]
    async fn dead_lettered_message_keeps_its_id_and_count_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs");
        let id = {
            let queue = EmbeddedQueue::open(&path, settings()).unwrap();
            let id = queue.send("poison").await.unwrap();
            let message = receive_one(&queue).await;
            assert!(
                Queue::dead_letter(&queue, &message.receipt, &message.body, "bad input")
                    .await
                    .unwrap()
            );
            id
        };
        let queue = EmbeddedQueue::open(&path, settings()).unwrap();
        assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
        let dead = receive_one(&queue.dead_letter().unwrap()).await;
        assert_eq!(
            (dead.id.as_str(), dead.body.as_str(), dead.receive_count),
            (id.as_str(), "poison", 2)
        );
    }

    #[tokio::test]
    async fn dead_letter_with_a_stale_receipt_is_refused() {
        let fixture = embedded_queue().await;
        let queue = &*fixture.queue;
        queue.send("twice").await.unwrap();
        let first = receive_one(queue).await;
        queue
            .change_visibility(&first.receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = receive_one(queue).await;

        for receipt in [first.receipt.as_str(), "unknown-id:nonce"] {
            let err = queue
                .dead_letter(receipt, "twice", "bad input")
                .await
                .unwrap_err();
            assert!(
                matches!(err, QueueError::InvalidReceipt(ref r) if r == receipt),
                "{receipt:?}: {err}"
            );
        }
        assert_eq!(
            fixture.dead_letter.depth().await.unwrap(),
            QueueDepth::default()
        );
        assert!(
            queue
                .dead_letter(&second.receipt, "twice", "bad input")
                .await
                .unwrap(),
            "the latest receipt still moves the message"
        );
    }

    #[tokio::test]
    async fn garbage_receipt_is_invalid() {
        let fixture = embedded_queue().await;
        for receipt in ["", "no-separator", ":", "unknown-id:nonce"] {
            let err = fixture
                .queue
                .change_visibility(receipt, Duration::ZERO)
                .await
                .unwrap_err();
            assert!(
                matches!(err, QueueError::InvalidReceipt(_)),
                "{receipt:?}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn messages_are_delivered_in_send_order() {
        let fixture = embedded_queue().await;
        for n in 0..5 {
            fixture.queue.send(&format!("job {n}")).await.unwrap();
        }
        let bodies: Vec<String> = fixture
            .queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, ["job 0", "job 1", "job 2", "job 3", "job 4"]);
    }

    #[tokio::test]
    async fn opening_an_open_folder_shares_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let producer = EmbeddedQueue::open(dir.path(), settings()).unwrap();
        let consumer = EmbeddedQueue::open(dir.path(), settings()).unwrap();
        producer.send("shared").await.unwrap();
        assert_eq!(receive_one(&consumer).await.body, "shared");
        assert_eq!(
            producer.depth().await.unwrap(),
            QueueDepth {
                visible: 0,
                in_flight: 1,
                delayed: 0
            }
        );

        let other = QueueSettings {
            visibility_timeout: Duration::from_secs(60),
            ..settings()
        };
        let err = EmbeddedQueue::open(dir.path(), other).unwrap_err();
        assert!(matches!(err, QueueError::Rejected { .. }), "{err}");
    }

    #[tokio::test]
    async fn zero_max_receive_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = EmbeddedQueue::open(
            dir.path(),
            QueueSettings {
                max_receive_count: 0,
                ..settings()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_receive_count"), "{err}");
    }

    #[tokio::test]
    async fn queue_is_shared_safely_across_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(dir.path().join("q"), settings()).unwrap();
        let mut sent = BTreeSet::new();
        for n in 0..20 {
            sent.insert(queue.send(&format!("job {n}")).await.unwrap());
        }
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let queue = queue.clone();
            workers.spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let batch = queue.receive(3, Duration::from_millis(200)).await.unwrap();
                    if batch.is_empty() {
                        return taken;
                    }
                    for message in batch {
                        queue.delete(&message.receipt).await.unwrap();
                        taken.push(message.id);
                    }
                }
            });
        }
        let mut received = Vec::new();
        while let Some(taken) = workers.join_next().await {
            received.extend(taken.unwrap());
        }
        assert_eq!(
            received.len(),
            sent.len(),
            "a message was delivered twice or lost"
        );
        assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), sent);
    }
}

/// SQS only: what the service does that the embedded queue does differently.
mod sqs_only {
    use super::*;

    #[tokio::test]
    async fn stale_receipt_delete_is_accepted() {
        let fixture = sqs_queue().await;
        let queue = &*fixture.queue;
        queue.send("twice").await.unwrap();
        let first = receive_one(queue).await;
        queue
            .change_visibility(&first.receipt, Duration::ZERO)
            .await
            .unwrap();
        receive_one(queue).await;
        queue
            .delete(&first.receipt)
            .await
            .expect("SQS accepts an outdated receipt");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_transient_error() {
        let closed = format!("http://127.0.0.1:{}", testkit::net::free_port());
        let client = cloud::aws::sqs_client(&common::aws_config(&closed).await);
        let queue = SqsQueue::new(client, format!("{closed}/123456789012/jobs"));
        let err = queue.send("x").await.unwrap_err();
        assert!(
            matches!(
                err,
                QueueError::Unreachable {
                    op: "SendMessage",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn dead_lettered_copy_carries_the_reason_cut_to_256_characters() {
        let fixture = sqs_queue().await;
        let moto = fixture._moto.as_ref().unwrap();
        let client = cloud::aws::sqs_client(&common::aws_config(&moto.endpoint).await);
        let name = common::unique_name("reasons");
        let (queue, dead_letter) =
            SqsQueue::create_with_dead_letter(client.clone(), &name, &settings())
                .await
                .unwrap();
        let reason = format!("decoder said: {}", "x".repeat(300));
        for n in 0..2 {
            queue.send(&format!("job {n}")).await.unwrap();
            let message = receive_one(&queue).await;
            // The second call uses the dead-letter queue URL looked up by the first.
            assert!(
                queue
                    .dead_letter(&message.receipt, &message.body, &reason)
                    .await
                    .unwrap()
            );
        }

        let mut reasons = Vec::new();
        while reasons.len() < 2 {
            let out = client
                .receive_message()
                .queue_url(dead_letter.url())
                .max_number_of_messages(10)
                .wait_time_seconds(5)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            assert!(!messages.is_empty(), "dead-lettered copies not received");
            for message in messages {
                let attribute = message
                    .message_attributes
                    .as_ref()
                    .and_then(|attributes| attributes.get(SqsQueue::REASON_ATTRIBUTE))
                    .unwrap_or_else(|| panic!("no reason attribute on {message:?}"));
                assert_eq!(attribute.data_type(), "String");
                reasons.push(attribute.string_value().unwrap_or_default().to_owned());
            }
        }
        let expected: String = reason.chars().take(SqsQueue::MAX_REASON_CHARS).collect();
        assert_eq!(reasons, [expected.clone(), expected]);
    }

    #[tokio::test]
    async fn queue_is_found_by_name() {
        let fixture = sqs_queue().await;
        let moto = fixture._moto.as_ref().unwrap();
        let client = cloud::aws::sqs_client(&common::aws_config(&moto.endpoint).await);
        let name = common::unique_name("named");
        let (created, _) = SqsQueue::create_with_dead_letter(client.clone(), &name, &settings())
            .await
            .unwrap();
        let found = SqsQueue::from_name(client.clone(), &name).await.unwrap();
        assert_eq!(found.url(), created.url());
        let err = SqsQueue::from_name(client, "no-such-queue")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-queue"), "{err}");
    }
}
