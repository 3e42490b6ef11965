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
    /// The default RTMP application: `rtmp://HOST/APP/NAME`, packaged as classic MPEG-TS HLS
    /// unless `[origin.applications.APP]` says otherwise.
    pub app: String,
    /// More applications, or other settings for `app`, by name (`[origin.applications.NAME]`).
    /// Publishes are accepted on `app` and on every application listed here; stream names are
    /// one namespace across all of them.
    pub applications: BTreeMap<String, ApplicationConfig>,
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
            applications: BTreeMap::new(),
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

/// How the streams of one RTMP application are packaged for HLS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApplicationConfig {
    /// `"ts"`: classic HLS with MPEG-TS segments (every player; `[origin.hls]` sets its
    /// timing). `"ll-hls"`: low-latency HLS (RFC 8216bis) with CMAF parts, preload hints and
    /// blocking playlist reload.
    pub hls: HlsFormat,
    /// LL-HLS: the longest a part may be (`PART-TARGET`), milliseconds.
    #[serde(with = "millis")]
    pub part_target: Duration,
    /// LL-HLS: segments are cut on the first keyframe after this duration, milliseconds.
    #[serde(with = "millis")]
    pub segment_target: Duration,
    /// Live ABR: with this table (even empty: `ladder = {}`), every stream of the application
    /// is also transcoded into a ladder of rungs (`NAME_480`, `NAME_960`, `NAME_1920` unless
    /// `rungs` says otherwise, never above the source) listed in the master playlist beside
    /// the passthrough `NAME_src`. Off unless set: it costs about a core per 1080p stream.
    pub ladder: Option<live::LiveAbrConfig>,
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        Self {
            hls: HlsFormat::Ts,
            part_target: Duration::from_millis(334),
            segment_target: Duration::from_secs(2),
            ladder: None,
        }
    }
}

/// The HLS flavour of an application.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum HlsFormat {
    #[serde(rename = "ts")]
    Ts,
    #[serde(rename = "ll-hls")]
    LlHls,
}

impl HlsFormat {
    pub fn label(self) -> &'static str {
        match self {
            HlsFormat::Ts => "ts",
            HlsFormat::LlHls => "ll-hls",
        }
    }
}

/// A configuration the origin refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error(
        "[origin.applications.{app}]: part_target ({part:?}) must be shorter than segment_target ({segment:?}); \
         use about a sixth of it, e.g. part_target = 334 with segment_target = 2000"
    )]
    PartNotShorterThanSegment {
        app: String,
        part: Duration,
        segment: Duration,
    },
    #[error(
        "[origin.applications.{app}]: part_target ({part:?}) is below the 50 ms minimum; players cannot fetch parts that fast"
    )]
    PartTooShort { app: String, part: Duration },
    #[error(
        "[origin.applications.{app}]: segment_target ({segment:?}) is longer than [origin.hls] max_fragment ({max:?}); raise max_fragment or shorten the segments"
    )]
    SegmentLongerThanMax {
        app: String,
        segment: Duration,
        max: Duration,
    },
    #[error(
        "application name {0:?} is not usable in rtmp://HOST/APP/NAME: use letters, digits, '-', '_' or '.'"
    )]
    BadApplicationName(String),
    #[error("[origin.applications.{app}.ladder]: {reason}")]
    BadLadder { app: String, reason: String },
}

impl OriginConfig {
    /// The packaging of application `name`, or `None` when publishes to it are refused.
    pub fn application(&self, name: &str) -> Option<ApplicationConfig> {
        match self.applications.get(name) {
            Some(app) => Some(app.clone()),
            None if name == self.app => Some(ApplicationConfig::default()),
            None => None,
        }
    }

    /// Every application publishes are accepted on, sorted.
    pub fn application_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.applications.keys().map(String::as_str).collect();
        if !self.applications.contains_key(&self.app) {
            names.push(&self.app);
        }
        names.sort_unstable();
        names
    }

    /// Checks what serde cannot: relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, app) in &self.applications {
            let usable = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !usable {
                return Err(ConfigError::BadApplicationName(name.clone()));
            }
            if let Some(ladder) = &app.ladder {
                check_ladder(ladder).map_err(|reason| ConfigError::BadLadder {
                    app: name.clone(),
                    reason,
                })?;
            }
            if app.hls != HlsFormat::LlHls {
                continue;
            }
            if app.part_target < Duration::from_millis(50) {
                return Err(ConfigError::PartTooShort {
                    app: name.clone(),
                    part: app.part_target,
                });
            }
            if app.part_target >= app.segment_target {
                return Err(ConfigError::PartNotShorterThanSegment {
                    app: name.clone(),
                    part: app.part_target,
                    segment: app.segment_target,
                });
            }
            if app.segment_target > self.hls.max_fragment {
                return Err(ConfigError::SegmentLongerThanMax {
                    app: name.clone(),
                    segment: app.segment_target,
                    max: self.hls.max_fragment,
                });
            }
        }
        Ok(())
    }
}

