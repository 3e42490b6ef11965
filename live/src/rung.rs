//! The ladder's rungs: their configuration (serde, the user docs are the doc comments) and the
//! pure planning of which rungs a given source gets, at which size.

use serde::{Deserialize, Serialize};

use crate::LiveError;

/// x264 speed preset of a rung (x264's names). Faster presets cost less CPU per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The reference architecture's live preset.
    #[default]
    Ultrafast,
    Superfast,
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
    Slower,
    Veryslow,
    Placebo,
}

impl Preset {
    /// The x264enc `speed-preset` nick.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Ultrafast => "ultrafast",
            Preset::Superfast => "superfast",
            Preset::Veryfast => "veryfast",
            Preset::Faster => "faster",
            Preset::Fast => "fast",
            Preset::Medium => "medium",
            Preset::Slow => "slow",
            Preset::Slower => "slower",
            Preset::Veryslow => "veryslow",
            Preset::Placebo => "placebo",
        }
    }
}

/// One transcoded rung of the live ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    /// Variant name suffix, e.g. `_480`: the stream `NAME` becomes `NAME_480`.
    pub name: String,
    /// Output width in pixels (even). The height follows the source's aspect ratio, rounded to
    /// an even number. A rung wider than the source is skipped for that source.
    pub width: u32,
    /// Video bitrate in kbit/s (x264 ABR).
    pub video_kbps: u32,
    /// x264 speed preset; `ultrafast` unless set.
    #[serde(default)]
    pub preset: Preset,
}

impl RungConfig {
    fn new(name: &str, width: u32, video_kbps: u32) -> Self {
        RungConfig {
            name: name.to_owned(),
            width,
            video_kbps,
            preset: Preset::Ultrafast,
        }
    }
}

/// The reference architecture's live ladder: `_480` 500k, `_960` 2300k, `_1920` 5800k, all
/// x264 ultrafast (the source itself is the passthrough `_src` variant, not a rung).
pub fn default_rungs() -> Vec<RungConfig> {
    vec![
        RungConfig::new("_480", 480, 500),
        RungConfig::new("_960", 960, 2300),
        RungConfig::new("_1920", 1920, 5800),
    ]
}

/// A rung as planned for one source: exact output size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Variant name suffix, e.g. `_480`.
    pub name: String,
    pub width: u32,
    /// Height keeping the source's aspect ratio, even.
    pub height: u32,
    pub video_kbps: u32,
    pub preset: Preset,
}

/// Checks rungs once, when the configuration is read: names unique and non-empty, widths even
/// and at least 16, bitrates non-zero.
pub fn validate(rungs: &[RungConfig]) -> Result<(), LiveError> {
    for (i, r) in rungs.iter().enumerate() {
        let bad = |why: String| Err(LiveError::Config(format!("rung {:?}: {why}", r.name)));
        if r.name.is_empty() {
            return Err(LiveError::Config(format!("rung {i} has an empty name")));
        }
        if rungs[..i].iter().any(|o| o.name == r.name) {
            return bad("the name is used twice".into());
        }
        if r.width < 16 || r.width % 2 != 0 {
            return bad(format!("width {} must be even and at least 16", r.width));
        }
        if r.video_kbps == 0 {
            return bad("video_kbps must be above 0".into());
        }
    }
    Ok(())
}

