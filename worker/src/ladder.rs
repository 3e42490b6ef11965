//! Fitting the configured ladder to a source: which rungs to make, at what size and frame rate.
//! Pure functions.

use crate::config::Rung;

/// The facts of a source video stream the ladder depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceVideo {
    pub width: u32,
    pub height: u32,
    /// Pixel aspect ratio (1/1 for square pixels).
    pub par: (u32, u32),
    /// Frames per second as a fraction; (0, 1) when unknown or variable.
    pub fps: (u32, u32),
}

/// A rung as it will be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub preset: String,
    pub profile: String,
    /// For a cubemap rendition of a 360 source: the layout, and the equirect size the source
    /// is scaled to before projecting to `width` x `height`. `None` for a flat rendition.
    pub cubemap: Option<crate::immersive::PlannedCubemap>,
}

/// A source between two rungs gets a rung at its own size when it is at least this much taller
/// than the tallest rung that fits (so a 600p source tops out at 600p, not 480p).
const GAP_FOR_SOURCE_RUNG: f64 = 1.1;

/// The rungs to encode for `source`, tallest first. Never upscales: rungs taller than the
/// source are dropped and the top rung is at most the source size. When the source sits well
/// above the tallest rung that fits (or below every rung), the shortest dropped rung is kept at
/// the source height, its bitrate scaled down by the pixel count (never below the next rung's).
/// Widths follow the source's display aspect ratio, rounded to even numbers.
pub fn plan(rungs: &[Rung], source: &SourceVideo) -> Vec<PlannedRung> {
    let source_height = source.height & !1;
    let mut sorted: Vec<&Rung> = rungs.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.height));
    let (dropped, kept): (Vec<&Rung>, Vec<&Rung>) =
        sorted.into_iter().partition(|r| r.height > source_height);
    let mut out = Vec::with_capacity(kept.len() + 1);
    let tallest_kept = kept.first().map_or(0, |r| r.height);
    if let Some(&above) = dropped.last() {
        let gap = f64::from(source_height) >= f64::from(tallest_kept) * GAP_FOR_SOURCE_RUNG;
        if gap && source_height >= 16 {
            let scale = (f64::from(source_height) / f64::from(above.height)).powi(2);
            let floor = kept.first().map_or(0, |r| r.video_kbps);
            let kbps = ((f64::from(above.video_kbps) * scale).round() as u32).max(floor);
            out.push(sized(above, source, source_height, kbps));
        }
    }
    out.extend(
        kept.into_iter()
            .map(|r| sized(r, source, r.height, r.video_kbps)),
    );
    out
}

fn sized(rung: &Rung, source: &SourceVideo, height: u32, video_kbps: u32) -> PlannedRung {
    let name = if height == rung.height {
        rung.name.clone()
    } else {
        format!("{height}p")
    };
    PlannedRung {
        name,
        width: width_for(source, height),
        height,
        video_kbps,
        audio_kbps: rung.audio_kbps,
        preset: rung.preset.clone(),
        profile: rung.profile.clone(),
        cubemap: None,
    }
}

/// The cubemap rungs of a 360 source as rungs to encode (see [`crate::immersive::plan`]).
pub fn plan_cubemaps(
    rungs: &[crate::immersive::CubemapRung],
    source: &SourceVideo,
) -> Vec<PlannedRung> {
    crate::immersive::plan(rungs, source)
        .into_iter()
        .map(|(rung, cubemap)| {
            let (width, height) = cubemap.layout.output_size(rung.height);
            PlannedRung {
                name: rung.name,
                width,
                height,
                video_kbps: rung.video_kbps,
                audio_kbps: rung.audio_kbps,
                preset: rung.preset,
                profile: rung.profile,
                cubemap: Some(cubemap),
            }
        })
        .collect()
}

