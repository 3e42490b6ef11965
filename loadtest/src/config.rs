//! What a run does: the URL, how many viewers, how fast they arrive, how long they stay, which
//! variant they pick, and the hard limits that keep a run bounded.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// The most viewers one run may start: more than one machine's ports and file descriptors
/// hold comfortably; run several generators instead.
pub const MAX_VIEWERS: u32 = 20_000;
/// The longest run, ramp and full load together.
pub const MAX_RUN: Duration = Duration::from_secs(3600);
/// After the deadline, viewers get this long to wind down before their tasks are aborted.
pub const GRACE: Duration = Duration::from_secs(3);

/// How a viewer picks a variant from a master playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VariantPolicy {
    /// The first listed (what hls.js starts with before it has a bandwidth estimate).
    First,
    /// The highest `BANDWIDTH` (a player on a fast link settles there; the heaviest load).
    Highest,
    /// The lowest `BANDWIDTH`.
    Lowest,
    /// The highest `BANDWIDTH` at or below this many bits per second, else the lowest.
    Bandwidth(u64),
}

impl FromStr for VariantPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(VariantPolicy::First),
            "highest" => Ok(VariantPolicy::Highest),
            "lowest" => Ok(VariantPolicy::Lowest),
            other => other
                .parse::<u64>()
                .ok()
                .filter(|&bps| bps > 0)
                .map(VariantPolicy::Bandwidth)
                .ok_or_else(|| {
                    format!(
                        "unknown variant policy {other:?}: use first, highest, lowest or a \
                         bandwidth in bits per second (e.g. 3000000)"
                    )
                }),
        }
    }
}

impl fmt::Display for VariantPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariantPolicy::First => f.write_str("first"),
            VariantPolicy::Highest => f.write_str("highest"),
            VariantPolicy::Lowest => f.write_str("lowest"),
            VariantPolicy::Bandwidth(bps) => write!(f, "{bps}"),
        }
    }
}

/// Named sets of viewers, ramp and duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The reference architecture's JMeter lab: 150 viewers over a 15 s ramp, 180 s.
    JmeterLab,
}

impl Preset {
    /// (viewers, ramp, duration).
    pub fn values(self) -> (u32, Duration, Duration) {
        match self {
            Preset::JmeterLab => (150, Duration::from_secs(15), Duration::from_secs(180)),
        }
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jmeter-lab" => Ok(Preset::JmeterLab),
            other => Err(format!(
                "unknown preset {other:?}: the one preset is jmeter-lab"
            )),
        }
    }
}

/// A run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The master playlist (or a media playlist: viewers then skip the variant choice).
    pub url: String,
    /// Viewers to start, one by one, evenly over `ramp`.
    pub viewers: u32,
    /// Time over which viewers join.
    #[serde(serialize_with = "secs")]
    pub ramp: Duration,
    /// Time at full load after the ramp; the run ends at `ramp + duration` at the latest.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub variant: VariantPolicy,
    /// Limit on one request, body included. Blocking playlist reloads get three target
    /// durations on top, the longest a server may hold them (RFC 8216bis 6.2.5.2).
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    /// Progress line on stderr this often; zero for none.
    #[serde(serialize_with = "secs")]
    pub progress: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Config {
    /// A run of `viewers` against `url` with the defaults: highest variant, 10 s timeout,
    /// progress every 5 s.
    pub fn new(url: impl Into<String>, viewers: u32, ramp: Duration, duration: Duration) -> Self {
        Config {
            url: url.into(),
            viewers,
            ramp,
            duration,
            variant: VariantPolicy::Highest,
            timeout: Duration::from_secs(10),
            progress: Duration::from_secs(5),
        }
    }

    /// Checks the hard limits and the URL, naming the flag to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.viewers == 0 {
            return Err(ConfigError::NoViewers);
        }
        if self.viewers > MAX_VIEWERS {
            return Err(ConfigError::TooManyViewers(self.viewers));
        }
        if self.duration.is_zero() {
            return Err(ConfigError::NoDuration);
        }
        if self.ramp + self.duration > MAX_RUN {
            return Err(ConfigError::TooLong(self.ramp + self.duration));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::NoTimeout);
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
            _ => Err(ConfigError::BadUrl(self.url.clone())),
        }
    }

    /// Ramp and full load: when the run ends at the latest (plus [`GRACE`]).
    pub fn run_time(&self) -> Duration {
        self.ramp + self.duration
    }
}

/// A run that would not be bounded or could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--viewers must be at least 1")]
    NoViewers,
    #[error(
        "--viewers {0} is above the limit of {max} viewers for one load generator: \
         run several generators on several machines instead",
        max = MAX_VIEWERS
    )]
    TooManyViewers(u32),
    #[error("--duration must be more than 0 seconds")]
    NoDuration,
    #[error(
        "--ramp plus --duration is {}s, above the limit of {}s (1 hour) for one run",
        .0.as_secs(),
        MAX_RUN.as_secs()
    )]
    TooLong(Duration),
    #[error("--timeout must be more than 0 seconds")]
    NoTimeout,
    #[error("--url {0:?} is not an http:// or https:// URL of a playlist")]
    BadUrl(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(viewers: u32, ramp: u64, duration: u64) -> Config {
        Config::new(
            "http://127.0.0.1:8080/hls/live.m3u8",
            viewers,
            Duration::from_secs(ramp),
            Duration::from_secs(duration),
        )
    }

    #[test]
    fn limits_are_enforced_at_their_edges() {
        assert_eq!(config(MAX_VIEWERS, 0, 10).validate(), Ok(()));
        assert_eq!(
            config(MAX_VIEWERS + 1, 0, 10).validate(),
            Err(ConfigError::TooManyViewers(MAX_VIEWERS + 1))
        );
        assert_eq!(config(1, 600, 3000).validate(), Ok(()));
        assert_eq!(
            config(1, 601, 3000).validate(),
            Err(ConfigError::TooLong(Duration::from_secs(3601)))
        );
        assert_eq!(config(0, 0, 10).validate(), Err(ConfigError::NoViewers));
        assert_eq!(config(1, 0, 0).validate(), Err(ConfigError::NoDuration));
        let mut bad = config(1, 0, 1);
        bad.url = "rtmp://host/live/x".into();
        assert!(matches!(bad.validate(), Err(ConfigError::BadUrl(_))));
    }

    #[test]
    fn variant_policies_parse_from_their_names_or_a_bandwidth() {
        assert_eq!("first".parse(), Ok(VariantPolicy::First));
        assert_eq!("lowest".parse(), Ok(VariantPolicy::Lowest));
        assert_eq!("3000000".parse(), Ok(VariantPolicy::Bandwidth(3_000_000)));
        assert!("0".parse::<VariantPolicy>().is_err());
        assert!("best".parse::<VariantPolicy>().is_err());
        assert_eq!(
            Preset::JmeterLab.values(),
            (150, Duration::from_secs(15), Duration::from_secs(180))
        );
    }
}
