//! The simulator on the shipped traces (the issue's target), the model's mechanics on
//! scenarios built for them, the files `spherecast scaler simulate` reads and writes, and the
//! generator of the shipped traces.

use std::path::{Path, PathBuf};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use scaler::PolicyConfig;
use scaler::sim::{
    Candidate, Ended, Left, Model, Outcome, Recording, ScaleIn, SimError, Trace, chart, headline,
    run, simulate, table,
};

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces")
}

fn shipped(name: &str) -> Trace {
    Trace::load(&traces_dir().join(name)).unwrap()
}

/// A fresh folder under the target directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("simulate-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks what must hold in any run: each job completes exactly once, its attempts follow
/// one another (a killed one only after the visibility timeout), every attempt ran on an
/// instance that was up, no worker ran more jobs than it has slots, and a job alone on a
/// one-slot worker took exactly the model's time.
fn check_conservation(outcome: &Outcome, model: &Model, slots: u32) {
    let name = &outcome.candidate;
    assert!(outcome.settled, "{name}: did not finish");
    for (index, job) in outcome.jobs.iter().enumerate() {
        let completed = job
            .attempts
            .iter()
            .filter(|a| a.ended == Ended::Completed)
            .count();
        assert_eq!(completed, 1, "{name}: job {index}: {:?}", job.attempts);
        assert_eq!(
            job.attempts.last().map(|a| a.ended),
            Some(Ended::Completed),
            "{name}: job {index}"
        );
        let mut available = job.arrival;
        for attempt in &job.attempts {
            assert!(
                attempt.start >= available,
                "{name}: job {index} started at {} before its message was visible at \
                 {available}: {:?}",
                attempt.start,
                job.attempts
            );
            let instance = &outcome.instances[attempt.instance];
            assert!(
                instance.ready_at <= attempt.start && attempt.end <= instance.gone,
                "{name}: job {index} ran {}..{} on an instance up {}..{}",
                attempt.start,
                attempt.end,
                instance.ready_at,
                instance.gone
            );
            available = match attempt.ended {
                Ended::KilledByScaleIn => attempt.end + model.visibility_secs,
                _ => attempt.end,
            };
            if attempt.ended == Ended::Completed && slots == 1 {
                assert_eq!(
                    attempt.end - attempt.start,
                    model.job_secs(job.duration),
                    "{name}: job {index}"
                );
            }
        }
    }
    // Concurrency per instance: +1 at each start, -1 at each end, never above the slots.
    let mut events: Vec<(usize, u64, i32)> = outcome
        .jobs
        .iter()
        .flat_map(|j| &j.attempts)
        .flat_map(|a| [(a.instance, a.start, 1), (a.instance, a.end, -1)])
        .collect();
    // Ends before starts at the same second: a slot freed is taken again at once.
    events.sort_by_key(|&(instance, t, delta)| (instance, t, delta));
    let mut running = 0;
    let mut current = usize::MAX;
    for (instance, t, delta) in events {
        if instance != current {
            assert_eq!(
                running, 0,
                "{name}: instance {current} still busy at its end"
            );
            current = instance;
        }
        running += delta;
        assert!(
            (0..=slots as i32).contains(&running),
            "{name}: instance {instance} ran {running} jobs at {t}"
        );
    }
}

