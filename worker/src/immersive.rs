//! 360 sources: which recordings are 360, the cubemap ladder made for them beside the
//! equirectangular one, and the `projection.json` sidecar that tells a player how to draw each
//! rendition. Pure functions; the pipeline does the projecting (`transcode::project`).
//!
//! The rule (documented in the README): a source is 360 when its name carries the configured
//! token (`360` by default, delimited: `keynote_360-1731000000.flv`, `360/keynote.flv`) or,
//! with `all_two_to_one`, when its picture is 2:1. A 360 source must be equirectangular, so a
//! named source that is not 2:1 gets the flat ladder only, with a warning that says why.

use projection::Layout;
use serde::{Deserialize, Serialize};

use crate::ladder::SourceVideo;

/// `[worker.immersive]`: cubemap renditions for 360 sources.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImmersiveConfig {
    /// Make cubemap renditions for 360 sources. Off: every source gets the flat ladder only.
    pub enabled: bool,
    /// A source whose key has this word, delimited by `/`, `_`, `-`, `.`, a space or the ends
    /// (case-insensitive), is 360: `keynote_360-1731000000.flv`. Empty: no name rule.
    pub name_token: String,
    /// Every source whose picture is 2:1 (display aspect, within 2 pixels) is 360 whatever its
    /// name. Off by default: some flat films are 2:1.
    pub all_two_to_one: bool,
    /// Threads one cubemap rendition's projection may use.
    pub threads: usize,
    /// The cubemap ladder, made beside the equirectangular (flat) ladder. Rungs that would need
    /// more detail than the source has are dropped.
    pub rungs: Vec<CubemapRung>,
}

/// One rung of the cubemap ladder.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CubemapRung {
    /// Folder name of the rendition (`[A-Za-z0-9_-]`, not `audio`, not a flat rung's name).
    pub name: String,
    /// `eac` (YouTube's equi-angular cubemap, 2-pixel padding) or `c3x2` (ffmpeg's cubemap
    /// 3x2, face order `rludfb`).
    pub layout: CubemapLayout,
    /// Output height. The width is ffmpeg's proportion for the layout: 16:9 for `eac`, 3:2
    /// for `c3x2` (height rounded down to a multiple of 4 for `c3x2`).
    pub height: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default = "default_profile")]
    pub profile: String,
}

/// The layouts a cubemap rung can have, by ffmpeg's names.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum CubemapLayout {
    #[serde(rename = "eac")]
    Eac,
    #[serde(rename = "c3x2")]
    Cubemap3x2,
}

impl CubemapLayout {
    pub fn layout(self) -> Layout {
        match self {
            CubemapLayout::Eac => Layout::Eac,
            CubemapLayout::Cubemap3x2 => Layout::Cubemap3x2,
        }
    }

    /// Pixels of padding around each face row (ffmpeg's EAC pads every edge by 2).
    pub fn padding(self) -> u32 {
        match self {
            CubemapLayout::Eac => 2,
            CubemapLayout::Cubemap3x2 => 0,
        }
    }

    /// The output size at `height`, in ffmpeg's default proportions for a 2:1 source, with the
    /// sides the layout needs (even; `c3x2`: width a multiple of 6, height of 4).
    pub fn output_size(self, height: u32) -> (u32, u32) {
        match self {
            CubemapLayout::Cubemap3x2 => {
                let h = height - height % 4;
                (h / 2 * 3, h)
            }
            CubemapLayout::Eac => {
                let h = height & !1;
                let w = ((f64::from(h) * 16.0 / 9.0).round() as u32) & !1;
                (w, h)
            }
        }
    }

    /// The equirectangular size whose detail this output size carries: the inverse of ffmpeg's
    /// default size (`c3x2`: the same height; `eac`: 8/9 of it), even, 2:1. The pipeline scales
    /// the source to it before projecting, so the projection samples at about one source pixel
    /// per output pixel and a small rung does not alias.
    pub fn matched_equirect(self, output: (u32, u32)) -> (u32, u32) {
        let h = match self {
            CubemapLayout::Cubemap3x2 => output.1,
            CubemapLayout::Eac => (f64::from(output.1) * 8.0 / 9.0).round() as u32,
        } & !1;
        (2 * h, h)
    }
}

