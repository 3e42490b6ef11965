//! The scaling simulator: replays a day of recordings against a model of the worker fleet
//! and compares scaling policies on it (`spherecast scaler simulate --trace FILE`). Every
//! candidate runs the real [`crate::decide`]; only the world around it is modelled.
//!
//! # Trace format
//!
//! CSV, one recording per line: `arrival,duration[,name]`.
//! - `arrival`: when the recording's S3 event is on the queue (the session's end plus the
//!   upload), as seconds from the trace's start (`35100`) or as `HH:MM:SS` (`09:45:00`),
//!   which is the same clock.
//! - `duration`: seconds of video (`2700`) or `HH:MM:SS`. Fractions round up to whole
//!   seconds, the simulator's resolution.
//! - `name`: optional label.
//!
//! A first line starting with `arrival` is a header; `#` starts a comment; blank lines are
//! skipped. Lines need not be sorted. An empty trace, a bad number, a negative or zero
//! duration is an error naming the line. `scaler/traces/` holds two: a conference day and a
//! steady trickle.
//!
//! # Simulation file
//!
//! Optional, TOML (or JSON when the name ends in `.json`); unknown keys are an error:
//!
//! ```toml
//! fixed_fleet = 6              # size of the fixed-fleet candidate (default: ours' max, 10)
//! [model]                      # any key of Model; see its fields for what each means
//! boot_min_secs = 120
//! idle_shutdown_secs = 900
//! [[candidate]]                # added to ours, the reference and the fixed fleet
//! name = "ours-2-slots"
//! slots = 2                    # workers run two jobs at once...
//! [candidate.policy]           # ...and the policy counts two per instance
//! jobs_per_instance = 2
//! ```
//!
//! # What the model leaves out
//!
//! One instance type and one speed; no failed transcodes or dead letters; S3 events arrive
//! once (a duplicate would be skipped in seconds by the worker); spot capacity is always
//! there (a launch never waits beyond the boot delay); instances are billed per second from
//! the launch request, without EC2's 60 s minimum.

mod candidate;
mod engine;
mod model;
mod outcome;
mod report;
mod svg;
mod trace;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use candidate::{Candidate, ScaleIn};
pub use engine::simulate;
pub use model::Model;
pub use outcome::{
    Attempt, Ended, InstanceRecord, JobRecord, Left, Outcome, Sample, Summary, percentile,
};
pub use report::{duration, headline, table};
pub use svg::chart;
pub use trace::{Recording, Trace, TraceError, clock};

/// What can go wrong, saying which file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace {path}: {source}")]
    Trace { path: PathBuf, source: TraceError },
    #[error("simulation file {path}: {message}")]
    Setup { path: PathBuf, message: String },
    #[error("invalid [model]: {0}")]
    Model(String),
    #[error("candidate {name:?}: {message}")]
    Candidate { name: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A simulation file: the model and the candidates to compare.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    #[serde(default)]
    pub model: Model,
    /// Size of the fixed-fleet candidate; default: ours' max.
    #[serde(default)]
    pub fixed_fleet: Option<u32>,
    /// Candidates compared besides the default three.
    #[serde(default, rename = "candidate")]
    pub extra: Vec<Candidate>,
}

impl Setup {
    /// Parses a simulation file: JSON when the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Setup, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.to_owned(),
            source,
        })?;
        let setup = |message: String| SimError::Setup {
            path: path.to_owned(),
            message,
        };
        let parsed: Setup = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| setup(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| setup(e.to_string()))?
        };
        parsed.model.validate()?;
        let candidates = parsed.candidates();
        for candidate in &candidates {
            candidate.validate()?;
        }
        for (i, candidate) in candidates.iter().enumerate() {
            if candidates[..i].iter().any(|c| c.name == candidate.name) {
                return Err(setup(format!(
                    "two candidates are named {:?}; names label rows and chart files",
                    candidate.name
                )));
            }
        }
        Ok(parsed)
    }

    /// Ours, the reference, the fixed fleet, then the file's own.
    pub fn candidates(&self) -> Vec<Candidate> {
        let fixed = self
            .fixed_fleet
            .unwrap_or(crate::policy::PolicyConfig::default().max);
        let mut candidates = Candidate::defaults(fixed);
        candidates.extend(self.extra.iter().cloned());
        candidates
    }
}

/// `spherecast scaler simulate`: runs every candidate over the trace at `trace`, with the
/// simulation file at `setup` if any, writes `TRACE-STEM-CANDIDATE.svg` into `svg_dir` if
/// given (creating it), and returns the table to print (ending with the charts' paths).
pub fn run(trace: &Path, setup: Option<&Path>, svg_dir: Option<&Path>) -> Result<String, SimError> {
    let recordings = Trace::load(trace)?;
    let setup = match setup {
        Some(path) => Setup::load(path)?,
        None => Setup::default(),
    };
    let candidates = setup.candidates();
    let outcomes = candidates
        .iter()
        .map(|c| simulate(&recordings, &setup.model, c))
        .collect::<Result<Vec<_>, _>>()?;
    let trace_name = trace.file_name().map_or_else(
        || trace.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut out = table(
        &trace_name,
        &recordings,
        &setup.model,
        &candidates,
        &outcomes,
    );
    if let Some(dir) = svg_dir {
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| SimError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        let stem = trace
            .file_stem()
            .map_or_else(|| "trace".to_owned(), |s| s.to_string_lossy().into_owned());
        for outcome in &outcomes {
            let path = dir.join(format!("{stem}-{}.svg", outcome.candidate));
            let title = format!("{} on {trace_name}", outcome.candidate);
            let svg = chart(outcome, &title, &headline(&outcome.summary()));
            std::fs::write(&path, svg).map_err(write_error(&path))?;
            out.push_str(&format!("chart: {}\n", path.display()));
        }
    }
    Ok(out)
}