/// The issue's target on the conference day: p95 wait within 5 minutes, no more
/// instance-hours than the reference step rule, nobody killed by scale-in. The instance-hours
/// hold for a whole day only: over the run itself ours costs more (about 23.5 against 15.4
/// instance-hours), because the step rule never grows past a few instances, which are then
/// never idle, and makes the recordings wait hours for them. A day of the reference also pays
/// its floor instance (min 1) around the clock; ours (min 0) pays nothing outside the run.
#[test]
fn ours_meets_the_issue_target_on_the_conference_day_counting_whole_days() {
    let trace = shipped("conference-day.csv");
    // Several seeds: the target must not hang on one lucky draw of boots and lags.
    for seed in 1..=5 {
        let model = Model {
            seed,
            ..Model::default()
        };
        let ours = simulate(&trace, &model, &Candidate::ours())
            .unwrap()
            .summary();
        let reference = simulate(&trace, &model, &Candidate::reference())
            .unwrap()
            .summary();
        let p95 = ours.p95_wait.unwrap();
        assert!(
            p95 <= 300,
            "seed {seed}: ours' p95 wait is {p95} s: {ours:?}"
        );
        assert_eq!(ours.killed_by_scale_in, 0, "seed {seed}");
        assert!(
            ours.day_instance_hours <= reference.day_instance_hours,
            "seed {seed}: ours {:.2} instance-hours a day, the reference {:.2}",
            ours.day_instance_hours,
            reference.day_instance_hours
        );
        // What the reference's thrift over the run costs: recordings wait for hours.
        assert!(
            reference.p95_wait.unwrap() > 3600,
            "seed {seed}: {reference:?}"
        );
        assert!(ours.settled && reference.settled, "seed {seed}");
    }
}

#[test]
fn every_job_completes_once_on_both_traces_with_frequent_interruptions() {
    // Ten times the default interruption rate, so that hand-backs happen on every trace.
    let model = Model {
        spot_interruptions_per_hour: 0.5,
        ..Model::default()
    };
    let mut candidates = Candidate::defaults(10);
    candidates.push(Candidate {
        name: "ours-2-slots".to_owned(),
        policy: PolicyConfig {
            jobs_per_instance: 2,
            ..PolicyConfig::default()
        },
        slots: Some(2),
        ..Candidate::ours()
    });
    for trace_name in ["conference-day.csv", "steady-trickle.csv"] {
        let trace = shipped(trace_name);
        let mut interrupted = 0;
        for candidate in &candidates {
            let outcome = simulate(&trace, &model, candidate).unwrap();
            check_conservation(&outcome, &model, candidate.slots.unwrap_or(model.slots));
            let summary = outcome.summary();
            assert_eq!(summary.jobs, trace.recordings.len());
            let attempts: usize = outcome.jobs.iter().map(|j| j.attempts.len()).sum();
            assert_eq!(
                attempts,
                summary.jobs + summary.killed_by_scale_in + summary.interrupted_by_spot,
                "{trace_name} {}: every attempt but the last was killed or interrupted",
                candidate.name
            );
            interrupted += summary.interrupted_by_spot;
        }
        assert!(interrupted > 0, "{trace_name}: no interruption to check");
    }
}

#[test]
fn a_warm_fixed_fleet_as_large_as_the_trace_starts_every_job_on_arrival() {
    let trace = shipped("conference-day.csv");
    let model = Model {
        boot_min_secs: 0,
        boot_max_secs: 0,
        spot_interruptions_per_hour: 0.0,
        ..Model::default()
    };
    let size = trace.recordings.len() as u32;
    let outcome = simulate(&trace, &model, &Candidate::fixed(size)).unwrap();
    check_conservation(&outcome, &model, 1);
    let summary = outcome.summary();
    assert_eq!(summary.max_wait, Some(0), "{summary:?}");
    assert_eq!(summary.launches, size as usize);
    // Billed from the first arrival to the last completion, every instance.
    let last = summary.last_completion.unwrap();
    assert_eq!(
        outcome.instance_secs(),
        u64::from(size) * (last - outcome.start)
    );

    // One instance cannot: the burst at each session end waits for it.
    let one = simulate(&trace, &model, &Candidate::fixed(1)).unwrap();
    check_conservation(&one, &model, 1);
    assert!(
        one.summary().max_wait.unwrap() > 3600,
        "{:?}",
        one.summary()
    );
}

