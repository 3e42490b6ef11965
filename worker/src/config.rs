//! The `[worker]` section of the configuration file. Doc comments are the user documentation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How the worker consumes the queue and what it makes of each recording.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Jobs run at once. Each free slot takes one message.
    pub concurrency: usize,
    /// Only keys ending with one of these (case-insensitive) are transcoded; events for other
    /// keys are deleted with a log line.
    pub suffixes: Vec<String>,
    /// HLS segment length in seconds; a whole multiple of `keyframe_interval_secs`.
    pub segment_secs: u32,
    /// An IDR frame every this many seconds, at the same instants in every rendition.
    pub keyframe_interval_secs: u32,
    /// Output frame rate cap (Apple's guidance: at most 60). Faster sources are decimated.
    pub max_frame_rate: u32,
    /// The video ladder, tallest first. Rungs taller than the source are dropped.
    pub rungs: Vec<Rung>,
    /// Bitrate of the audio-only rendition in kbit/s; 0 leaves it out.
    pub audio_only_kbps: u32,
    /// Folder for downloads and outputs in progress (default `DATA/work`).
    pub work_dir: Option<PathBuf>,
    /// Status and metrics endpoint (`/status`, `/metrics`, `/healthz`). Unset: none.
    pub http_listen: Option<SocketAddr>,
    /// While a job runs its message stays invisible for this long, renewed every
    /// `heartbeat_secs`.
    pub visibility_secs: u64,
    pub heartbeat_secs: u64,
    /// A failed job's message comes back after `retry_base_secs * 2^(receives - 1)`, at most
    /// `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// A progress log line every this many seconds.
    pub progress_secs: u64,
    /// Exit after this many seconds without a job (and run `idle_command`). Unset: never.
    pub idle_shutdown_secs: Option<u64>,
    /// Run when the idle limit is reached, e.g. `["shutdown", "-h", "now"]` on an instance whose
    /// shutdown behaviour is terminate. Empty: just exit.
    pub idle_command: Vec<String>,
    /// In an EC2 Auto Scaling group: protect this instance from scale-in while a job runs
    /// (SetInstanceProtection; the instance and group are found through the metadata service
    /// at `spot.metadata_url`). Leave `idle_shutdown_secs` unset then: the group removes idle
    /// instances itself when the scaler lowers its capacity.
    pub scale_in_protection: bool,
    pub spot: SpotConfig,
    /// Cubemap renditions for 360 sources (`[worker.immersive]`).
    pub immersive: crate::immersive::ImmersiveConfig,
}

/// One rung of the video ladder.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Folder name of the rendition (`[A-Za-z0-9_-]`, not `audio`).
    pub name: String,
    /// Output height in pixels (even); the width follows the source's display aspect ratio.
    pub height: u32,
    /// Video bitrate. x264 runs in ABR mode with a VBV whose rate is this bitrate and whose
    /// buffer holds 2 s of it, so a 6 s segment peaks at no more than about 133 % of the
    /// average (Apple's limit is 200 %).
    pub video_kbps: u32,
    /// AAC bitrate muxed with this rung.
    pub audio_kbps: u32,
    /// x264 speed preset.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// H.264 profile: `baseline`, `main` or `high`.
    #[serde(default = "default_profile")]
    pub profile: String,
}

/// Spot interruption handling (EC2 instance metadata, IMDSv2).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpotConfig {
    /// Poll the instance metadata for interruption notices.
    pub enabled: bool,
    /// Base URL of the instance metadata service.
    pub metadata_url: String,
    pub poll_secs: u64,
    /// What a rebalance recommendation does: `drain` (finish the running jobs, take no more,
    /// exit), `interrupt` (same as an interruption notice) or `ignore`.
    pub rebalance: RebalanceAction,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceAction {
    Drain,
    Interrupt,
    Ignore,
}

fn default_preset() -> String {
    "veryfast".to_owned()
}

fn default_profile() -> String {
    "high".to_owned()
}

