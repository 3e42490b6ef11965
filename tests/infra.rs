//! The AWS deployment in `infra/`: the CloudFormation template passes cfn-lint and
//! `infra/check_template.py` (security properties and wiring), every check of that script
//! rejects its negative fixture in `infra/tests/`, the settings each instance boots with are
//! accepted by `spherecast` itself, the systemd units keep their hardening, and the worker's
//! exit hook powers the instance off only after the worker finished on its own.
//!
//! Needs `.venv` from `scripts/setup.sh` (cfn-lint and its Python decoder); nothing is skipped.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = "infra/spherecast.yaml";
const CHECKER: &str = "infra/check_template.py";

fn root() -> PathBuf {
    testkit::repo_root()
}

/// A program from the project venv; a missing venv fails the test with what to do.
fn venv_bin(name: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} not found: run scripts/setup.sh (it installs cfn-lint into .venv)",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    command
        .current_dir(root())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

fn text(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn checker(args: &[&str]) -> Output {
    run(Command::new(venv_bin("python")).arg(CHECKER).args(args))
}

/// The check ids the checker knows (`--list-checks`).
fn check_ids() -> Vec<String> {
    let out = checker(&["--list-checks"]);
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split('\t').next())
        .map(str::to_owned)
        .collect();
    assert!(ids.len() >= 10, "too few checks listed:\n{}", text(&out));
    ids
}

/// A fresh folder under Cargo's per-test-target temp folder.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("infra-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch folder");
    dir
}

#[test]
fn template_passes_cfn_lint() {
    let out = run(Command::new(venv_bin("cfn-lint")).arg(TEMPLATE));
    assert!(
        out.status.success(),
        "cfn-lint {TEMPLATE} failed:\n{}",
        text(&out)
    );
}

/// The environment variable the scaler Lambda reads its TOML from, as the scaler crate
/// defines it (`scaler::lambda::CONFIG_VARIABLE`): the template must set the same one.
fn scaler_config_variable() -> String {
    let source = root().join("scaler/src/lambda.rs");
    let text = fs::read_to_string(&source)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", source.display()));
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("pub const CONFIG_VARIABLE: &str = \"")
        })
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "no `pub const CONFIG_VARIABLE: &str` in {}",
                source.display()
            )
        })
}

#[test]
fn template_passes_every_security_check_and_each_check_sees_something() {
    let variable = scaler_config_variable();
    let out = checker(&["--scaler-variable", &variable, TEMPLATE]);
    let report = text(&out);
    assert!(
        out.status.success(),
        "{CHECKER} {TEMPLATE} failed:\n{report}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for id in check_ids() {
        // A check that looked at nothing would pass vacuously.
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok [{id}] ")))
            .unwrap_or_else(|| panic!("no ok line for check {id}:\n{report}"));
        let checked: u32 = line
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unreadable summary line {line:?}"));
        assert!(
            checked >= 1,
            "check {id} found nothing to check in {TEMPLATE}: {line}"
        );
    }
}

/// `# expect: TEXT` lines at the top of a fixture: each must appear in the checker's output.
fn expectations(fixture: &Path) -> Vec<String> {
    fs::read_to_string(fixture)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", fixture.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_check_rejects_its_negative_fixture_naming_the_problem() {
    let mut fixtures: Vec<PathBuf> = fs::read_dir(root().join("infra/tests"))
        .expect("infra/tests holds the negative fixtures")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    let mut covered = BTreeSet::new();
    for fixture in &fixtures {
        let expected = expectations(fixture);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            fixture.display()
        );
        let out = checker(&[fixture.to_str().expect("a UTF-8 path")]);
        let report = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} was not rejected:\n{report}",
            fixture.display()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for expect in expected {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with("FAIL ") && l.contains(&expect)),
                "{}: no FAIL line containing {expect:?}:\n{report}",
                fixture.display()
            );
            let id = expect
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
                .unwrap_or_else(|| panic!("expectation {expect:?} does not start with [check-id]"));
            covered.insert(id.to_owned());
        }
    }
    let missing: Vec<String> = check_ids()
        .into_iter()
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "checks with no negative fixture showing they bite: {missing:?}"
    );
}

/// Runs `spherecast transcode --config FILE` on an input that does not exist: a config that
/// loads (every section, unknown keys rejected) and validates gets as far as the input.
fn spherecast_accepts_config(config: &Path, scratch: &Path) -> Result<(), String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_spherecast"))
        .arg("transcode")
        .arg("--config")
        .arg(config)
        .arg(scratch.join("no-such-recording.flv"))
        .arg(scratch.join("ladder")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("not a playable media file") {
        Ok(())
    } else {
        Err(text(&out))
    }
}