#[test]
fn one_recording_starts_one_instance_and_waits_for_its_boot_and_the_next_scaler_run() {
    let model = Model {
        boot_min_secs: 150,
        boot_max_secs: 150,
        counter_lag_secs: 0,
        spot_interruptions_per_hour: 0.0,
        ..Model::default()
    };
    // On the scaler's beat: the run at t=0 sees it, the instance is up at 150.
    let outcome = simulate(
        &Trace::parse("0,600\n").unwrap(),
        &model,
        &Candidate::ours(),
    )
    .unwrap();
    check_conservation(&outcome, &model, 1);
    assert_eq!(outcome.instances.len(), 1);
    let job = &outcome.jobs[0];
    assert_eq!(job.wait(), Some(150));
    // The worker idles `idle_shutdown_secs` after the job and powers off; the target went to
    // 0 after the stabilisation window, so the fleet does not replace it.
    let completed = job.completed().unwrap();
    assert_eq!(completed, 150 + model.job_secs(600));
    let instance = &outcome.instances[0];
    assert_eq!(instance.left, Left::Idle);
    assert_eq!(instance.gone, completed + model.idle_shutdown_secs);
    assert_eq!(outcome.instance_secs(), instance.gone);

    // Off the beat: it waits for the next run too, at most one period.
    let outcome = simulate(
        &Trace::parse("30,600\n").unwrap(),
        &model,
        &Candidate::ours(),
    )
    .unwrap();
    assert_eq!(outcome.instances.len(), 1);
    let wait = outcome.jobs[0].wait().unwrap();
    assert!(
        (150..=150 + model.scaler_period_secs).contains(&wait),
        "{wait}"
    );
}

#[test]
fn a_fleet_that_terminates_on_scale_in_kills_busy_workers_and_ours_does_not() {
    // 30 one-hour recordings at once: the step rule grows to 6, then scales in on visible
    // messages alone while every instance is still transcoding.
    let text: String = (0..30).map(|i| format!("0,3600,talk{i}\n")).collect();
    let trace = Trace::parse(&text).unwrap();
    let model = Model {
        spot_interruptions_per_hour: 0.0,
        ..Model::default()
    };
    let terminating = simulate(&trace, &model, &Candidate::reference()).unwrap();
    check_conservation(&terminating, &model, 1);
    let killed = terminating.summary().killed_by_scale_in;
    assert!(killed > 0, "{:?}", terminating.summary());
    let scaled_in = terminating
        .instances
        .iter()
        .filter(|i| i.left == Left::ScaleIn)
        .count();
    assert!(scaled_in > 0);

    // The same step rule on a fleet that never terminates kills nobody.
    let sparing = Candidate {
        name: "reference-no-termination".to_owned(),
        scale_in: ScaleIn::NoTermination,
        idle_shutdown: true,
        ..Candidate::reference()
    };
    let outcome = simulate(&trace, &model, &sparing).unwrap();
    check_conservation(&outcome, &model, 1);
    assert_eq!(outcome.summary().killed_by_scale_in, 0);
    let ours = simulate(&trace, &model, &Candidate::ours()).unwrap();
    check_conservation(&ours, &model, 1);
    assert_eq!(ours.summary().killed_by_scale_in, 0);
}

#[test]
fn idle_shutdown_within_the_stabilisation_window_makes_the_fleet_replace_idle_workers() {
    // A worker that leaves while the target still counts it is replaced, and the
    // replacement boots only to idle: more launches and more instance-hours.
    let trace = shipped("conference-day.csv");
    let patient = Model::default();
    let hasty = Model {
        idle_shutdown_secs: 120,
        ..Model::default()
    };
    assert!(patient.idle_shutdown_secs > 300 + 60 + 60);
    let patient = simulate(&trace, &patient, &Candidate::ours())
        .unwrap()
        .summary();
    let hasty = simulate(&trace, &hasty, &Candidate::ours())
        .unwrap()
        .summary();
    assert!(
        hasty.launches > patient.launches,
        "launches: {} with 120 s, {} with 600 s",
        hasty.launches,
        patient.launches
    );
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let trace = shipped("steady-trickle.csv");
    let one = Model::default();
    let other = Model {
        seed: 2,
        ..Model::default()
    };
    let a = simulate(&trace, &one, &Candidate::ours()).unwrap();
    let b = simulate(&trace, &one, &Candidate::ours()).unwrap();
    assert_eq!(a, b);
    let c = simulate(&trace, &other, &Candidate::ours()).unwrap();
    assert_ne!(a.instances, c.instances);
}