impl Rung {
    fn new(name: &str, height: u32, video_kbps: u32, audio_kbps: u32) -> Rung {
        Rung {
            name: name.to_owned(),
            height,
            video_kbps,
            audio_kbps,
            preset: default_preset(),
            profile: default_profile(),
        }
    }
}

/// The reference architecture's ladder (sizes and video bitrates) brought in line with Apple's
/// HLS authoring guidance: High profile everywhere (x264 picks the level; 1080p stays within
/// 4.2), the source frame rate up to 60, IDR every 2 s, 6 s segments, AAC at most 160 kbit/s,
/// peak well within 200 % of average. It stops at 1080p, the largest size Apple recommends for
/// H.264; add 1440p/2160p rungs in the config file where players can take them.
pub fn default_ladder() -> Vec<Rung> {
    vec![
        Rung::new("1080p", 1080, 3980, 128),
        Rung::new("720p", 720, 2136, 128),
        Rung::new("480p", 480, 1080, 96),
        Rung::new("360p", 360, 500, 96),
        Rung::new("240p", 240, 250, 64),
        Rung::new("180p", 180, 110, 64),
    ]
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 1,
            suffixes: vec![".flv".to_owned(), ".mp4".to_owned()],
            segment_secs: 6,
            keyframe_interval_secs: 2,
            max_frame_rate: 60,
            rungs: default_ladder(),
            audio_only_kbps: 64,
            work_dir: None,
            http_listen: None,
            visibility_secs: 120,
            heartbeat_secs: 60,
            retry_base_secs: 30,
            retry_max_secs: 900,
            progress_secs: 5,
            idle_shutdown_secs: None,
            idle_command: Vec::new(),
            scale_in_protection: false,
            spot: SpotConfig::default(),
            immersive: crate::immersive::ImmersiveConfig::default(),
        }
    }
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            enabled: false,
            metadata_url: "http://169.254.169.254".to_owned(),
            poll_secs: 5,
            rebalance: RebalanceAction::Drain,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid [worker] configuration: {0}")]
pub struct ConfigError(String);

pub(crate) const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

impl WorkerConfig {
    /// Checks what serde cannot: ranges, names, and that segments hold whole GOPs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.concurrency == 0 {
            return fail("concurrency must be at least 1".into());
        }
        if self.keyframe_interval_secs == 0 || self.segment_secs == 0 {
            return fail("segment_secs and keyframe_interval_secs must be at least 1".into());
        }
        if !self
            .segment_secs
            .is_multiple_of(self.keyframe_interval_secs)
        {
            return fail(format!(
                "segment_secs ({}) must be a whole multiple of keyframe_interval_secs ({}) so \
                 that every segment starts with an IDR and none is longer than the target",
                self.segment_secs, self.keyframe_interval_secs
            ));
        }
        if !(1..=240).contains(&self.max_frame_rate) {
            return fail("max_frame_rate must be between 1 and 240".into());
        }
        if self.rungs.is_empty() && self.audio_only_kbps == 0 {
            return fail("no rungs and no audio-only rendition: nothing to produce".into());
        }
        if self.heartbeat_secs == 0 || self.visibility_secs <= self.heartbeat_secs {
            return fail(format!(
                "visibility_secs ({}) must be longer than heartbeat_secs ({}), or messages \
                 reappear while their job runs",
                self.visibility_secs, self.heartbeat_secs
            ));
        }
        if self.suffixes.is_empty() {
            return fail("suffixes is empty: no key would ever be transcoded".into());
        }
        let mut names = std::collections::HashSet::new();
        for rung in &self.rungs {
            let encoder = RungEncoder {
                name: &rung.name,
                video_kbps: rung.video_kbps,
                audio_kbps: rung.audio_kbps,
                preset: &rung.preset,
                profile: &rung.profile,
            };
            check_rung("rung", &encoder, &mut names).map_err(ConfigError)?;
            if rung.height < 16 || rung.height % 2 != 0 || rung.height > 4320 {
                return fail(format!(
                    "rung {}: height {} must be even and between 16 and 4320",
                    rung.name, rung.height
                ));
            }
        }
        let flat_names: Vec<&str> = self.rungs.iter().map(|r| r.name.as_str()).collect();
        crate::immersive::validate(&self.immersive, &flat_names).map_err(ConfigError)?;
        Ok(())
    }

    pub fn visibility(&self) -> Duration {
        Duration::from_secs(self.visibility_secs)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// How long a failed message stays invisible before its next try.
    pub fn retry_delay(&self, receive_count: u32) -> Duration {
        let shift = receive_count.saturating_sub(1).min(20);
        let secs = self
            .retry_base_secs
            .saturating_mul(1 << shift)
            .min(self.retry_max_secs);
        Duration::from_secs(secs)
    }

    /// True when `key` ends with one of the configured suffixes (case-insensitive).
    pub fn wants(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.suffixes
            .iter()
            .any(|s| key.ends_with(&s.to_ascii_lowercase()))
    }
}