/// A rung's name is the end of its variant's URL (`/hls/NAME_480/`): an underscore, then
/// letters, digits or '-', and not the passthrough's `_src`.
fn check_ladder(ladder: &live::LiveAbrConfig) -> Result<(), String> {
    ladder.validate().map_err(|e| e.to_string())?;
    for rung in &ladder.rungs {
        let suffix = rung.name.strip_prefix('_').unwrap_or("");
        let usable = !suffix.is_empty()
            && suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !usable || suffix == crate::streams::SOURCE {
            return Err(format!(
                "rung name {:?} must be '_' then letters, digits or '-' (e.g. \"_720\"), and not \"_src\"",
                rung.name
            ));
        }
    }
    Ok(())
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
    /// LL-HLS: most blocking playlist and part requests waiting at once; more get 503.
    pub max_blocked_requests: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(2),
            max_fragment: Duration::from_secs(10),
            window: 6,
            linger: Duration::from_secs(60),
            max_blocked_requests: 10_000,
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
    fn applications_choose_their_hls_flavour_and_the_default_app_stays_ts() {
        let cfg: OriginConfig = toml::from_str(
            "[applications.low]\nhls = \"ll-hls\"\npart_target = 250\nsegment_target = 1500\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let low = cfg.application("low").unwrap();
        assert_eq!(low.hls, HlsFormat::LlHls);
        assert_eq!(low.part_target, Duration::from_millis(250));
        assert_eq!(low.segment_target, Duration::from_millis(1500));
        assert_eq!(cfg.application("live").unwrap().hls, HlsFormat::Ts);
        assert!(cfg.application("other").is_none());
        assert_eq!(cfg.application_names(), ["live", "low"]);

        let cfg: OriginConfig = toml::from_str("[applications.live]\nhls = \"ll-hls\"\n").unwrap();
        cfg.validate().unwrap();
        let live = cfg.application("live").unwrap();
        assert_eq!(
            live.hls,
            HlsFormat::LlHls,
            "the default app can switch to LL-HLS"
        );
        assert_eq!(live.part_target, Duration::from_millis(334));
        assert_eq!(live.segment_target, Duration::from_secs(2));
        assert_eq!(cfg.application_names(), ["live"]);
    }

    #[test]
    fn bad_application_settings_are_refused_with_what_to_change() {
        let err = toml::from_str::<OriginConfig>("[applications.x]\nhls = \"dash\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `dash`"), "{err}");
        assert!(err.to_string().contains("`ll-hls`"), "{err}");

        let cfg: OriginConfig = toml::from_str(
            "[applications.x]\nhls = \"ll-hls\"\npart_target = 2000\nsegment_target = 2000\n",
        )
        .unwrap();
        let err = cfg.validate().unwrap_err();
        assert!(matches!(err, ConfigError::PartNotShorterThanSegment { .. }));
        assert!(err.to_string().contains("[origin.applications.x]"), "{err}");

        let cfg: OriginConfig =
            toml::from_str("[applications.x]\nhls = \"ll-hls\"\npart_target = 10\n").unwrap();
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::PartTooShort { .. })
        ));

        let cfg: OriginConfig = toml::from_str(
            "[hls]\nmax_fragment = 4000\n[applications.x]\nhls = \"ll-hls\"\nsegment_target = 6000\n",
        )
        .unwrap();
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::SegmentLongerThanMax { .. })
        ));

        let cfg: OriginConfig = toml::from_str("[applications.\"a/b\"]\n").unwrap();
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::BadApplicationName(_))
        ));

        let err =
            toml::from_str::<OriginConfig>("[applications.x]\npart_targe = 300\n").unwrap_err();
        assert!(err.to_string().contains("part_targe"), "{err}");
    }

    #[test]
    fn a_ladder_is_off_unless_its_table_is_there_and_rung_names_must_fit_a_url() {
        let cfg: OriginConfig = toml::from_str("[applications.x]\n").unwrap();
        assert_eq!(cfg.applications["x"].ladder, None);
        let cfg: OriginConfig = toml::from_str("[applications.x]\nladder = {}\n").unwrap();
        let ladder = cfg.applications["x"].ladder.as_ref().unwrap();
        let names: Vec<&str> = ladder.rungs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["_480", "_960", "_1920"]);
        cfg.validate().unwrap();

        for (rungs, says) in [
            (
                r#"[{ name = "_src", width = 320, video_kbps = 400 }]"#,
                "\"_src\"",
            ),
            (
                r#"[{ name = "_hd_low", width = 320, video_kbps = 400 }]"#,
                "\"_hd_low\"",
            ),
            (
                r#"[{ name = "480", width = 480, video_kbps = 400 }]"#,
                "\"480\"",
            ),
            (
                r#"[{ name = "_a/b", width = 480, video_kbps = 400 }]"#,
                "\"_a/b\"",
            ),
            (
                r#"[{ name = "_480", width = 481, video_kbps = 400 }]"#,
                "even",
            ),
        ] {
            let cfg: OriginConfig =
                toml::from_str(&format!("[applications.x.ladder]\nrungs = {rungs}\n")).unwrap();
            let err = cfg.validate().unwrap_err();
            assert!(matches!(err, ConfigError::BadLadder { .. }), "{rungs}");
            let text = err.to_string();
            assert!(
                text.contains("[origin.applications.x.ladder]") && text.contains(says),
                "{rungs}: {text}"
            );
        }
        let err =
            toml::from_str::<OriginConfig>("[applications.x.ladder]\nmax_lag = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_lag"), "{err}");
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let cfg: OriginConfig = toml::from_str("[hls]\nwindow = 3\n").unwrap();
        assert_eq!(cfg.hls.window, 3);
        assert_eq!(cfg.hls.target_duration, Duration::from_secs(2));
        assert_eq!(cfg.record.max_size_kib, 128_000);
    }
}
