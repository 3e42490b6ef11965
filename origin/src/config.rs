//! The origin's configuration: a TOML section whose doc comments are the user documentation.
//! Unknown keys are rejected (serde names the key), every field has an explicit default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// Address the RTMP ingest listens on.
    pub rtmp_listen: SocketAddr,
    /// Address the HTTP server (HLS, player page, API, metrics) listens on.
    pub http_listen: SocketAddr,
    /// RTMP application name publishers must use: `rtmp://HOST/APP/NAME`.
    pub app: String,
    /// Folder for recordings in progress and the upload spool.
    pub data_dir: PathBuf,
    /// Listen for RTMP on a non-loopback address without any publish authorisation.
    pub allow_open_publish: bool,
    /// A publisher that sends no audio or video for this long is disconnected.
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
    /// Time a client has from connecting to publishing (handshake, connect, publish).
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Most RTMP connections open at once; more are refused.
    pub max_connections: usize,
    /// Bearer token for control endpoints (dropping a stream). Unset: control endpoints are off.
    pub api_token: Option<String>,
    pub publish: PublishConfig,
    pub hls: HlsConfig,
    pub record: RecordConfig,
    pub upload: UploadConfig,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            rtmp_listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            app: "live".into(),
            data_dir: PathBuf::from("data"),
            allow_open_publish: false,
            idle_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1000,
            api_token: None,
            publish: PublishConfig::default(),
            hls: HlsConfig::default(),
            record: RecordConfig::default(),
            upload: UploadConfig::default(),
        }
    }
}

/// Who may publish. With nothing configured every publish is allowed, which the origin only
/// accepts on a loopback address (or with `allow_open_publish`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Keys accepted for any stream name: `rtmp://HOST/live/NAME?key=SECRET`.
    pub keys: Vec<String>,
    /// Keys accepted for one stream name only (name = "secret").
    pub stream_keys: BTreeMap<String, String>,
    /// nginx-rtmp `on_publish` compatible callback: POST form (call, app, name, addr and the
    /// query arguments); 2xx allows, 3xx renames to the `Location` name, anything else rejects.
    pub on_publish: Option<String>,
    /// The callback's answer must arrive within this time, or the publish is rejected.
    #[serde(with = "millis")]
    pub on_publish_timeout: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            stream_keys: BTreeMap::new(),
            on_publish: None,
            on_publish_timeout: Duration::from_secs(3),
        }
    }
}

impl PublishConfig {
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty() || !self.stream_keys.is_empty() || self.on_publish.is_some()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Segments are cut on the first keyframe after this duration.
    #[serde(with = "millis")]
    pub target_duration: Duration,
    /// A segment is cut here even without a keyframe.
    #[serde(with = "millis")]
    pub max_fragment: Duration,
    /// Segments listed in the live playlist.
    pub window: usize,
    /// After the publisher stops, the final playlist and segments stay this long.
    #[serde(with = "secs")]
    pub linger: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(2),
            max_fragment: Duration::from_secs(10),
            window: 6,
            linger: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record every session to FLV.
    pub enabled: bool,
    /// A recording rolls over to a new part on the first keyframe past this size.
    pub max_size_kib: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_size_kib: 128_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Key prefix in the ingress bucket.
    pub prefix: String,
    /// First retry delay; doubles up to `max_backoff`.
    #[serde(with = "millis")]
    pub min_backoff: Duration,
    #[serde(with = "secs")]
    pub max_backoff: Duration,
    /// On shutdown, time allowed for uploads to finish before the rest waits for the next start.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Durations written as whole seconds in TOML (`idle_timeout = 10`).
mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Durations written as milliseconds in TOML (`target_duration = 2000`).
mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = toml::from_str::<OriginConfig>("[hls]\nwindoww = 3\n").unwrap_err();
        assert!(err.to_string().contains("windoww"), "{err}");
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let cfg: OriginConfig = toml::from_str("[hls]\nwindow = 3\n").unwrap();
        assert_eq!(cfg.hls.window, 3);
        assert_eq!(cfg.hls.target_duration, Duration::from_secs(2));
        assert_eq!(cfg.record.max_size_kib, 128_000);
    }
}