/// What every rung of a VOD ladder, flat or cubemap, is checked for.
pub(crate) struct RungEncoder<'a> {
    pub name: &'a str,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub preset: &'a str,
    pub profile: &'a str,
}

/// Checks a rung's name (a folder name, unique among `taken`, which it joins), bitrates,
/// x264 preset and profile; `kind` ("rung", "cubemap rung") starts each message.
pub(crate) fn check_rung<'a>(
    kind: &str,
    rung: &RungEncoder<'a>,
    taken: &mut std::collections::HashSet<&'a str>,
) -> Result<(), String> {
    let valid_name = !rung.name.is_empty()
        && rung.name.len() <= 32
        && rung
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name || rung.name == "audio" {
        return Err(format!(
            "{kind} name {:?} must be 1-32 characters of [A-Za-z0-9_-] and not \"audio\"",
            rung.name
        ));
    }
    if !taken.insert(rung.name) {
        return Err(format!("rung name {:?} is used twice", rung.name));
    }
    if rung.video_kbps == 0 || rung.audio_kbps == 0 {
        return Err(format!("{kind} {}: bitrates must be above 0", rung.name));
    }
    if !PRESETS.contains(&rung.preset) {
        return Err(format!(
            "{kind} {}: unknown x264 preset {:?} (one of {})",
            rung.name,
            rung.preset,
            PRESETS.join(", ")
        ));
    }
    if !["baseline", "main", "high"].contains(&rung.profile) {
        return Err(format!(
            "{kind} {}: profile {:?} must be baseline, main or high",
            rung.name, rung.profile
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn segments_must_hold_whole_gops() {
        let config = WorkerConfig {
            segment_secs: 5,
            ..WorkerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("whole multiple"), "{err}");
    }

    #[test]
    fn bad_rungs_are_named_in_the_error() {
        for (rung, expect) in [
            (Rung::new("../x", 720, 1, 1), "../x"),
            (Rung::new("audio", 720, 1, 1), "audio"),
            (Rung::new("odd", 721, 1, 1), "height 721"),
            (
                Rung {
                    preset: "quick".into(),
                    ..Rung::new("p", 720, 1, 1)
                },
                "quick",
            ),
        ] {
            let config = WorkerConfig {
                rungs: vec![rung],
                ..WorkerConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn heartbeat_must_be_shorter_than_visibility() {
        let config = WorkerConfig {
            visibility_secs: 60,
            heartbeat_secs: 60,
            ..WorkerConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let config = WorkerConfig::default();
        assert_eq!(config.retry_delay(1), Duration::from_secs(30));
        assert_eq!(config.retry_delay(2), Duration::from_secs(60));
        assert_eq!(config.retry_delay(4), Duration::from_secs(240));
        assert_eq!(config.retry_delay(40), Duration::from_secs(900));
    }

    #[test]
    fn suffixes_match_case_insensitively() {
        let config = WorkerConfig::default();
        assert!(config.wants("live/a b+c.FLV"));
        assert!(config.wants("x.mp4"));
        assert!(!config.wants("x.mp4.part"));
        assert!(!config.wants("notes.txt"));
    }
}