#[test]
fn the_chart_is_well_formed_svg_with_axes_legend_and_summary() {
    let trace = shipped("conference-day.csv");
    let outcome = simulate(&trace, &Model::default(), &Candidate::ours()).unwrap();
    let subtitle = headline(&outcome.summary());
    let svg = chart(&outcome, "ours & co <on> the conference day", &subtitle);
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let (width, height): (f64, f64) = (
        root.attribute("width").unwrap().parse().unwrap(),
        root.attribute("height").unwrap().parse().unwrap(),
    );
    let texts: Vec<&str> = root
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    assert!(
        texts.contains(&"ours & co <on> the conference day"),
        "{texts:?}"
    );
    assert!(texts.contains(&subtitle.as_str()), "{texts:?}");
    for label in [
        "queue (visible)",
        "in flight",
        "target capacity",
        "instances (booting included)",
        "messages / instances",
    ] {
        assert!(texts.contains(&label), "{label} missing: {texts:?}");
    }
    // Hour ticks over the day, in HH:MM.
    for hour in ["10:00", "12:00", "15:00", "18:00"] {
        assert!(texts.contains(&hour), "{hour} missing: {texts:?}");
    }
    let polylines: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .collect();
    assert_eq!(polylines.len(), 4);
    let highest_target = outcome.samples.iter().map(|s| s.target).max().unwrap();
    assert!(highest_target > 0);
    for line in polylines {
        let points: Vec<(f64, f64)> = line
            .attribute("points")
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        // A step line: two points per sample but the first.
        assert_eq!(points.len(), 2 * outcome.samples.len() - 1);
        assert!(
            points
                .iter()
                .all(|&(x, y)| (0.0..=width).contains(&x) && (0.0..=height).contains(&y))
        );
        assert!(
            points.windows(2).all(|w| w[0].0 <= w[1].0),
            "time goes forward"
        );
    }
}

#[test]
fn run_prints_the_table_and_writes_a_chart_per_candidate() {
    let dir = scratch("run");
    let setup = dir.join("sim.toml");
    std::fs::write(
        &setup,
        "fixed_fleet = 4\n\
         [model]\n\
         seed = 7\n\
         [[candidate]]\n\
         name = \"ours-2-slots\"\n\
         slots = 2\n\
         [candidate.policy]\n\
         jobs_per_instance = 2\n",
    )
    .unwrap();
    let charts = dir.join("charts");
    let trace = traces_dir().join("steady-trickle.csv");
    let table = run(&trace, Some(&setup), Some(&charts)).unwrap();
    let names = ["ours", "reference", "fixed-4", "ours-2-slots"];
    for name in names {
        let path = charts.join(format!("steady-trickle-{name}.svg"));
        let svg = std::fs::read_to_string(&path).unwrap();
        roxmltree::Document::parse(&svg).unwrap();
        assert!(
            table.contains(&format!("chart: {}", path.display())),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{name} "))),
            "no row for {name}: {table}"
        );
    }
    assert!(table.contains("seed 7"), "{table}");
    // The figures in the table are the simulation's.
    let model = Model {
        seed: 7,
        ..Model::default()
    };
    let ours = simulate(&Trace::load(&trace).unwrap(), &model, &Candidate::ours()).unwrap();
    let row = table.lines().find(|l| l.starts_with("ours ")).unwrap();
    assert!(
        row.contains(&format!("{:.1}", ours.summary().instance_hours)),
        "{row}"
    );

    // Without a chart folder nothing is written; JSON works as well as TOML.
    let json = dir.join("sim.json");
    std::fs::write(
        &json,
        r#"{"model": {"boot_min_secs": 60}, "fixed_fleet": 2}"#,
    )
    .unwrap();
    let table = run(&trace, Some(&json), None).unwrap();
    assert!(
        table.contains("boot 60-180 s") && table.contains("fixed-2"),
        "{table}"
    );
    assert!(!table.contains("chart:"));
}

