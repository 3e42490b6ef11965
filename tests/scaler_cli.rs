//! `spherecast scaler` as cron runs it: `--once` and `--dry-run` against moto server, the exit
//! status when the queue cannot be read, and configuration errors named at start.

use std::path::Path;
use std::process::{Command, Output};

use testkit::moto::MotoServer;

/// `spherecast scaler ARGS --config CONFIG` with moto's credentials; waits for the exit.
fn scaler(config: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(testkit::up::binary())
        .arg("scaler")
        .args(["--config", config.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("SPHERECAST_QUEUE_URL")
        .output()
        .expect("spherecast runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A queue with `messages` messages and a Spot Fleet request of target 0, on moto.
fn world(moto: &MotoServer, messages: usize) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sdk = cloud::aws::sdk_config_with_credentials(
            Some(&moto.endpoint),
            Some("us-east-1"),
            cloud::aws::static_credentials("test", "test"),
        )
        .await;
        let sqs = cloud::aws::sqs_client(&sdk);
        let url = sqs
            .create_queue()
            .queue_name("cron-jobs")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        for i in 0..messages {
            sqs.send_message()
                .queue_url(&url)
                .message_body(format!("job {i}"))
                .send()
                .await
                .unwrap();
        }
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        use aws_sdk_ec2::types::*;
        let spec = SpotFleetLaunchSpecification::builder()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::T3Micro)
            .ebs_optimized(false)
            .monitoring(SpotFleetMonitoring::builder().enabled(false).build())
            .build();
        let fleet = ec2
            .request_spot_fleet()
            .spot_fleet_request_config(
                SpotFleetRequestConfigData::builder()
                    .iam_fleet_role("arn:aws:iam::123456789012:role/fleet")
                    .target_capacity(0)
                    .allocation_strategy(AllocationStrategy::LowestPrice)
                    .r#type(FleetType::Maintain)
                    .launch_specifications(spec)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .spot_fleet_request_id
            .unwrap();
        (url, fleet)
    })
}

fn write_config(
    dir: &Path,
    endpoint: &str,
    queue: &str,
    fleet: &str,
    policy: &str,
) -> std::path::PathBuf {
    let path = dir.join("spherecast.toml");
    std::fs::write(
        &path,
        format!(
            "[aws]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n[queue]\nurl = \"{queue}\"\n\
             [scaler]\nbackend = \"spot-fleet\"\nfleet = \"{fleet}\"\n[scaler.policy]\n{policy}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn once_and_dry_run_print_the_decision_and_only_once_applies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = MotoServer::start().expect("moto server starts");
    let (queue, fleet) = world(&moto, 3);
    let config = write_config(tmp.path(), &moto.endpoint, &queue, &fleet, "max = 2");
    let data = tmp.path().join("data");

    let dry = scaler(&config, &data, &["--once", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        out.contains("3 visible") && out.contains("would set 2"),
        "{}",
        text(&dry)
    );
    assert!(out.contains("clamped to 0..=2"), "{}", text(&dry));
    assert!(
        !data.join("scaler/state.json").exists(),
        "a dry run keeps no state"
    );

    let real = scaler(&config, &data, &["--once"]);
    assert!(real.status.success(), "{}", text(&real));
    let out = String::from_utf8_lossy(&real.stdout);
    assert!(out.contains(": set 2"), "{}", text(&real));
    let state = std::fs::read_to_string(data.join("scaler/state.json")).unwrap();
    assert!(state.contains("recommendations"), "{state}");

    // The next cron run sees the new target and keeps it.
    let again = scaler(&config, &data, &["--once"]);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains("target 2") && out.contains("keep 2"),
        "{}",
        text(&again)
    );
}

#[test]
fn an_unreachable_queue_exits_non_zero_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = MotoServer::start().expect("moto server starts");
    let (queue, fleet) = world(&moto, 3);
    // The queue's endpoint is a port nothing listens on; the fleet is on moto.
    let dead = format!("http://{}", testkit::net::free_addr());
    let config = write_config(tmp.path(), &dead, &queue, &fleet, "max = 2");
    let data = tmp.path().join("data");
    let out = scaler(&config, &data, &["--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read the queue's counters"),
        "{}",
        text(&out)
    );
    assert!(!data.join("scaler/state.json").exists());
}

#[test]
fn bad_scaler_settings_are_refused_at_start_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (policy, expected) in [
        ("min = 3\nmax = 2", "min (3) is greater than max (2)"),
        (
            "jobs_per_instance = 0",
            "jobs_per_instance must be at least 1",
        ),
        ("maximum = 4", "unknown field `maximum`"),
    ] {
        let config = write_config(
            tmp.path(),
            "http://127.0.0.1:9",
            "https://q",
            "sfr-1",
            policy,
        );
        let out = scaler(&config, &data, &["--once"]);
        assert_eq!(out.status.code(), Some(1), "{policy}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{policy}: {}",
            text(&out)
        );
    }
    // No fleet configured at all.
    let path = tmp.path().join("nofleet.toml");
    std::fs::write(&path, "[queue]\nurl = \"https://q\"\n").unwrap();
    let out = scaler(&path, &data, &["--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scaler.backend is not set"),
        "{}",
        text(&out)
    );
}

#[test]
fn simulate_prints_the_comparison_and_writes_a_chart_per_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = testkit::repo_root().join("scaler/traces/conference-day.csv");
    let out = Command::new(testkit::up::binary())
        .args(["scaler", "simulate", "--trace"])
        .arg(&trace)
        .arg("--svg-dir")
        .arg(tmp.path())
        .output()
        .expect("spherecast runs");
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for policy in ["ours", "reference", "fixed-10"] {
        assert!(
            table.lines().any(|l| l.starts_with(policy)),
            "no row for {policy}:\n{table}"
        );
        let chart =
            std::fs::read_to_string(tmp.path().join(format!("conference-day-{policy}.svg")))
                .unwrap_or_else(|e| panic!("chart for {policy}: {e}\n{table}"));
        assert!(
            chart.starts_with("<svg") || chart.starts_with("<?xml"),
            "{policy}"
        );
        assert!(chart.trim_end().ends_with("</svg>"), "{policy}");
    }

    std::fs::write(tmp.path().join("bad.csv"), "arrival,duration\n10,abc\n").unwrap();
    let out = Command::new(testkit::up::binary())
        .args(["scaler", "simulate", "--trace"])
        .arg(tmp.path().join("bad.csv"))
        .output()
        .expect("spherecast runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: duration"),
        "{}",
        text(&out)
    );
}
