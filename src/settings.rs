//! The configuration file: one TOML document with a section per service. Every section
//! rejects unknown keys; command-line flags (and their environment variables) override it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub origin: origin::OriginConfig,
    pub ingress: IngressSettings,
    pub queue: QueueSettings,
    pub aws: AwsSettings,
    pub worker: worker::WorkerConfig,
    pub egress: EgressSettings,
    pub scaler: scaler::ScalerConfig,
}

/// The egress bucket the worker publishes ladders to.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    /// An S3 bucket name. Unset: a local folder, `DATA/egress`.
    pub bucket: Option<String>,
    /// Local folder used when no bucket is set (default `DATA/egress`).
    pub dir: Option<PathBuf>,
}

/// The ingress bucket finished recordings are uploaded to.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSettings {
    /// An S3 bucket name. Unset: a local folder, `DATA/ingress`.
    pub bucket: Option<String>,
    /// Local folder used when no bucket is set (default `DATA/ingress`).
    pub dir: Option<PathBuf>,
}

/// Where the ingress events go. With an S3 bucket, S3 sends them itself and the origin sends
/// none; with a local folder, the origin puts them on the embedded queue.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// An SQS queue URL. Unset: the embedded queue in `DATA/queue`.
    pub url: Option<String>,
    /// How long a received message stays invisible (embedded queue).
    pub visibility_timeout_secs: u64,
    /// Receives before a message goes to the dead-letter queue (embedded queue).
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            url: None,
            visibility_timeout_secs: 120,
            max_receive_count: 5,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// An S3/SQS-compatible endpoint (moto, MinIO). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

impl Settings {
    /// Reads a config file; a missing `path` gives the defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn queue_settings(&self) -> cloud::QueueSettings {
        cloud::QueueSettings {
            visibility_timeout: Duration::from_secs(self.queue.visibility_timeout_secs),
            max_receive_count: self.queue.max_receive_count.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_in_any_section_is_an_error_naming_it() {
        for (doc, key) in [
            ("[origin]\nrtmp_lisen = \"127.0.0.1:1\"\n", "rtmp_lisen"),
            ("[ingress]\nbukket = \"x\"\n", "bukket"),
            ("[nope]\n", "nope"),
            ("[worker]\nconcurency = 2\n", "concurency"),
            (
                "[[worker.rungs]]\nname = \"a\"\nheight = 2\nvideo_kbps = 1\naudio_kbps = 1\nfps = 3\n",
                "fps",
            ),
            ("[egress]\nbuket = \"x\"\n", "buket"),
            ("[scaler]\nfleat = \"x\"\n", "fleat"),
            ("[scaler.policy]\nmaximum = 3\n", "maximum"),
        ] {
            let err = toml::from_str::<Settings>(doc).unwrap_err().to_string();
            assert!(err.contains(key), "{doc}: {err}");
        }
    }

    #[test]
    fn worker_ladder_parses_with_defaults_per_rung() {
        let s: Settings = toml::from_str(
            "[worker]\nsegment_secs = 4\n[[worker.rungs]]\nname = \"540p\"\nheight = 540\nvideo_kbps = 1500\naudio_kbps = 96\n",
        )
        .unwrap();
        assert_eq!(s.worker.segment_secs, 4);
        assert_eq!(s.worker.rungs.len(), 1);
        assert_eq!(s.worker.rungs[0].preset, "veryfast");
        assert_eq!(s.worker.concurrency, 1);
        s.worker.validate().unwrap();
    }

    #[test]
    fn nested_origin_sections_parse() {
        let s: Settings =
            toml::from_str("[origin.hls]\nwindow = 4\n[origin.publish]\nkeys = [\"k\"]\n").unwrap();
        assert_eq!(s.origin.hls.window, 4);
        assert_eq!(s.origin.publish.keys, vec!["k".to_string()]);
    }
}