#[test]
fn instance_and_lambda_settings_in_the_template_are_accepted_by_spherecast() {
    let dir = scratch("settings");
    let configs = dir.join("configs");
    let variable = scaler_config_variable();
    let out = checker(&[
        "--scaler-variable",
        &variable,
        "--emit-configs",
        configs.to_str().unwrap(),
        TEMPLATE,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut names: Vec<String> = fs::read_dir(&configs)
        .expect("emitted configs")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "scaler-ScalerFunction-AutoScalingGroup.toml",
            "scaler-ScalerFunction-SpotFleet.toml",
            "settings-OriginInstance-AutoScalingGroup.toml",
            "settings-OriginInstance-SpotFleet.toml",
            "settings-WorkerLaunchTemplate-AutoScalingGroup.toml",
            "settings-WorkerLaunchTemplate-SpotFleet.toml",
        ],
        "one settings document per instance role and fleet type, and the Lambda's"
    );
    // The Lambda's document is a settings document too ([queue] and [scaler]): the same
    // parser rejects a misspelt scaler key.
    let mut all: Vec<PathBuf> = names.iter().map(|n| configs.join(n)).collect();
    all.push(root().join("infra/config/spherecast.toml"));
    for config in &all {
        if let Err(report) = spherecast_accepts_config(config, &dir) {
            panic!(
                "spherecast rejects {}:\n{}\n{report}",
                config.display(),
                fs::read_to_string(config).unwrap_or_default()
            );
        }
    }
    let read = |name: &str| fs::read_to_string(configs.join(name)).unwrap();
    let spot = read("settings-WorkerLaunchTemplate-SpotFleet.toml");
    assert!(
        spot.contains("idle_shutdown_secs = 600"),
        "Spot Fleet workers leave by themselves when idle:\n{spot}"
    );
    let asg = read("settings-WorkerLaunchTemplate-AutoScalingGroup.toml");
    assert!(
        !asg.contains("idle_shutdown_secs"),
        "an Auto Scaling group would replace a worker that left by itself:\n{asg}"
    );
    assert!(
        asg.contains("scale_in_protection = true") && !spot.contains("scale_in_protection"),
        "only workers in an Auto Scaling group protect themselves from its scale-in:\n{asg}"
    );

    // The probe itself can fail: a misspelt key is rejected, naming it.
    let typo = dir.join("typo.toml");
    fs::write(&typo, "[worker]\nvisibilty_secs = 120\n").unwrap();
    let report = spherecast_accepts_config(&typo, &dir).expect_err("a misspelt key is rejected");
    assert!(report.contains("visibilty_secs"), "{report}");
}

/// `Key=value` lines of a unit file (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
}

