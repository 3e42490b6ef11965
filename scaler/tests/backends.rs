//! The scaler against moto server: both fleet backends (EC2 Spot Fleet, Auto Scaling group),
//! queue counters from GetQueueAttributes, the history kept in a file or in S3 between runs
//! that share nothing else (as cron runs and Lambda invocations do), the Lambda handler on a
//! sample EventBridge event, and the faults that must change nothing.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_ec2::types::{
    AllocationStrategy, FleetType, InstanceStateName, InstanceType, SpotFleetLaunchSpecification,
    SpotFleetMonitoring, SpotFleetRequestConfigData,
};
use cloud::SqsQueue;
use lambda_runtime::{Context, LambdaEvent};
use scaler::fleet::{AutoScalingGroup, Fleet, FleetError, SpotFleet};
use scaler::lambda::LambdaSettings;
use scaler::runner::{Scaler, ScalerError};
use scaler::state::StateStore;
use scaler::{History, PolicyConfig};
use testkit::moto::MotoServer;

/// Seconds since the epoch for the first run; later runs add to it.
const T0: u64 = 1_800_000_000;

struct Aws {
    moto: MotoServer,
    sdk: SdkConfig,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
}

async fn aws() -> Aws {
    let moto = MotoServer::start().expect("moto server starts");
    let sdk = cloud::aws::sdk_config_with_credentials(
        Some(&moto.endpoint),
        Some("us-east-1"),
        cloud::aws::static_credentials("test", "test"),
    )
    .await;
    Aws {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        asg: aws_sdk_autoscaling::Client::new(&sdk),
        sqs: cloud::aws::sqs_client(&sdk),
        s3: cloud::aws::s3_client(&sdk, true),
        sdk,
        moto,
    }
}

impl Aws {
    /// A new queue holding `messages` visible messages.
    async fn queue(&self, name: &str, messages: usize) -> String {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        for i in 0..messages {
            self.sqs
                .send_message()
                .queue_url(&url)
                .message_body(format!("recording {i}"))
                .send()
                .await
                .unwrap();
        }
        url
    }