fn default_preset() -> String {
    "veryfast".to_owned()
}

fn default_profile() -> String {
    "high".to_owned()
}

impl Default for ImmersiveConfig {
    fn default() -> Self {
        ImmersiveConfig {
            enabled: true,
            name_token: "360".to_owned(),
            all_two_to_one: false,
            threads: 2,
            rungs: default_cubemap_ladder(),
        }
    }
}

/// Two EAC rungs: 3840x2160 (the detail of a 3840x1920 equirect, the common 4K 360 size) and
/// 1920x1080. A cube spends its pixels evenly where equirect wastes them at the poles, so these
/// carry about a quarter fewer bits than an equirect of the same detail would need.
pub fn default_cubemap_ladder() -> Vec<CubemapRung> {
    let rung = |name: &str, height, video_kbps, audio_kbps| CubemapRung {
        name: name.to_owned(),
        layout: CubemapLayout::Eac,
        height,
        video_kbps,
        audio_kbps,
        preset: default_preset(),
        profile: default_profile(),
    };
    vec![
        rung("eac_2160", 2160, 12_000, 128),
        rung("eac_1080", 1080, 3_500, 128),
    ]
}

/// What a source is, for the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sphere {
    /// A flat video: the flat ladder only.
    Flat,
    /// A 360 equirectangular source: the flat (equirect) ladder and the cubemap ladder.
    Equirect,
    /// Named as 360 but not 2:1, so not a full equirectangular sphere: the flat ladder only.
    NotEquirect { reason: String },
}

/// Decides whether the source called `name` (its key) with picture `video` is 360.
pub fn classify(config: &ImmersiveConfig, name: &str, video: &SourceVideo) -> Sphere {
    if !config.enabled {
        return Sphere::Flat;
    }
    let named = has_token(name, &config.name_token);
    let display_width =
        u64::from(video.width) * u64::from(video.par.0.max(1)) / u64::from(video.par.1.max(1));
    let two_to_one = video.height > 0 && display_width.abs_diff(2 * u64::from(video.height)) <= 2;
    match (named, two_to_one) {
        (true, true) => Sphere::Equirect,
        (false, true) if config.all_two_to_one => Sphere::Equirect,
        (true, false) => Sphere::NotEquirect {
            reason: format!(
                "its name marks it as 360 ({:?}) but its picture is {}x{} (display {}x{}), not \
                 2:1 equirectangular; only the flat ladder is made",
                config.name_token, video.width, video.height, display_width, video.height
            ),
        },
        _ => Sphere::Flat,
    }
}

/// True when `token` appears in `name` between delimiters (`/ _ - .` space) or the ends,
/// ignoring case. An empty token never matches.
pub fn has_token(name: &str, token: &str) -> bool {
    !token.is_empty()
        && name
            .split(['/', '_', '-', '.', ' '])
            .any(|word| word.eq_ignore_ascii_case(token))
}

/// A cubemap rendition as it will be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCubemap {
    pub layout: CubemapLayout,
    /// The equirectangular size the source is scaled to before projecting.
    pub equirect: (u32, u32),
}

/// The smallest equirect a cubemap is made from: 64x32 gives 8-pixel c3x2 faces at 48x32 and
/// EAC 64x36 with 20x14 faces inside its pads, both above the kernel's minimum.
const MIN_EQUIRECT_HEIGHT: u32 = 32;

/// A source this much taller than the tallest rung that fits gets a rung at its own size (as
/// the flat ladder does), so a 2880x1440 source is not capped at the 1080 rung's detail.
const GAP_FOR_SOURCE_RUNG: f64 = 1.1;

