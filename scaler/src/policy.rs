//! The scaling policy: queue counters and fleet size in, the desired capacity and a sentence
//! saying why out. A pure function of its inputs and of the [`History`] the caller keeps
//! between runs (in a Lambda, that history must be stored outside the process).
//!
//! Two rules:
//! - [`Rule::Target`] (the default): desired = ceil((visible + in-flight) / jobs_per_instance),
//!   clamped to min..=max. Scale out at once; scale in only to the highest recommendation of the
//!   stabilisation window (so a dip in lagging counters does not remove instances), and never
//!   below the busy workers. One visible message with no instance gives one instance.
//! - [`Rule::Step`]: the reference architecture's CloudWatch alarms, for comparison: +1 when
//!   the visible count stayed above a threshold for the whole evaluation period, -1 when it
//!   stayed below another, a cooldown after each change.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch: the only clock the policy knows, passed in by the caller.
pub type Secs = u64;

/// The `[scaler]` policy settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    pub rule: Rule,
    /// Target rule: messages (visible + in flight) one instance should have.
    pub jobs_per_instance: u32,
    /// Target rule: scale in only to the highest recommendation of this many seconds.
    pub scale_in_stabilisation_secs: u64,
    /// Step rule: scale out by one when visible messages stayed above this...
    pub step_out_above: u64,
    /// ...scale in by one when they stayed below this...
    pub step_in_below: u64,
    /// ...for this long (the reference: two 300 s periods)...
    pub step_evaluation_secs: u64,
    /// ...and no change within this long of the last one.
    pub step_cooldown_secs: u64,
    /// Target rule: runs further apart than this (or than the stabilisation window, if that is
    /// longer) break the history, and no scale-in happens until a whole window has been seen
    /// again. Keep it above the scaler's period.
    pub history_gap_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Target,
    Step,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            min: 0,
            max: 10,
            rule: Rule::Target,
            jobs_per_instance: 1,
            scale_in_stabilisation_secs: 300,
            step_out_above: 16,
            step_in_below: 8,
            step_evaluation_secs: 600,
            step_cooldown_secs: 300,
            history_gap_secs: 180,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [scaler] configuration: {0}")]
pub struct ConfigError(pub String);

impl PolicyConfig {
    /// Rejects what serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min > self.max {
            return Err(ConfigError(format!(
                "min ({}) is greater than max ({})",
                self.min, self.max
            )));
        }
        if self.jobs_per_instance == 0 {
            return Err(ConfigError(
                "jobs_per_instance must be at least 1".to_owned(),
            ));
        }
        if self.rule == Rule::Step && self.step_in_below > self.step_out_above {
            return Err(ConfigError(format!(
                "step_in_below ({}) is greater than step_out_above ({}): the step rule would \
                 flap",
                self.step_in_below, self.step_out_above
            )));
        }
        Ok(())
    }
}

/// What the policy sees on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub now: Secs,
    /// ApproximateNumberOfMessages.
    pub visible: u64,
    /// ApproximateNumberOfMessagesNotVisible: jobs running (or just finished).
    pub in_flight: u64,
    /// ApproximateNumberOfMessagesDelayed.
    pub delayed: u64,
    /// The fleet's target capacity (what was last asked for).
    pub target: u32,
    /// Instances running.
    pub fulfilled: u32,
    /// Workers that report a running job, when the backend knows.
    pub busy: Option<u32>,
}

/// What the policy remembers between runs. Serialisable, so a Lambda can keep it in a fleet
/// tag or a small S3 object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the capacity was last changed.
    pub last_change: Option<Secs>,
    /// Target rule: (time, recommendation) within the stabilisation window.
    #[serde(default)]
    pub recommendations: Vec<(Secs, u32)>,
    /// Target rule: since when the runs are unbroken (none further apart than
    /// `history_gap_secs`). A history that was lost, or has a gap, cannot vouch for the window,
    /// so no scale-in happens until a whole window has been seen again.
    #[serde(default)]
    pub since: Option<Secs>,
    /// Target rule: the time of the last run.
    #[serde(default)]
    pub last_run: Option<Secs>,
    /// Step rule: (time, visible) within the evaluation period.
    #[serde(default)]
    pub visible: Vec<(Secs, u64)>,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub desired: u32,
    /// A sentence for the log and `--dry-run`.
    pub reason: String,
    /// The history to keep for the next run.
    pub history: History,
}

impl Decision {
    pub fn changes(&self, observation: &Observation) -> bool {
        self.desired != observation.target
    }
}