#[test]
fn the_shipped_knobs_file_adds_candidates_that_finish_without_kills() {
    let table = run(
        &traces_dir().join("conference-day.csv"),
        Some(&traces_dir().join("knobs.toml")),
        None,
    )
    .unwrap();
    for name in ["ours-window-120", "ours-2-slots", "ours-2-slots-window-120"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"));
        assert!(!row.contains("(limit)"), "{row}");
        assert!(table.contains(&format!("{name}: target rule")), "{table}");
    }
    assert!(
        table.contains("workers power off after 300 s idle"),
        "{table}"
    );
}

#[test]
fn bad_files_are_rejected_saying_which_and_why() {
    let dir = scratch("bad");
    let trace = traces_dir().join("conference-day.csv");
    let bad_trace = dir.join("bad.csv");
    std::fs::write(&bad_trace, "arrival,duration\n09:50:00,2700\n09:51:00,-1\n").unwrap();
    let err = run(&bad_trace, None, None).unwrap_err().to_string();
    assert!(
        err.contains("bad.csv") && err.contains("line 3") && err.contains("negative"),
        "{err}"
    );
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let err = run(&empty, None, None).unwrap_err();
    assert!(matches!(err, SimError::Trace { .. }), "{err}");
    assert!(err.to_string().contains("no recordings"), "{err}");
    let err = run(&dir.join("missing.csv"), None, None).unwrap_err();
    assert!(err.to_string().contains("missing.csv"), "{err}");

    for (text, expected) in [
        ("[model]\nboot_secs = 90\n", "boot_secs"),
        (
            "[model]\nboot_min_secs = 200\nboot_max_secs = 100\n",
            "boot_min_secs (200)",
        ),
        ("[model]\nspeed = 0.0\n", "speed"),
        (
            "[[candidate]]\nname = \"x\"\n[candidate.policy]\nmin = 3\nmax = 1\n",
            "min (3)",
        ),
        ("[[candidate]]\nname = \"a b\"\n", "letters, digits"),
        (
            "[[candidate]]\nname = \"ours\"\n",
            "two candidates are named \"ours\"",
        ),
        (
            "[[candidate]]\nname = \"x\"\nscale_in = \"sometimes\"\n",
            "sometimes",
        ),
    ] {
        let setup = dir.join("sim.toml");
        std::fs::write(&setup, text).unwrap();
        let err = run(&trace, Some(&setup), None).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

// The shipped traces, their results, and the generator they come from.

const TRACE_NOTE: &str = "# Generated by `cargo test -p scaler --test simulate -- --ignored \
                          regenerate_traces`\n# (scaler/tests/simulate.rs); a test checks this \
                          file is what it makes.\n";

/// A conference on 4 tracks, 09:00 to 18:05: an opening keynote, seven 45-minute slots
/// (each track a 40-45 minute talk, or two 20-minute talks with a change-over), lightning
/// talks over lunch, a 2-hour workshop on track 4 in the afternoon, a closing session.
/// Speakers start up to 90 s late and end 2 minutes early to 4 minutes late; the recording
/// is on the queue after its upload (6 Mbit/s over 50 MB/s) and 5-20 s of S3 event
/// delivery. Each session end gives a burst of 4 to 8 recordings.
fn conference_day() -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(20_261_121);
    let at = |h: u64, m: u64| h * 3600 + m * 60;
    let mut recordings = Vec::new();
    let mut talk = |rng: &mut ChaCha8Rng, start: u64, minutes: u64, name: String| {
        let begin = start + rng.random_range(0..=90);
        let end = (start + minutes * 60 + rng.random_range(0..=360)).saturating_sub(120);
        let duration = end - begin;
        let upload = (duration as f64 * 6e6 / 8.0 / 50e6).ceil() as u64;
        recordings.push(Recording {
            arrival: end + upload + rng.random_range(5..=20),
            duration,
            name: Some(name),
        });
    };
    talk(&mut rng, at(9, 0), 50, "keynote".to_owned());
    let slots = [
        at(10, 0),
        at(11, 0),
        at(12, 0),
        at(13, 45),
        at(14, 45),
        at(16, 0),
        at(17, 0),
    ];
    for (s, &slot) in slots.iter().enumerate() {
        for track in 1..=4 {
            let name = format!("slot{}-track{track}", s + 1);
            if track == 4 && slot == at(14, 45) {
                talk(&mut rng, slot, 120, "workshop-track4".to_owned());
                continue;
            }
            if track == 4 && slot == at(16, 0) {
                continue; // the workshop goes on
            }
            if rng.random_bool(0.3) {
                talk(&mut rng, slot, 20, format!("{name}-a"));
                talk(&mut rng, slot + 23 * 60, 20, format!("{name}-b"));
            } else {
                let minutes = rng.random_range(40..=45);
                talk(&mut rng, slot, minutes, name);
            }
        }
    }
    for i in 0..8 {
        talk(
            &mut rng,
            at(13, 0) + i * 5 * 60,
            5,
            format!("lightning{}", i + 1),
        );
    }
    talk(&mut rng, at(17, 50), 15, "closing".to_owned());
    let mut trace = Trace { recordings };
    trace.recordings.sort_by_key(|r| r.arrival);
    trace
}

/// Six hours of one-off recordings, 08:00 to 14:00: a 5-20 minute recording every 2 to 8
/// minutes (a training platform or a newsroom rather than an event).
fn steady_trickle() -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(20_261_122);
    let mut recordings = Vec::new();
    let mut t = 8 * 3600;
    while t < 14 * 3600 {
        t += rng.random_range(120..=480);
        recordings.push(Recording {
            arrival: t,
            duration: rng.random_range(300..=1200),
            name: Some(format!("clip{}", recordings.len() + 1)),
        });
    }
    Trace { recordings }
}