/// Plans the ladder for a `source_width` x `source_height` source: rungs wider than the source
/// are left out (never upscale), the others get the height that keeps the source's aspect
/// ratio, rounded to the nearest even number (at least 2). The result is sorted by width,
/// narrowest first, so the last rung is the most expensive one.
pub fn plan(rungs: &[RungConfig], source_width: u32, source_height: u32) -> Vec<PlannedRung> {
    let mut planned: Vec<PlannedRung> = rungs
        .iter()
        .filter(|r| source_width > 0 && source_height > 0 && r.width <= source_width)
        .map(|r| {
            let exact = u64::from(r.width) * u64::from(source_height);
            // Nearest even: round(exact / source_width / 2) * 2, in integers.
            let half = (exact + u64::from(source_width)) / (2 * u64::from(source_width));
            let height = u32::try_from(half * 2).unwrap_or(u32::MAX).max(2);
            PlannedRung {
                name: r.name.clone(),
                width: r.width,
                height,
                video_kbps: r.video_kbps,
                preset: r.preset,
            }
        })
        .collect();
    planned.sort_by_key(|r| r.width);
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(p: &[PlannedRung]) -> Vec<(&str, u32, u32)> {
        p.iter()
            .map(|r| (r.name.as_str(), r.width, r.height))
            .collect()
    }

    #[test]
    fn a_1080p_source_gets_the_three_reference_rungs() {
        let p = plan(&default_rungs(), 1920, 1080);
        assert_eq!(
            sizes(&p),
            [
                ("_480", 480, 270),
                ("_960", 960, 540),
                ("_1920", 1920, 1080)
            ]
        );
        assert_eq!(p[2].video_kbps, 5800);
        assert_eq!(p[0].preset, Preset::Ultrafast);
    }

    #[test]
    fn rungs_wider_than_the_source_are_left_out() {
        assert_eq!(
            sizes(&plan(&default_rungs(), 1280, 720)),
            [("_480", 480, 270), ("_960", 960, 540)]
        );
        assert!(plan(&default_rungs(), 320, 180).is_empty());
        // A rung exactly as wide as the source is kept (re-encoded at a lower bitrate).
        assert_eq!(sizes(&plan(&default_rungs(), 960, 540)).len(), 2);
    }

    #[test]
    fn heights_keep_the_aspect_ratio_and_are_even() {
        // 4:3: 480 * 3/4 = 360 exactly.
        assert_eq!(plan(&default_rungs(), 640, 480)[0].height, 360);
        // 854x480 (16:9.0075): 480 * 480/854 = 269.79 -> 270.
        assert_eq!(plan(&default_rungs(), 854, 480)[0].height, 270);
        // 2.39:1 scope 1920x804: 480 * 804/1920 = 201 -> odd, rounds to 202 (nearest even).
        assert_eq!(plan(&default_rungs(), 1920, 804)[0].height, 202);
        // Portrait 1080x1920: 480 -> 853.33 -> 854; 960 -> 1706.67 -> 1706.
        let p = plan(&default_rungs(), 1080, 1920);
        assert_eq!(sizes(&p), [("_480", 480, 854), ("_960", 960, 1706)]);
        for r in plan(&default_rungs(), 1917, 1079) {
            assert_eq!(r.height % 2, 0, "{r:?}");
        }
    }

    #[test]
    fn the_plan_is_sorted_narrowest_first_whatever_the_config_order() {
        let mut rungs = default_rungs();
        rungs.reverse();
        let p = plan(&rungs, 1920, 1080);
        assert_eq!(
            p.iter().map(|r| r.width).collect::<Vec<_>>(),
            [480, 960, 1920]
        );
    }

    #[test]
    fn a_zero_sized_source_gets_no_rungs() {
        assert!(plan(&default_rungs(), 0, 1080).is_empty());
        assert!(plan(&default_rungs(), 1920, 0).is_empty());
    }

    #[test]
    fn bad_rungs_are_rejected_with_the_rung_named() {
        assert!(validate(&default_rungs()).is_ok());
        let mut odd = default_rungs();
        odd[1].width = 961;
        let err = validate(&odd).unwrap_err().to_string();
        assert!(err.contains("_960") && err.contains("961"), "{err}");
        let mut dup = default_rungs();
        dup[2].name = "_480".into();
        assert!(validate(&dup).unwrap_err().to_string().contains("twice"));
        let mut zero = default_rungs();
        zero[0].video_kbps = 0;
        assert!(validate(&zero).is_err());
        let mut empty = default_rungs();
        empty[0].name.clear();
        assert!(validate(&empty).is_err());
    }

    #[test]
    fn rungs_read_from_toml_with_the_default_preset() {
        let r: RungConfig = toml::from_str(
            "name = \"_720\"\nwidth = 1280\nvideo_kbps = 3000\npreset = \"veryfast\"",
        )
        .unwrap();
        assert_eq!(r.preset, Preset::Veryfast);
        let r: RungConfig =
            toml::from_str("name = \"_720\"\nwidth = 1280\nvideo_kbps = 3000").unwrap();
        assert_eq!(r.preset, Preset::Ultrafast);
        assert!(
            toml::from_str::<RungConfig>("name = \"x\"\nwidth = 2\nvideo_kbps = 1\nheight = 3")
                .is_err()
        );
    }
}