/// Decides the capacity for `observation`.
pub fn decide(config: &PolicyConfig, observation: &Observation, history: &History) -> Decision {
    let mut decision = match config.rule {
        Rule::Target => target_rule(config, observation, history),
        Rule::Step => step_rule(config, observation, history),
    };
    if decision.desired != observation.target {
        decision.history.last_change = Some(observation.now);
    }
    decision
}

fn target_rule(config: &PolicyConfig, o: &Observation, history: &History) -> Decision {
    let work = o.visible + o.in_flight;
    let raw = work.div_ceil(u64::from(config.jobs_per_instance));
    let raw = u32::try_from(raw).unwrap_or(u32::MAX);
    let busy = o.busy.unwrap_or(0);
    let recommendation = raw.max(busy).clamp(config.min, config.max);

    let window = config.scale_in_stabilisation_secs;
    let mut recommendations: Vec<(Secs, u32)> = history
        .recommendations
        .iter()
        .copied()
        .filter(|&(t, _)| t <= o.now && o.now - t < window)
        .collect();
    let unbroken = history
        .last_run
        .is_some_and(|t| t <= o.now && o.now - t <= config.history_gap_secs.max(window));
    let since = match (unbroken, history.since) {
        (true, Some(since)) if since <= o.now => since,
        _ => o.now,
    };
    let seen_window = o.now - since >= window;
    recommendations.push((o.now, recommendation));
    let history = History {
        last_change: history.last_change,
        recommendations: recommendations.clone(),
        visible: Vec::new(),
        since: Some(since),
        last_run: Some(o.now),
    };

    let (desired, reason) = if recommendation >= o.target {
        let reason = if recommendation > o.target {
            format!(
                "scale out at once: {work} messages ({} visible, {} in flight) at {} per instance \
                 need {recommendation} (clamped to {}..={}){}",
                o.visible,
                o.in_flight,
                config.jobs_per_instance,
                config.min,
                config.max,
                busy_note(o.busy),
            )
        } else {
            format!(
                "steady: {work} messages at {} per instance need {recommendation}, as running",
                config.jobs_per_instance
            )
        };
        (recommendation, reason)
    } else if !seen_window {
        let reason = format!(
            "hold {}: {work} messages need {recommendation}, but only {} s of the {} s \
             stabilisation window have been seen (history new or interrupted)",
            o.target,
            o.now - since,
            window
        );
        (o.target, reason)
    } else {
        // Scale in to the highest recommendation of the window: lagging or dipping counters
        // must stay low for the whole window before an instance goes.
        let stable = recommendations
            .iter()
            .map(|&(_, r)| r)
            .max()
            .unwrap_or(recommendation)
            .max(busy)
            .min(o.target);
        let reason = if stable < o.target {
            format!(
                "scale in to {stable}: at most {stable} needed over the last {} s \
                 ({work} messages now){}",
                config.scale_in_stabilisation_secs,
                busy_note(o.busy)
            )
        } else {
            format!(
                "hold {}: {work} messages need {recommendation}, but the stabilisation window \
                 ({} s) still saw more{}",
                o.target,
                config.scale_in_stabilisation_secs,
                busy_note(o.busy)
            )
        };
        (stable, reason)
    };
    Decision {
        desired,
        reason,
        history,
    }
}

fn busy_note(busy: Option<u32>) -> String {
    match busy {
        Some(b) if b > 0 => format!("; never below the {b} busy workers"),
        _ => String::new(),
    }
}

