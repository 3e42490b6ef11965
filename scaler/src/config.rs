//! The `[scaler]` section of the configuration file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::policy::{ConfigError, PolicyConfig};

/// ```toml
/// [scaler]
/// backend = "spot-fleet"            # or "auto-scaling-group"
/// fleet = "sfr-0123..."             # the Spot Fleet request id, or the group's name
/// interval_secs = 60                # the loop runner's period
/// state = "s3://bucket/scaler/state.json"   # or a local path
/// [scaler.policy]
/// min = 0
/// max = 10
/// jobs_per_instance = 1
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerConfig {
    /// What kind of fleet `fleet` names. Unset: no fleet, so the scaler cannot run.
    pub backend: Option<BackendKind>,
    /// The Spot Fleet request id (`sfr-…`) or the Auto Scaling group's name.
    pub fleet: Option<String>,
    /// Seconds between two runs of `spherecast scaler` (the loop).
    pub interval_secs: u64,
    /// Where the policy's history is kept between runs: `s3://BUCKET/KEY` or a file path.
    /// Unset: `DATA/scaler/state.json`. A cron job or a Lambda has no memory of its own.
    pub state: Option<String>,
    pub policy: PolicyConfig,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            backend: None,
            fleet: None,
            interval_secs: 60,
            state: None,
            policy: PolicyConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// An EC2 Spot Fleet request of type `maintain`.
    SpotFleet,
    /// An EC2 Auto Scaling group.
    AutoScalingGroup,
}

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl StateLocation {
    /// `s3://BUCKET/KEY`, or anything else as a file path.
    pub fn parse(text: &str) -> Result<StateLocation, ConfigError> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.trim().is_empty() {
                return Err(ConfigError("scaler.state is empty".to_owned()));
            }
            return Ok(StateLocation::File(PathBuf::from(text)));
        };
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(StateLocation::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(ConfigError(format!(
                "scaler.state {text:?} is not s3://BUCKET/KEY"
            ))),
        }
    }
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

impl ScalerConfig {
    /// Rejects what serde cannot, naming the key. A missing fleet is only an error when the
    /// scaler runs against one (the simulator needs none), see [`ScalerConfig::fleet`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.policy.validate()?;
        if self.interval_secs == 0 {
            return Err(ConfigError(
                "scaler.interval_secs must be at least 1".to_owned(),
            ));
        }
        if self.interval_secs >= self.policy.history_gap_secs {
            return Err(ConfigError(format!(
                "scaler.interval_secs ({}) must be below scaler.policy.history_gap_secs ({}): \
                 every run would read as a gap in the history and nothing would ever scale in",
                self.interval_secs, self.policy.history_gap_secs
            )));
        }
        if let Some(state) = &self.state {
            StateLocation::parse(state)?;
        }
        if let Some(fleet) = &self.fleet
            && fleet.trim().is_empty()
        {
            return Err(ConfigError("scaler.fleet is empty".to_owned()));
        }
        Ok(())
    }

    /// The backend and the fleet's id, or an error naming the missing key.
    pub fn fleet(&self) -> Result<(BackendKind, &str), ConfigError> {
        match (self.backend, self.fleet.as_deref()) {
            (Some(kind), Some(fleet)) => Ok((kind, fleet)),
            (None, _) => Err(ConfigError(
                "scaler.backend is not set (\"spot-fleet\" or \"auto-scaling-group\")".to_owned(),
            )),
            (Some(_), None) => Err(ConfigError(
                "scaler.fleet is not set (the Spot Fleet request id or the Auto Scaling group \
                 name)"
                    .to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScalerConfig, String> {
        let config: ScalerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(
            r#"
            backend = "auto-scaling-group"
            fleet = "workers"
            interval_secs = 30
            state = "s3://ops/scaler/state.json"
            [policy]
            min = 1
            max = 20
            jobs_per_instance = 2
            "#,
        )
        .unwrap();
        assert_eq!(
            config.fleet().unwrap(),
            (BackendKind::AutoScalingGroup, "workers")
        );
        assert_eq!(config.policy.max, 20);
        assert_eq!(
            StateLocation::parse(config.state.as_deref().unwrap()).unwrap(),
            StateLocation::S3 {
                bucket: "ops".into(),
                key: "scaler/state.json".into()
            }
        );
    }

    #[test]
    fn bad_sections_are_rejected_naming_the_key() {
        for (text, expected) in [
            (
                "[policy]\nmin = 3\nmax = 2",
                "min (3) is greater than max (2)",
            ),
            ("[policy]\njobs_per_instance = 0", "jobs_per_instance"),
            ("interval_secs = 0", "scaler.interval_secs"),
            ("state = \"s3://bucket-only\"", "scaler.state"),
            ("backend = \"lambda\"", "unknown variant `lambda`"),
            ("fleet = \"x\"\nsize = 3", "unknown field `size`"),
            ("fleet = \" \"", "scaler.fleet is empty"),
            (
                "interval_secs = 300",
                "must be below scaler.policy.history_gap_secs (180)",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn running_needs_a_backend_and_a_fleet() {
        let none = ScalerConfig::default();
        assert!(
            none.fleet()
                .unwrap_err()
                .to_string()
                .contains("scaler.backend")
        );
        let no_id = ScalerConfig {
            backend: Some(BackendKind::SpotFleet),
            ..ScalerConfig::default()
        };
        assert!(
            no_id
                .fleet()
                .unwrap_err()
                .to_string()
                .contains("scaler.fleet")
        );
        assert_eq!(
            StateLocation::parse("/var/lib/spherecast/scaler.json").unwrap(),
            StateLocation::File("/var/lib/spherecast/scaler.json".into())
        );
    }
}