/// The shipped files: the traces, and the table and charts of the default candidates on each
/// (for the README), under `results/`.
fn generated() -> Vec<(PathBuf, String)> {
    let dir = traces_dir();
    let mut files = Vec::new();
    for (name, trace) in [
        ("conference-day", conference_day()),
        ("steady-trickle", steady_trickle()),
    ] {
        files.push((
            dir.join(format!("{name}.csv")),
            format!("{TRACE_NOTE}{}", trace.to_csv()),
        ));
        let model = Model::default();
        let candidates = Candidate::defaults(PolicyConfig::default().max);
        let outcomes: Vec<Outcome> = candidates
            .iter()
            .map(|c| simulate(&trace, &model, c).unwrap())
            .collect();
        let csv = format!("{name}.csv");
        files.push((
            dir.join("results").join(format!("{name}.txt")),
            table(&csv, &trace, &model, &candidates, &outcomes),
        ));
        for outcome in &outcomes {
            let title = format!("{} on {csv}", outcome.candidate);
            files.push((
                dir.join("results")
                    .join(format!("{name}-{}.svg", outcome.candidate)),
                chart(outcome, &title, &headline(&outcome.summary())),
            ));
        }
    }
    files
}

#[test]
fn the_shipped_traces_are_what_their_generator_makes() {
    for (path, text) in generated() {
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == text,
            "{} is not what the code makes now: run `cargo test -p scaler --test simulate -- \
             --ignored regenerate_traces` and update the README's figures",
            path.display()
        );
    }
    // And they are what the issue asks for.
    let conference = conference_day();
    assert!((40..=60).contains(&conference.recordings.len()));
    let trickle = steady_trickle();
    assert!(
        trickle
            .recordings
            .iter()
            .all(|r| (300..=1200).contains(&r.duration))
    );
}

#[test]
#[ignore = "writes scaler/traces/; run it to regenerate the shipped traces and results"]
fn regenerate_traces() {
    for (path, text) in generated() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}
