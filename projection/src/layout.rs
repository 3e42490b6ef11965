//! The output layouts, their default sizes and the size rules the kernel enforces.

use std::fmt;

use crate::ProjectionError;

/// Largest width or height accepted for the source and the output. ffmpeg's v360 keeps pixel
/// indices in `int16_t` (32767); the fixed-point map here has room for more, but frames beyond
/// 16K are not a use case.
pub const MAX_SIDE: u32 = 16384;

/// Smallest cube face, in luma pixels, in either layout (EAC's padding not counted). Chroma
/// faces are half of it: 4 pixels, the least a bilinear map can still be built on.
pub const MIN_FACE: u32 = 8;

/// Smallest equirectangular source: 32x16 (a chroma plane of 16x8).
pub const MIN_SOURCE_HEIGHT: u32 = 16;

/// An output projection, with ffmpeg v360's layout and face orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// ffmpeg's `c3x2` with its default face order `rludfb` and no rotation: top row RIGHT,
    /// LEFT, UP; bottom row DOWN, FRONT, BACK; each face width/3 x height/2.
    Cubemap3x2,
    /// ffmpeg's (and YouTube's) `eac`: top row LEFT, FRONT, RIGHT; bottom row DOWN (rotated
    /// 270 degrees), BACK (rotated 90), UP (rotated 270); equi-angular (`tan(pi/2 * t)`) across
    /// each face. Every plane has a 2-pixel pad at its left and right edges, at its top and
    /// bottom edges and on both sides of the middle line (so 4 pixels between the rows), and
    /// none between faces in a row. The pads hold the picture continued past the face edge
    /// (ffmpeg extrapolates the face linearly into them), not black.
    Eac,
}

impl Layout {
    /// ffmpeg's name for the layout (`v360=e:NAME`).
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            Layout::Cubemap3x2 => "c3x2",
            Layout::Eac => "eac",
        }
    }

    /// The output size ffmpeg 5.1 picks when none is given (`c3x2`: `3w/4 x h`; `eac`:
    /// `w x 9h/8`; both rounded to nearest as ffmpeg's `lrintf` does), then rounded down to
    /// even, as 4:2:0 needs. For 2:1 sources whose height is a multiple of 8 (all common ones:
    /// 3840x1920 gives 2880x1920 and 3840x2160) this is exactly ffmpeg's size.
    pub fn default_output_size(self, src_width: u32, src_height: u32) -> (u32, u32) {
        // ffmpeg computes these in float and rounds half to even.
        let (w, h) = match self {
            Layout::Cubemap3x2 => (src_width as f32 / 4.0 * 3.0, src_height as f32),
            Layout::Eac => (src_width as f32, src_height as f32 / 8.0 * 9.0),
        };
        let even = |x: f32| (x.round_ties_even() as u32) & !1;
        (even(w), even(h))
    }

    /// Checks an output size against the layout: even sides, faces of at least [`MIN_FACE`]
    /// pixels and, for `c3x2`, faces that fall on whole pixels in both the luma and the chroma
    /// plane (width a multiple of 6, height a multiple of 4).
    pub(crate) fn check_output_size(
        self,
        width: u32,
        height: u32,
        default: (u32, u32),
    ) -> Result<(), ProjectionError> {
        const WHAT: &str = "output";
        if width == 0 || height == 0 {
            return Err(ProjectionError::ZeroSize {
                what: WHAT,
                width,
                height,
            });
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(ProjectionError::TooLarge {
                what: WHAT,
                width,
                height,
                max: MAX_SIDE,
            });
        }
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(ProjectionError::OddSize {
                what: WHAT,
                width,
                height,
            });
        }
        let bad = |reason| ProjectionError::BadOutputSize {
            layout: self,
            width,
            height,
            default_width: default.0,
            default_height: default.1,
            reason,
        };
        let too_small = |reason: String| ProjectionError::TooSmall {
            what: WHAT,
            width,
            height,
            reason,
        };
        match self {
            Layout::Cubemap3x2 => {
                if !width.is_multiple_of(6) {
                    return Err(bad(
                        "the width must be a multiple of 6 (three faces, in luma and in chroma)",
                    ));
                }
                if !height.is_multiple_of(4) {
                    return Err(bad(
                        "the height must be a multiple of 4 (two faces, in luma and in chroma)",
                    ));
                }
                if width / 3 < MIN_FACE || height / 2 < MIN_FACE {
                    return Err(too_small(format!(
                        "c3x2 faces would be {}x{}, the least is {MIN_FACE}x{MIN_FACE}",
                        width / 3,
                        height / 2
                    )));
                }
            }
            Layout::Eac => {
                // Every plane has its own 2-pixel pads: 4 columns and 8 rows in all. The
                // chroma plane's faces must still be MIN_FACE / 2 wide.
                let face = |w: u32, h: u32| ((w.saturating_sub(4)) / 3, (h.saturating_sub(8)) / 2);
                let (lw, lh) = face(width, height);
                let (cw, ch) = face(width / 2, height / 2);
                if lw < MIN_FACE || lh < MIN_FACE || cw < MIN_FACE / 2 || ch < MIN_FACE / 2 {
                    return Err(too_small(format!(
                        "EAC faces would be {lw}x{lh} (chroma {cw}x{ch}) inside the 2-pixel pads, \
                         the least is {MIN_FACE}x{MIN_FACE} ({}x{} in chroma)",
                        MIN_FACE / 2,
                        MIN_FACE / 2
                    )));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ffmpeg_name())
    }
}