/// The cubemap rungs for a 360 source of `source` size, tallest first. Never adds detail the
/// source does not have: a rung whose matched equirect is taller than the source is dropped.
/// When the source is well above the tallest rung that fits (or below every rung), the
/// shortest dropped rung is kept at the source's own size (ffmpeg's default output size for
/// it), its bitrate scaled by the pixel count, never below the next rung's. A source under 32
/// lines gets no cubemap rung.
pub fn plan(rungs: &[CubemapRung], source: &SourceVideo) -> Vec<(CubemapRung, PlannedCubemap)> {
    let source_height = source.height & !1;
    if source_height < MIN_EQUIRECT_HEIGHT {
        return Vec::new();
    }
    let mut sorted: Vec<&CubemapRung> = rungs.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.height));
    let sized = |r: &CubemapRung| {
        let size = r.layout.output_size(r.height);
        (size, r.layout.matched_equirect(size))
    };
    let (dropped, kept): (Vec<&CubemapRung>, Vec<&CubemapRung>) = sorted
        .into_iter()
        .partition(|r| sized(r).1.1 > source_height);
    let mut out = Vec::with_capacity(kept.len() + 1);
    let tallest_kept = kept.first().map_or(0, |r| sized(r).1.1);
    if let Some(&above) = dropped.last()
        && f64::from(source_height) >= f64::from(tallest_kept) * GAP_FOR_SOURCE_RUNG
    {
        let equirect = (2 * source_height, source_height);
        let default = above
            .layout
            .layout()
            .default_output_size(equirect.0, equirect.1);
        let size = above.layout.output_size(default.1);
        let configured = sized(above).0;
        let scale = f64::from(size.0 * size.1) / f64::from((configured.0 * configured.1).max(1));
        let floor = kept.first().map_or(50, |r| r.video_kbps);
        let mut rung = above.clone();
        rung.name = format!("{}_{}", above.layout.layout().ffmpeg_name(), size.1);
        rung.height = size.1;
        rung.video_kbps = ((f64::from(above.video_kbps) * scale).round() as u32).max(floor);
        out.push((
            rung,
            PlannedCubemap {
                layout: above.layout,
                equirect,
            },
        ));
    }
    out.extend(kept.into_iter().filter_map(|r| {
        let (size, equirect) = sized(r);
        (equirect.1 >= MIN_EQUIRECT_HEIGHT).then(|| {
            let mut rung = r.clone();
            rung.height = size.1;
            (
                rung,
                PlannedCubemap {
                    layout: r.layout,
                    equirect,
                },
            )
        })
    }));
    out
}

/// `projection.json`, written beside the master playlists of a ladder: how to draw each
/// master and each rendition. The player reads `playlists[<master file name>]` first, then
/// the top-level `projection` (the default master's).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sidecar {
    pub version: u32,
    /// The drawing mode of the default master playlist (`master.m3u8`): `equirect` for 360
    /// sources, `flat` otherwise.
    pub projection: &'static str,
    pub playlists: std::collections::BTreeMap<String, PlaylistProjection>,
    pub renditions: Vec<RenditionProjection>,
}

/// How a master playlist's variants are drawn (all variants of one master share it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlaylistProjection {
    /// The player's mode: `flat`, `equirect`, `c3x2` or `eac`.
    pub projection: &'static str,
}

/// How one rendition is drawn.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RenditionProjection {
    /// The media playlist, relative to the sidecar: `eac_1080/index.m3u8`.
    pub playlist: String,
    /// `flat`, `equirect` or `cubemap`.
    pub projection: &'static str,
    /// ffmpeg's layout name for a cubemap: `eac` or `c3x2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<&'static str>,
    /// ffmpeg's face order for the layout (`rludfb` for c3x2; EAC's is fixed: top row left,
    /// front, right; bottom row down, back, up, the bottom row rotated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_order: Option<&'static str>,
    /// Pixels of padding at each face row's edges (EAC: 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<u32>,
    pub width: u32,
    pub height: u32,
}

/// The player mode name of a layout.
pub fn mode_of(layout: CubemapLayout) -> &'static str {
    match layout {
        CubemapLayout::Eac => "eac",
        CubemapLayout::Cubemap3x2 => "c3x2",
    }
}