/// The even width that keeps the source's display aspect ratio at `height`.
pub fn width_for(source: &SourceVideo, height: u32) -> u32 {
    let (par_n, par_d) = if source.par.0 == 0 || source.par.1 == 0 {
        (1, 1)
    } else {
        source.par
    };
    let display = f64::from(source.width) * f64::from(par_n)
        / (f64::from(source.height.max(1)) * f64::from(par_d));
    let width = (f64::from(height) * display / 2.0).round() as u32 * 2;
    width.max(2)
}

/// The output frame rate: the source's, decimated by whole factors until it is at most `max`;
/// 30/1 when the source's rate is unknown.
pub fn output_fps(source: (u32, u32), max: u32) -> (u32, u32) {
    let (n, d) = source;
    if n == 0 || d == 0 {
        return (30.min(max), 1);
    }
    let mut factor = 1;
    while f64::from(n) / f64::from(d * factor) > f64::from(max) + 0.01 {
        factor += 1;
    }
    (n, d * factor)
}

/// Frames between IDRs for `secs` seconds at `fps` (at least 1).
pub fn keyframe_interval_frames(fps: (u32, u32), secs: u32) -> u32 {
    let frames = f64::from(fps.0) * f64::from(secs) / f64::from(fps.1.max(1));
    (frames.round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_ladder;

    fn source(width: u32, height: u32) -> SourceVideo {
        SourceVideo {
            width,
            height,
            par: (1, 1),
            fps: (30, 1),
        }
    }

    fn heights(plan: &[PlannedRung]) -> Vec<u32> {
        plan.iter().map(|r| r.height).collect()
    }

    #[test]
    fn a_720p_source_gets_the_rungs_up_to_720p() {
        let plan = plan(&default_ladder(), &source(1280, 720));
        assert_eq!(heights(&plan), vec![720, 480, 360, 240, 180]);
        assert_eq!(plan[0].width, 1280);
        assert_eq!(plan[1].width, 854);
        assert_eq!(plan[4].width, 320);
        assert_eq!(plan[0].name, "720p");
    }

    #[test]
    fn a_source_between_rungs_tops_out_at_its_own_size() {
        let plan = plan(&default_ladder(), &source(1066, 600));
        assert_eq!(heights(&plan), vec![600, 480, 360, 240, 180]);
        assert_eq!(plan[0].name, "600p");
        // 2136 kbit/s at 720p scaled by (600/720)^2.
        assert_eq!(plan[0].video_kbps, 1483);
        // Just above a rung: no extra rung.
        assert_eq!(
            heights(&super::plan(&default_ladder(), &source(868, 490)))[0],
            480
        );
    }

    #[test]
    fn a_tiny_source_gets_one_rung_at_its_size() {
        let plan = plan(&default_ladder(), &source(160, 90));
        assert_eq!(heights(&plan), vec![90]);
        assert_eq!(plan[0].width, 160);
        let odd = super::plan(&default_ladder(), &source(161, 91));
        // Odd heights round down to even; 90 * 161/91 = 159.2, nearest even 160.
        assert_eq!((odd[0].width, odd[0].height), (160, 90));
    }

    #[test]
    fn widths_follow_the_display_aspect_ratio() {
        let anamorphic = SourceVideo {
            width: 1440,
            height: 1080,
            par: (4, 3),
            fps: (25, 1),
        };
        assert_eq!(width_for(&anamorphic, 720), 1280);
        let portrait = source(1080, 1920);
        let plan = plan(&default_ladder(), &portrait);
        assert_eq!((plan[0].width, plan[0].height), (608, 1080));
    }

    #[test]
    fn frame_rates_above_the_cap_are_decimated() {
        assert_eq!(output_fps((30, 1), 60), (30, 1));
        assert_eq!(output_fps((120, 1), 60), (120, 2));
        assert_eq!(output_fps((30000, 1001), 60), (30000, 1001));
        assert_eq!(output_fps((0, 1), 60), (30, 1));
        assert_eq!(keyframe_interval_frames((30, 1), 2), 60);
        assert_eq!(keyframe_interval_frames((30000, 1001), 2), 60);
        assert_eq!(keyframe_interval_frames((25, 1), 2), 50);
    }
}