/// Checks the equirectangular source size: non-zero, exactly 2:1, even, not tiny, not huge.
pub(crate) fn check_source_size(width: u32, height: u32) -> Result<(), ProjectionError> {
    const WHAT: &str = "source";
    if width == 0 || height == 0 {
        return Err(ProjectionError::ZeroSize {
            what: WHAT,
            width,
            height,
        });
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ProjectionError::TooLarge {
            what: WHAT,
            width,
            height,
            max: MAX_SIDE,
        });
    }
    if u64::from(width) != 2 * u64::from(height) {
        return Err(ProjectionError::NotEquirect { width, height });
    }
    if !height.is_multiple_of(2) {
        return Err(ProjectionError::OddSize {
            what: WHAT,
            width,
            height,
        });
    }
    if height < MIN_SOURCE_HEIGHT {
        return Err(ProjectionError::TooSmall {
            what: WHAT,
            width,
            height,
            reason: format!("the least is {}x{MIN_SOURCE_HEIGHT}", 2 * MIN_SOURCE_HEIGHT),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_are_ffmpegs() {
        assert_eq!(
            Layout::Cubemap3x2.default_output_size(3840, 1920),
            (2880, 1920)
        );
        assert_eq!(Layout::Eac.default_output_size(3840, 1920), (3840, 2160));
        assert_eq!(
            Layout::Cubemap3x2.default_output_size(1920, 960),
            (1440, 960)
        );
        assert_eq!(Layout::Eac.default_output_size(1920, 960), (1920, 1080));
        // ffmpeg gives 759x506 here; 4:2:0 needs even, so one column less.
        assert_eq!(
            Layout::Cubemap3x2.default_output_size(1012, 506),
            (758, 506)
        );
        // ffmpeg: 1000x562.5 -> 562.
        assert_eq!(Layout::Eac.default_output_size(1000, 500), (1000, 562));
    }

    #[test]
    fn source_must_be_two_to_one_even_and_not_tiny() {
        assert!(check_source_size(3840, 1920).is_ok());
        assert_eq!(
            check_source_size(3840, 2160),
            Err(ProjectionError::NotEquirect {
                width: 3840,
                height: 2160
            })
        );
        assert!(matches!(
            check_source_size(1922, 961),
            Err(ProjectionError::OddSize { .. })
        ));
        assert!(matches!(
            check_source_size(16, 8),
            Err(ProjectionError::TooSmall { .. })
        ));
        assert!(matches!(
            check_source_size(0, 0),
            Err(ProjectionError::ZeroSize { .. })
        ));
        assert!(matches!(
            check_source_size(40000, 20000),
            Err(ProjectionError::TooLarge { .. })
        ));
    }

    #[test]
    fn output_sizes_follow_the_layout() {
        let d = (2880, 1920);
        assert!(Layout::Cubemap3x2.check_output_size(2880, 1920, d).is_ok());
        assert!(Layout::Cubemap3x2.check_output_size(1536, 1024, d).is_ok());
        assert!(matches!(
            Layout::Cubemap3x2.check_output_size(2884, 1920, d),
            Err(ProjectionError::BadOutputSize { .. })
        ));
        assert!(matches!(
            Layout::Cubemap3x2.check_output_size(2880, 1922, d),
            Err(ProjectionError::BadOutputSize { .. })
        ));
        assert!(matches!(
            Layout::Cubemap3x2.check_output_size(2881, 1920, d),
            Err(ProjectionError::OddSize { .. })
        ));
        assert!(matches!(
            Layout::Cubemap3x2.check_output_size(18, 12, d),
            Err(ProjectionError::TooSmall { .. })
        ));
        assert!(Layout::Cubemap3x2.check_output_size(24, 16, d).is_ok());
        assert!(Layout::Eac.check_output_size(3840, 2160, d).is_ok());
        assert!(Layout::Eac.check_output_size(1002, 562, d).is_ok());
        assert!(matches!(
            Layout::Eac.check_output_size(30, 40, d),
            Err(ProjectionError::TooSmall { .. })
        ));
        assert!(matches!(
            Layout::Eac.check_output_size(0, 40, d),
            Err(ProjectionError::ZeroSize { .. })
        ));
    }
}
