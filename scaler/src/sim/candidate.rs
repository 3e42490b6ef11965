//! Candidates: a scaling policy together with what the fleet and its workers do around it.

use serde::Deserialize;

use super::SimError;
use crate::policy::{PolicyConfig, Rule};

/// What the fleet does when its target drops below the instances it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleIn {
    /// Ours: a Spot Fleet with `ExcessCapacityTerminationPolicy=noTermination` (or a group
    /// whose busy workers protect themselves) kills nobody; instances leave when their worker
    /// powers them off, idle. The fleet only launches while it has fewer than the target.
    #[default]
    NoTermination,
    /// The reference: lowering an Auto Scaling group's desired capacity (or a Spot Fleet's
    /// target with the default policy) terminates instances at once. AWS picks them by
    /// zone balance and launch template age, blind to the work on them: modelled as a
    /// uniformly random choice, so busy workers die and their jobs come back after the
    /// visibility timeout.
    Terminate,
}

/// One contender in a comparison: a `[[candidate]]` table in a simulation file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// Names the table row and the chart file (`TRACE-NAME.svg`): letters, digits, `-`, `_`.
    pub name: String,
    /// The policy, exactly as `[scaler.policy]` takes it; the real [`crate::decide`] runs it.
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub scale_in: ScaleIn,
    /// Workers power their instance off after the model's `idle_shutdown_secs` without a
    /// job.
    #[serde(default = "yes")]
    pub idle_shutdown: bool,
    /// Overrides the model's `idle_shutdown_secs` for this candidate's workers.
    #[serde(default)]
    pub idle_shutdown_secs: Option<u64>,
    /// The backend tells the policy how many workers are busy (`Observation::busy`). A Spot
    /// Fleet does not know; it would take asking every worker's `/status`.
    #[serde(default)]
    pub reports_busy: bool,
    /// Jobs per worker, overriding the model's `slots` (set it with the policy's
    /// `jobs_per_instance` to try workers that run several jobs at once).
    #[serde(default)]
    pub slots: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Candidate {
    /// Ours: the target rule with the defaults `[scaler.policy]` ships, a Spot Fleet that
    /// never terminates on scale-in, workers that power off when idle.
    pub fn ours() -> Candidate {
        Candidate {
            name: "ours".to_owned(),
            policy: PolicyConfig::default(),
            scale_in: ScaleIn::NoTermination,
            idle_shutdown: true,
            idle_shutdown_secs: None,
            reports_busy: false,
            slots: None,
        }
    }

    /// The reference architecture: CloudWatch step alarms (+1 above 16 visible for 2x300 s,
    /// -1 below 8 for 2x300 s, 300 s cooldown, 1 to 6 instances) on a group that terminates
    /// on scale-in, with workers that run until terminated. It is given the same fresh
    /// counters as ours (CloudWatch's are older), which flatters it.
    pub fn reference() -> Candidate {
        Candidate {
            name: "reference".to_owned(),
            policy: PolicyConfig {
                rule: Rule::Step,
                min: 1,
                max: 6,
                step_out_above: 16,
                step_in_below: 8,
                step_evaluation_secs: 600,
                step_cooldown_secs: 300,
                ..PolicyConfig::default()
            },
            scale_in: ScaleIn::Terminate,
            idle_shutdown: false,
            idle_shutdown_secs: None,
            reports_busy: false,
            slots: None,
        }
    }

    /// A fleet of `size` instances, up before the first recording and never changed: the
    /// target rule with min = max = `size`, so the real policy still runs.
    pub fn fixed(size: u32) -> Candidate {
        Candidate {
            name: format!("fixed-{size}"),
            policy: PolicyConfig {
                min: size,
                max: size,
                ..PolicyConfig::default()
            },
            scale_in: ScaleIn::NoTermination,
            idle_shutdown: false,
            idle_shutdown_secs: None,
            reports_busy: false,
            slots: None,
        }
    }

    /// Ours, the reference and a fixed fleet of `fixed_size`.
    pub fn defaults(fixed_size: u32) -> Vec<Candidate> {
        vec![
            Candidate::ours(),
            Candidate::reference(),
            Candidate::fixed(fixed_size),
        ]
    }

    /// Rejects a bad name or policy, naming the candidate.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |message: String| {
            Err(SimError::Candidate {
                name: self.name.clone(),
                message,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "name must be letters, digits, `-` or `_` (it names the chart's file)".to_owned(),
            );
        }
        if self.slots == Some(0) {
            return bad("slots must be at least 1".to_owned());
        }
        if let Err(e) = self.policy.validate() {
            return bad(e.to_string());
        }
        Ok(())
    }

    /// Seconds an idle worker waits before powering off, if it does.
    pub fn idle_shutdown_after(&self, model_secs: u64) -> Option<u64> {
        self.idle_shutdown
            .then(|| self.idle_shutdown_secs.unwrap_or(model_secs))
    }

    /// One line for the table's legend.
    pub fn describe(&self, idle_shutdown_secs: u64) -> String {
        let p = &self.policy;
        let rule = match p.rule {
            _ if p.min == p.max => format!("{} instances, never changed", p.min),
            Rule::Target => format!(
                "target rule, {} to {} instances, {} job(s) per instance, scale-in after {} s",
                p.min, p.max, p.jobs_per_instance, p.scale_in_stabilisation_secs
            ),
            Rule::Step => format!(
                "step rule, {} to {} instances, +1 above {} / -1 below {} visible for {} s, \
                 {} s cooldown",
                p.min,
                p.max,
                p.step_out_above,
                p.step_in_below,
                p.step_evaluation_secs,
                p.step_cooldown_secs
            ),
        };
        let scale_in = match self.scale_in {
            ScaleIn::NoTermination => "scale-in kills nobody",
            ScaleIn::Terminate => "scale-in terminates (busy or not)",
        };
        let idle = match self.idle_shutdown_after(idle_shutdown_secs) {
            Some(secs) => format!("workers power off after {secs} s idle"),
            None => "workers run until terminated".to_owned(),
        };
        let slots = match self.slots {
            Some(n) => format!("; {n} job(s) per worker"),
            None => String::new(),
        };
        format!("{rule}; {scale_in}; {idle}{slots}")
    }
}