/// The rendition entry for a cubemap rendition.
pub fn cubemap_entry(
    playlist: String,
    layout: CubemapLayout,
    size: (u32, u32),
) -> RenditionProjection {
    RenditionProjection {
        playlist,
        projection: "cubemap",
        layout: Some(layout.layout().ffmpeg_name()),
        face_order: Some(match layout {
            CubemapLayout::Cubemap3x2 => "rludfb",
            CubemapLayout::Eac => "lfr/dbu",
        }),
        padding: Some(layout.padding()),
        width: size.0,
        height: size.1,
    }
}

/// Checks the immersive section: names, heights, presets, threads.
pub fn validate(config: &ImmersiveConfig, flat_names: &[&str]) -> Result<(), String> {
    if config.threads == 0 || config.threads > 64 {
        return Err("immersive.threads must be between 1 and 64".into());
    }
    if config.name_token.contains(['/', '_', '-', '.', ' ']) {
        return Err(format!(
            "immersive.name_token {:?} must be one word (no / _ - . or space: those delimit it)",
            config.name_token
        ));
    }
    if config.enabled && config.rungs.is_empty() {
        return Err("immersive is enabled with no rungs: set enabled = false instead".into());
    }
    let mut names: std::collections::HashSet<&str> = flat_names.iter().copied().collect();
    for rung in &config.rungs {
        let encoder = crate::config::RungEncoder {
            name: &rung.name,
            video_kbps: rung.video_kbps,
            audio_kbps: rung.audio_kbps,
            preset: &rung.preset,
            profile: &rung.profile,
        };
        crate::config::check_rung("cubemap rung", &encoder, &mut names)?;
        if rung.height < 36 || rung.height > 8192 {
            return Err(format!(
                "cubemap rung {}: height {} must be between 36 and 8192",
                rung.name, rung.height
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u32, height: u32) -> SourceVideo {
        SourceVideo {
            width,
            height,
            par: (1, 1),
            fps: (30, 1),
        }
    }

    #[test]
    fn the_name_token_must_be_a_whole_word() {
        assert!(has_token("live/keynote_360-1731000000.flv", "360"));
        assert!(has_token("360/keynote.flv", "360"));
        assert!(has_token("Talk.360.mp4", "360"));
        assert!(!has_token("room3600-1731000000.flv", "360"));
        assert!(!has_token("hall360.flv", "360"));
        assert!(!has_token("x_360.flv", ""));
    }

    #[test]
    fn named_2_to_1_sources_are_360_and_named_others_are_flat_with_a_reason() {
        let config = ImmersiveConfig::default();
        assert_eq!(
            classify(&config, "a_360-1.flv", &video(3840, 1920)),
            Sphere::Equirect
        );
        // Rounding in a camera's size is tolerated: 2 pixels.
        assert_eq!(
            classify(&config, "a_360-1.flv", &video(3838, 1920)),
            Sphere::Equirect
        );
        let Sphere::NotEquirect { reason } = classify(&config, "a_360.flv", &video(1920, 1080))
        else {
            panic!("a 16:9 source named 360 is not equirect");
        };
        assert!(
            reason.contains("1920x1080") && reason.contains("flat"),
            "{reason}"
        );
        // Unnamed 2:1 sources are flat unless all_two_to_one is on.
        assert_eq!(
            classify(&config, "film.mp4", &video(2000, 1000)),
            Sphere::Flat
        );
        let all = ImmersiveConfig {
            all_two_to_one: true,
            ..ImmersiveConfig::default()
        };
        assert_eq!(
            classify(&all, "film.mp4", &video(2000, 1000)),
            Sphere::Equirect
        );
        let off = ImmersiveConfig {
            enabled: false,
            ..ImmersiveConfig::default()
        };
        assert_eq!(
            classify(&off, "a_360.flv", &video(3840, 1920)),
            Sphere::Flat
        );
    }

    #[test]
    fn anamorphic_pixels_count_in_the_aspect() {
        // 1920x1920 with 2:1 pixels displays as 3840x1920.
        let source = SourceVideo {
            par: (2, 1),
            ..video(1920, 1920)
        };
        assert_eq!(
            classify(&ImmersiveConfig::default(), "x_360", &source),
            Sphere::Equirect
        );
    }

    #[test]
    fn output_sizes_follow_ffmpeg_defaults() {
        // ffmpeg: eac of 3840x1920 is 3840x2160, c3x2 is 2880x1920.
        assert_eq!(CubemapLayout::Eac.output_size(2160), (3840, 2160));
        assert_eq!(CubemapLayout::Cubemap3x2.output_size(1920), (2880, 1920));
        assert_eq!(
            CubemapLayout::Eac.matched_equirect((3840, 2160)),
            (3840, 1920)
        );
        assert_eq!(
            CubemapLayout::Cubemap3x2.matched_equirect((2880, 1920)),
            (3840, 1920)
        );
        // c3x2 heights snap to a multiple of 4; sizes stay valid for the kernel.
        assert_eq!(CubemapLayout::Cubemap3x2.output_size(1082), (1620, 1080));
        for h in [36, 100, 722, 1080, 2160] {
            for layout in [CubemapLayout::Eac, CubemapLayout::Cubemap3x2] {
                let (w, oh) = layout.output_size(h);
                let eq = layout.matched_equirect((w, oh));
                projection::Projector::new(
                    layout.layout(),
                    eq,
                    Some((w, oh)),
                    projection::Interp::Bilinear,
                    projection::PixelFormat::I420,
                    1,
                )
                .unwrap_or_else(|e| panic!("{layout:?} at {h}: {e}"));
            }
        }
    }

    #[test]
    fn rungs_never_add_detail_and_small_sources_get_one_rung_at_their_size() {
        let ladder = default_cubemap_ladder();
        let names = |planned: &[(CubemapRung, PlannedCubemap)]| {
            planned
                .iter()
                .map(|(r, _)| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&plan(&ladder, &video(3840, 1920))),
            ["eac_2160", "eac_1080"]
        );
        // Well between two rungs: a rung at the source's own detail on top.
        let between = plan(&ladder, &video(2880, 1440));
        assert_eq!(names(&between), ["eac_1620", "eac_1080"]);
        assert_eq!(between[0].1.equirect, (2880, 1440));
        assert!(between[0].0.video_kbps > 3_500 && between[0].0.video_kbps < 12_000);
        // Just above a rung: no extra rung.
        assert_eq!(names(&plan(&ladder, &video(2000, 1000))), ["eac_1080"]);
        let small = plan(&ladder, &video(512, 256));
        assert_eq!(names(&small), ["eac_288"]);
        let (rung, planned) = &small[0];
        assert_eq!(planned.equirect, (512, 256));
        assert_eq!(CubemapLayout::Eac.output_size(rung.height), (512, 288));
        assert!(rung.video_kbps < 3_500 && rung.video_kbps >= 50);
        // Odd sizes are rounded down to even.
        let odd = plan(&ladder, &video(1001, 501));
        assert_eq!(odd[0].1.equirect, (1000, 500));
        assert!(plan(&ladder, &video(60, 30)).is_empty());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut config = ImmersiveConfig::default();
        config.rungs[1].name = "eac_2160".into();
        assert!(validate(&config, &[]).unwrap_err().contains("twice"));
        let config = ImmersiveConfig::default();
        assert!(
            validate(&config, &["eac_1080"])
                .unwrap_err()
                .contains("twice")
        );
        let mut config = ImmersiveConfig::default();
        config.rungs[0].preset = "quick".into();
        assert!(validate(&config, &[]).unwrap_err().contains("quick"));
        let config = ImmersiveConfig {
            name_token: "3_60".into(),
            ..ImmersiveConfig::default()
        };
        assert!(validate(&config, &[]).unwrap_err().contains("one word"));
        validate(&ImmersiveConfig::default(), &["1080p", "720p"]).unwrap();
    }
}