fn step_rule(config: &PolicyConfig, o: &Observation, history: &History) -> Decision {
    let window_start = o.now.saturating_sub(config.step_evaluation_secs);
    let mut samples: Vec<(Secs, u64)> = history
        .visible
        .iter()
        .copied()
        .filter(|&(t, _)| t >= window_start && t <= o.now)
        .collect();
    samples.push((o.now, o.visible));
    let covered = samples
        .first()
        .is_some_and(|&(t, _)| o.now.saturating_sub(t) >= config.step_evaluation_secs);
    let all_above = samples.iter().all(|&(_, v)| v > config.step_out_above);
    let all_below = samples.iter().all(|&(_, v)| v < config.step_in_below);
    let cooling = history
        .last_change
        .is_some_and(|t| o.now.saturating_sub(t) < config.step_cooldown_secs);
    let current = o.target.clamp(config.min, config.max);
    let (desired, reason) = if current != o.target {
        (
            current,
            format!("bring {} into {}..={}", o.target, config.min, config.max),
        )
    } else if cooling {
        (
            o.target,
            "hold: in the cooldown after the last change".to_owned(),
        )
    } else if covered && all_above && o.target < config.max {
        (
            o.target + 1,
            format!(
                "step out by one: visible messages above {} for {} s",
                config.step_out_above, config.step_evaluation_secs
            ),
        )
    } else if covered && all_below && o.target > config.min {
        (
            o.target - 1,
            format!(
                "step in by one: visible messages below {} for {} s",
                config.step_in_below, config.step_evaluation_secs
            ),
        )
    } else {
        (o.target, format!("hold: {} visible", o.visible))
    };
    Decision {
        desired,
        reason,
        history: History {
            last_change: history.last_change,
            recommendations: Vec::new(),
            visible: samples,
            since: None,
            last_run: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(now: Secs, visible: u64, in_flight: u64, target: u32) -> Observation {
        Observation {
            now,
            visible,
            in_flight,
            delayed: 0,
            target,
            fulfilled: target,
            busy: None,
        }
    }

    /// Runs the policy over (time, visible, in-flight) samples, feeding each decision back as
    /// the next target; returns the desired capacities.
    fn run(config: &PolicyConfig, samples: &[(Secs, u64, u64)], start: u32) -> Vec<u32> {
        let mut history = History::default();
        let mut target = start;
        samples
            .iter()
            .map(|&(now, visible, in_flight)| {
                let d = decide(config, &obs(now, visible, in_flight, target), &history);
                history = d.history;
                target = d.desired;
                target
            })
            .collect()
    }

    #[test]
    fn one_visible_message_with_no_instance_gives_one() {
        let d = decide(
            &PolicyConfig::default(),
            &obs(0, 1, 0, 0),
            &History::default(),
        );
        assert_eq!(d.desired, 1);
        assert!(d.reason.contains("scale out at once"), "{}", d.reason);
        assert_eq!(d.history.last_change, Some(0));
    }

    #[test]
    fn target_table() {
        let config = PolicyConfig {
            jobs_per_instance: 2,
            max: 6,
            ..PolicyConfig::default()
        };
        // (visible, in flight, current target, expected desired)
        for (visible, in_flight, target, expected) in [
            (0, 0, 0, 0),
            (1, 0, 0, 1),
            (3, 0, 0, 2),
            (3, 2, 1, 3),
            (100, 0, 2, 6), // capped at max
            (4, 4, 4, 4),   // steady
        ] {
            let d = decide(
                &config,
                &obs(1_000, visible, in_flight, target),
                &History::default(),
            );
            assert_eq!(
                d.desired, expected,
                "{visible}+{in_flight} at {target}: {}",
                d.reason
            );
        }
    }

    #[test]
    fn scale_in_waits_for_the_stabilisation_window() {
        let config = PolicyConfig::default();
        // A burst of 5, then the queue drains at t=120.
        let samples = [
            (0, 5, 0),
            (60, 2, 3),
            (120, 0, 0),
            (180, 0, 0),
            (300, 0, 0),
            (359, 0, 0),
            (361, 0, 0),
        ];
        let desired = run(&config, &samples, 0);
        // Out at once; held while the 300 s window still holds the last recommendation of 5
        // (made at t=60); down to 0 once it has left the window.
        assert_eq!(desired, vec![5, 5, 5, 5, 5, 5, 0]);
    }

    #[test]
    fn lagging_counters_do_not_flap() {
        // Counters that read 0 every other minute (lag) while 4 jobs keep coming.
        let config = PolicyConfig::default();
        let samples: Vec<(Secs, u64, u64)> = (0..20)
            .map(|i| (i * 60, if i % 2 == 0 { 4 } else { 0 }, 0))
            .collect();
        let desired = run(&config, &samples, 0);
        assert!(desired.iter().all(|&d| d == 4), "{desired:?}");
    }

    #[test]
    fn never_below_busy_workers() {
        let config = PolicyConfig::default();
        let mut o = obs(10_000, 0, 0, 3);
        o.busy = Some(2);
        let seen = History {
            recommendations: vec![(9_800, 0)],
            since: Some(9_000),
            last_run: Some(9_940),
            ..History::default()
        };
        let d = decide(&config, &o, &seen);
        assert_eq!(d.desired, 2, "{}", d.reason);
        assert!(d.reason.contains("busy"), "{}", d.reason);
    }

    #[test]
    fn a_lost_or_broken_history_holds_until_a_whole_window_is_seen() {
        let config = PolicyConfig::default();
        // 3 instances, an empty queue, and no history (first run, or the state object lost).
        let samples: Vec<(Secs, u64, u64)> = (0..=5).map(|i| (10_000 + i * 60, 0, 0)).collect();
        let desired = run(&config, &samples, 3);
        assert_eq!(desired, vec![3, 3, 3, 3, 3, 0], "{desired:?}");
        // A gap longer than the window (the scaler was down) starts the count again.
        let d = decide(&config, &obs(10_300, 0, 0, 3), &History::default());
        let after_gap = decide(&config, &obs(20_000, 0, 0, 3), &d.history);
        assert_eq!(after_gap.desired, 3, "{}", after_gap.reason);
        assert!(
            after_gap.reason.contains("0 s of the 300 s"),
            "{}",
            after_gap.reason
        );
    }

    #[test]
    fn a_window_no_longer_than_the_period_still_scales_in() {
        // Found by the simulator: with a 60 s window and runs every 60 s, no earlier
        // recommendation is ever inside the window; that must not read as a broken history.
        let config = PolicyConfig {
            scale_in_stabilisation_secs: 60,
            ..PolicyConfig::default()
        };
        let samples = [(0, 2, 0), (60, 0, 0), (120, 0, 0)];
        assert_eq!(run(&config, &samples, 0), vec![2, 0, 0]);
    }

    #[test]
    fn min_keeps_a_warm_instance() {
        let config = PolicyConfig {
            min: 1,
            ..PolicyConfig::default()
        };
        let d = decide(&config, &obs(10_000, 0, 0, 1), &History::default());
        assert_eq!(d.desired, 1);
        assert!(!d.changes(&obs(10_000, 0, 0, 1)));
    }

    #[test]
    fn step_rule_needs_the_whole_evaluation_period_and_cools_down() {
        let config = PolicyConfig {
            rule: Rule::Step,
            min: 1,
            max: 6,
            ..PolicyConfig::default()
        };
        // 20 visible from t=0: out by one only at t=600, then nothing until the cooldown ends
        // and another full period above the threshold has passed.
        let samples: Vec<(Secs, u64, u64)> = (0..=20).map(|i| (i * 60, 20, 0)).collect();
        let desired = run(&config, &samples, 1);
        assert_eq!(desired[9], 1, "{desired:?}");
        assert_eq!(desired[10], 2, "{desired:?}");
        assert_eq!(desired[14], 2, "cooldown: {desired:?}");
        assert_eq!(desired[15], 3, "{desired:?}");
        // Drained: in by one after a full period below 8.
        let samples: Vec<(Secs, u64, u64)> = (0..=10).map(|i| (i * 60, 0, 0)).collect();
        assert_eq!(run(&config, &samples, 3).last(), Some(&2));
    }

    #[test]
    fn bad_configs_are_rejected_naming_the_key() {
        let err = PolicyConfig {
            min: 3,
            max: 2,
            ..PolicyConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().contains("min (3) is greater than max (2)"),
            "{err}"
        );
        let err = PolicyConfig {
            jobs_per_instance: 0,
            ..PolicyConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("jobs_per_instance"), "{err}");
        let parsed: Result<PolicyConfig, _> = toml::from_str("max = 4\njobs_per_instanse = 2\n");
        assert!(
            parsed
                .unwrap_err()
                .to_string()
                .contains("jobs_per_instanse")
        );
        let parsed: PolicyConfig = toml::from_str("rule = \"step\"\nmax = 6\nmin = 1\n").unwrap();
        assert_eq!(parsed.rule, Rule::Step);
        parsed.validate().unwrap();
    }

    #[test]
    fn history_round_trips_through_json_and_decides_the_same() {
        let config = PolicyConfig::default();
        let first = decide(&config, &obs(0, 3, 0, 0), &History::default());
        let stored = serde_json::to_string(&first.history).unwrap();
        let restored: History = serde_json::from_str(&stored).unwrap();
        assert_eq!(restored, first.history);
        // A later run with an empty queue holds because of the stored recommendation.
        let later = decide(&config, &obs(120, 0, 0, 3), &restored);
        assert_eq!(later.desired, 3, "{}", later.reason);
        // Once the burst has left the window, the stored history lets it scale in...
        let after = decide(&config, &obs(300, 0, 0, 3), &later.history);
        assert_eq!(after.desired, 0, "{}", after.reason);
        // ...which a run without the history must not do.
        let forgetful = decide(&config, &obs(300, 0, 0, 3), &History::default());
        assert_eq!(forgetful.desired, 3, "{}", forgetful.reason);
    }
}