#[test]
fn service_units_run_sandboxed_as_the_service_user() {
    for (name, exec_start, kill_signal) in [
        (
            "spherecast-origin.service",
            "/usr/local/bin/spherecast origin --config /etc/spherecast/spherecast.toml --data /var/lib/spherecast",
            "SIGTERM",
        ),
        (
            "spherecast-worker.service",
            "/usr/local/bin/spherecast worker --config /etc/spherecast/spherecast.toml --data /var/lib/spherecast",
            "SIGTERM",
        ),
        (
            "spherecast-edge.service",
            "/usr/sbin/nginx -p /var/lib/spherecast-edge/ -c /etc/spherecast/edge.conf -e stderr -g \"daemon off;\"",
            "SIGQUIT",
        ),
    ] {
        let path = root().join("infra/systemd").join(name);
        let unit = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let state = if name == "spherecast-edge.service" {
            "/var/lib/spherecast-edge"
        } else {
            "/var/lib/spherecast"
        };
        for (key, value) in [
            ("User", "spherecast"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ReadWritePaths", state),
            ("Restart", "on-failure"),
            ("KillSignal", kill_signal),
            ("CapabilityBoundingSet", ""),
            ("ExecStart", exec_start),
        ] {
            assert_eq!(
                unit_value(&unit, key).as_deref(),
                Some(value),
                "{name}: {key}"
            );
        }
    }
    let worker =
        fs::read_to_string(root().join("infra/systemd/spherecast-worker.service")).unwrap();
    let stop: u32 = unit_value(&worker, "TimeoutStopSec")
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!(
        (30..120).contains(&stop),
        "the worker gets time to hand its jobs back, within a spot instance's 2-minute notice: {stop}"
    );
    assert_eq!(
        unit_value(&worker, "ExecStopPost").as_deref(),
        Some("+/usr/local/lib/spherecast/worker-exited")
    );
}

/// `${NAME}` placeholders (upper case: nginx's own variables are lower case) in a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_edge_placeholder_is_filled_at_boot() {
    let conf = fs::read_to_string(root().join("infra/edge/nginx.conf"))
        .expect("infra/edge/nginx.conf, the edge tier's config");
    // The header comment documents the placeholders: only directives count.
    let directives: String = conf
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let needed = placeholders(&directives);
    assert!(
        !needed.is_empty(),
        "the edge config has no placeholders at all?"
    );

    let install = fs::read_to_string(root().join("infra/install.sh")).unwrap();
    let list = install
        .lines()
        .find_map(|l| l.strip_prefix("EDGE_PLACEHOLDERS="))
        .expect("EDGE_PLACEHOLDERS= in infra/install.sh");
    assert_eq!(
        placeholders(list),
        needed,
        "install.sh must hand envsubst exactly the edge config's placeholders"
    );

    // The template's edge user-data sets each one before install.sh runs.
    let template = fs::read_to_string(root().join(TEMPLATE)).unwrap();
    let user_data = template
        .split("EdgeLaunchTemplate:")
        .nth(1)
        .and_then(|rest| rest.split("install.sh edge").next())
        .expect("the edge launch template's user-data");
    for name in &needed {
        assert!(
            user_data.contains(&format!("{name}=")),
            "the edge user-data does not set {name}"
        );
    }
    // The ALB's health check asks the edge itself, which answers it without an origin.
    assert!(
        conf.contains("location = /healthz"),
        "the edge answers /healthz"
    );
    assert!(template.contains("HealthCheckPath: /healthz"));
}

/// Runs the worker's ExecStopPost hook with systemd's variables and a fake `systemctl` that
/// lists `jobs` and logs every call; returns the logged calls.
fn worker_exited(env: &[(&str, &str)], jobs: &str, dir: &Path) -> Vec<String> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("systemctl.log");
    let _ = fs::remove_file(&log);
    fs::write(dir.join("jobs"), jobs).unwrap();
    let fake = bin.join("systemctl");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\nif [ \"$1\" = list-jobs ]; then cat '{jobs}'; fi\n",
            log = log.display(),
            jobs = dir.join("jobs").display()
        ),
    )
    .unwrap();
    let chmod = run(Command::new("chmod").arg("+x").arg(&fake));
    assert!(chmod.status.success(), "{}", text(&chmod));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(Command::new("sh")
        .arg("infra/systemd/worker-exited")
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().copied()));
    assert!(
        out.status.success(),
        "the hook never fails a stop:\n{}",
        text(&out)
    );
    fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("list-jobs"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn worker_exit_hook_powers_off_only_after_the_worker_finished_by_itself() {
    let dir = scratch("worker-exited");
    let clean = [
        ("SERVICE_RESULT", "success"),
        ("EXIT_CODE", "exited"),
        ("EXIT_STATUS", "0"),
    ];
    assert_eq!(
        worker_exited(&clean, "", &dir),
        ["--no-block poweroff"],
        "idle, drained or interrupted: the instance goes"
    );
    assert_eq!(
        worker_exited(
            &clean,
            "4711 spherecast-worker.service stop running\n",
            &dir
        ),
        Vec::<String>::new(),
        "stopped through systemd (operator, reboot, scale-in): the instance stays"
    );
    assert_eq!(
        worker_exited(&clean, "4712 apt-daily.service start running\n", &dir),
        ["--no-block poweroff"],
        "another unit's job does not count"
    );
    let failed = [
        ("SERVICE_RESULT", "exit-code"),
        ("EXIT_CODE", "exited"),
        ("EXIT_STATUS", "1"),
    ];
    assert_eq!(
        worker_exited(&failed, "", &dir),
        Vec::<String>::new(),
        "a failure is Restart=on-failure's business"
    );
    let killed = [
        ("SERVICE_RESULT", "signal"),
        ("EXIT_CODE", "killed"),
        ("EXIT_STATUS", "KILL"),
    ];
    assert_eq!(worker_exited(&killed, "", &dir), Vec::<String>::new());
}