    /// Receives and deletes everything: the jobs are done.
    async fn drain(&self, url: &str) {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return;
            }
            for m in messages {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn image(&self) -> String {
        let images = self.ec2.describe_images().send().await.unwrap();
        images.images()[0].image_id().unwrap().to_owned()
    }

    /// A `maintain` Spot Fleet request with `target` instances.
    async fn spot_fleet(&self, target: i32) -> String {
        // moto 5.1 echoes unset EbsOptimized/Monitoring as `None`, which no client parses
        // as a boolean: set both.
        let spec = SpotFleetLaunchSpecification::builder()
            .image_id(self.image().await)
            .instance_type(InstanceType::T3Micro)
            .ebs_optimized(false)
            .monitoring(SpotFleetMonitoring::builder().enabled(false).build())
            .build();
        let config = SpotFleetRequestConfigData::builder()
            .iam_fleet_role("arn:aws:iam::123456789012:role/spherecast-fleet")
            .target_capacity(target)
            .allocation_strategy(AllocationStrategy::LowestPrice)
            .r#type(FleetType::Maintain)
            .launch_specifications(spec)
            .build();
        self.ec2
            .request_spot_fleet()
            .spot_fleet_request_config(config)
            .send()
            .await
            .unwrap()
            .spot_fleet_request_id
            .unwrap()
    }

    /// (target, fulfilled) as EC2 reports them.
    async fn spot_fleet_size(&self, id: &str) -> (i32, f64) {
        let out = self
            .ec2
            .describe_spot_fleet_requests()
            .spot_fleet_request_ids(id)
            .send()
            .await
            .unwrap();
        let config = out.spot_fleet_request_configs()[0]
            .spot_fleet_request_config()
            .unwrap();
        (
            config.target_capacity().unwrap(),
            config.fulfilled_capacity().unwrap(),
        )
    }

    async fn running_instances(&self) -> usize {
        let out = self.ec2.describe_instances().send().await.unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running))
            .count()
    }

    /// An Auto Scaling group of `desired` instances, at most `max`.
    async fn group(&self, name: &str, desired: i32, max: i32) {
        self.asg
            .create_launch_configuration()
            .launch_configuration_name(name)
            .image_id(self.image().await)
            .instance_type("t3.micro")
            .send()
            .await
            .unwrap();
        self.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(name)
            .min_size(0)
            .max_size(max)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .send()
            .await
            .unwrap();
    }

    async fn group_instances(&self, name: &str) -> (i32, Vec<String>) {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .unwrap();
        let group = &out.auto_scaling_groups()[0];
        (
            group.desired_capacity().unwrap(),
            group
                .instances()
                .iter()
                .map(|i| i.instance_id().unwrap().to_owned())
                .collect(),
        )
    }

    /// A scaler as a cron run builds it: nothing but the state file carries over.
    fn scaler(&self, queue: &str, fleet: Box<dyn Fleet>, state: &std::path::Path) -> Scaler {
        Scaler::new(
            PolicyConfig::default(),
            Arc::new(SqsQueue::new(self.sqs.clone(), queue)),
            fleet,
            StateStore::File(state.to_owned()),
        )
    }

    fn spot(&self, id: &str) -> Box<dyn Fleet> {
        Box::new(SpotFleet::new(self.ec2.clone(), id))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_fleet_scales_out_at_once_and_in_after_the_window_without_terminating() {
    let aws = aws().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let queue = aws.queue("spot-jobs", 3).await;
    let fleet = aws.spot_fleet(1).await;
    assert_eq!(aws.spot_fleet_size(&fleet).await, (1, 1.0));

    let report = aws
        .scaler(&queue, aws.spot(&fleet), &state)
        .run_once(T0, false)
        .await
        .unwrap();
    assert_eq!(
        (report.visible, report.target, report.desired),
        (3, 1, 3),
        "{report}"
    );
    assert!(
        report.changed && report.reason.contains("scale out at once"),
        "{report}"
    );
    assert_eq!(aws.spot_fleet_size(&fleet).await, (3, 3.0));

    // The jobs finish. Runs every minute (as cron would) hold while the window still holds
    // the 3; the run at 300 s, when it has left the window, goes down to 0.
    aws.drain(&queue).await;
    for t in [60, 120, 180, 240] {
        let report = aws
            .scaler(&queue, aws.spot(&fleet), &state)
            .run_once(T0 + t, false)
            .await
            .unwrap();
        assert_eq!(
            (report.visible, report.desired, report.changed),
            (0, 3, false),
            "{report}"
        );
        assert!(report.reason.contains("window"), "{report}");
    }
    // With noTermination, so the instances are not killed (moto terminates the excess when
    // the policy is left at its default).
    let report = aws
        .scaler(&queue, aws.spot(&fleet), &state)
        .run_once(T0 + 300, false)
        .await
        .unwrap();
    assert_eq!((report.desired, report.changed), (0, true), "{report}");
    assert_eq!(aws.spot_fleet_size(&fleet).await, (0, 3.0));
    assert_eq!(aws.running_instances().await, 3);
    let kept: History = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(kept.last_change, Some(T0 + 300));
    assert_eq!(kept.since, Some(T0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_neither_the_fleet_nor_the_state() {
    let aws = aws().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let queue = aws.queue("dry-jobs", 2).await;
    let fleet = aws.spot_fleet(0).await;
    let report = aws
        .scaler(&queue, aws.spot(&fleet), &state)
        .run_once(T0, true)
        .await
        .unwrap();
    assert_eq!(
        (report.desired, report.changed, report.dry_run),
        (2, false, true)
    );
    assert!(report.to_string().contains("would set 2"), "{report}");
    assert_eq!(aws.spot_fleet_size(&fleet).await.0, 0);
    assert!(!state.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_scaling_group_keeps_its_busy_workers_and_its_own_limits() {
    let aws = aws().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let queue = aws.queue("asg-jobs", 5).await;
    aws.group("workers", 2, 3).await;
    let (_, instances) = aws.group_instances("workers").await;
    assert_eq!(instances.len(), 2);
    // One worker is running a job and has protected itself from scale-in.
    aws.asg
        .set_instance_protection()
        .auto_scaling_group_name("workers")
        .instance_ids(&instances[0])
        .protected_from_scale_in(true)
        .send()
        .await
        .unwrap();
    let group = || Box::new(AutoScalingGroup::new(aws.asg.clone(), "workers")) as Box<dyn Fleet>;

    // 5 messages want 5 instances; the group's MaxSize is 3.
    let report = aws
        .scaler(&queue, group(), &state)
        .run_once(T0, false)
        .await
        .unwrap();
    assert_eq!((report.busy, report.desired), (Some(1), 3), "{report}");
    assert!(
        report.reason.contains("within the fleet's own limits"),
        "{report}"
    );
    assert_eq!(aws.group_instances("workers").await.0, 3);

    // Drained: after the window, down to the one busy worker, not to 0.
    aws.drain(&queue).await;
    for t in [60, 120, 180, 240] {
        let report = aws
            .scaler(&queue, group(), &state)
            .run_once(T0 + t, false)
            .await
            .unwrap();
        assert_eq!(report.desired, 3, "{report}");
    }
    let report = aws
        .scaler(&queue, group(), &state)
        .run_once(T0 + 300, false)
        .await
        .unwrap();
    assert_eq!(report.desired, 1, "{report}");
    assert!(report.reason.contains("1 busy"), "{report}");
    assert_eq!(aws.group_instances("workers").await.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_change_nothing_and_say_what_is_wrong() {
    let aws = aws().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let queue = aws.queue("fault-jobs", 4).await;
    let fleet = aws.spot_fleet(1).await;

    // A fleet that does not exist.
    let missing = "sfr-00000000-0000-4000-8000-000000000000";
    let err = aws
        .scaler(&queue, aws.spot(missing), &state)
        .run_once(T0, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ScalerError::Fleet(FleetError::NotFound { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(missing), "{err}");

    // A cancelled request (instances left running) must not be driven.
    let cancelled = aws.spot_fleet(1).await;
    aws.ec2
        .cancel_spot_fleet_requests()
        .spot_fleet_request_ids(&cancelled)
        .terminate_instances(false)
        .send()
        .await
        .unwrap();
    let err = aws
        .scaler(&queue, aws.spot(&cancelled), &state)
        .run_once(T0, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not active"), "{err}");

    // A queue endpoint that does not answer.
    let dead = cloud::aws::sdk_config_with_credentials(
        Some(&format!("http://{}", testkit::net::free_addrs(1)[0])),
        Some("us-east-1"),
        cloud::aws::static_credentials("test", "test"),
    )
    .await;
    let unreachable = Scaler::new(
        PolicyConfig::default(),
        Arc::new(SqsQueue::new(cloud::aws::sqs_client(&dead), &queue)),
        aws.spot(&fleet),
        StateStore::File(state.clone()),
    );
    let err = unreachable.run_once(T0, false).await.unwrap_err();
    assert!(matches!(err, ScalerError::Queue(_)), "{err}");

    // None of it touched the fleet or wrote a state.
    assert_eq!(aws.spot_fleet_size(&fleet).await.0, 1);
    assert!(!state.exists());
    drop(aws.moto);
}

fn scheduled_event(time: &str) -> LambdaEvent<EventBridgeEvent> {
    let text = include_str!("fixtures/scheduled-event.json").replace("2026-11-21T08:00:00Z", time);
    LambdaEvent::new(serde_json::from_str(&text).unwrap(), Context::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_handler_runs_on_a_scheduled_event_with_its_state_in_s3() {
    let aws = aws().await;
    let queue = aws.queue("lambda-jobs", 2).await;
    let fleet = aws.spot_fleet(0).await;
    aws.s3.create_bucket().bucket("ops").send().await.unwrap();
    let document = format!(
        "[queue]\nurl = \"{queue}\"\n[aws]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
         [scaler]\nbackend = \"spot-fleet\"\nfleet = \"{fleet}\"\nstate = \"s3://ops/scaler/state.json\"\n\
         [worker]\nconcurrency = 2\n",
        aws.moto.endpoint
    );
    let settings = LambdaSettings::parse(&document).unwrap();
    // The Lambda builds its scaler once per container; each invocation only reads S3.
    let scaler = Scaler::from_config(
        &settings.scaler,
        &settings.queue.url,
        &aws.sdk,
        std::path::Path::new("/nonexistent/unused.json"),
    )
    .unwrap();

    let first = scaler::lambda::handle(&scaler, scheduled_event("2026-11-21T08:00:00Z"))
        .await
        .unwrap();
    assert_eq!((first.desired, first.changed), (2, true), "{first}");
    assert_eq!(aws.spot_fleet_size(&fleet).await.0, 2);
    let object = aws
        .s3
        .get_object()
        .bucket("ops")
        .key("scaler/state.json")
        .send()
        .await
        .expect("the state object was written");
    let kept: History =
        serde_json::from_slice(&object.body.collect().await.unwrap().to_vec()).unwrap();
    let event_time = 1_795_248_000; // 2026-11-21T08:00:00Z
    assert_eq!(kept.since, Some(event_time));
    assert_eq!(kept.recommendations, vec![(event_time, 2)]);

    // The queue empties; invocations every minute hold, and the one at 08:05 has seen a
    // whole window (kept in S3, nowhere else) without work: in to 0.
    aws.drain(&queue).await;
    for minute in 1..=4 {
        let held = scaler::lambda::handle(
            &scaler,
            scheduled_event(&format!("2026-11-21T08:0{minute}:00Z")),
        )
        .await
        .unwrap();
        assert_eq!(held.desired, 2, "{held}");
    }
    let later = scaler::lambda::handle(&scaler, scheduled_event("2026-11-21T08:05:00Z"))
        .await
        .unwrap();
    assert_eq!((later.desired, later.changed), (0, true), "{later}");

    // Without the state object (lost, or a new deployment) the same situation holds.
    aws.ec2
        .modify_spot_fleet_request()
        .spot_fleet_request_id(&fleet)
        .target_capacity(2)
        .send()
        .await
        .unwrap();
    aws.s3
        .delete_object()
        .bucket("ops")
        .key("scaler/state.json")
        .send()
        .await
        .unwrap();
    let fresh = scaler::lambda::handle(&scaler, scheduled_event("2026-11-21T08:06:00Z"))
        .await
        .unwrap();
    assert_eq!((fresh.desired, fresh.changed), (2, false), "{fresh}");
}

#[test]
fn a_lambda_refuses_a_state_that_would_not_outlive_the_invocation() {
    let document =
        "[queue]\nurl = \"https://sqs/q\"\n[scaler]\nbackend = \"spot-fleet\"\nfleet = \"sfr-1\"\n";
    let err = LambdaSettings::parse(document).unwrap_err().to_string();
    assert!(err.contains("scaler.state must be s3://"), "{err}");
    let err = LambdaSettings::parse(
        "[queue]\nurl = \"q\"\n[scaler]\nbackend = \"spot-fleet\"\nstate = \"s3://b/k\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("scaler.fleet"), "{err}");
    let err = LambdaSettings::parse("[scaler]\nfleet = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("queue"), "{err}");
}
