//! The crate's error type: every way a projection can be refused, each naming the input.

use thiserror::Error;

use crate::Layout;

/// Why a [`crate::Projector`] cannot be built or a frame cannot be projected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectionError {
    /// A width or height of zero.
    #[error("{what} size {width}x{height} has a zero dimension")]
    ZeroSize {
        what: &'static str,
        width: u32,
        height: u32,
    },
    /// The source is not a full equirectangular sphere: width must be exactly twice the height.
    /// Treat such a source as flat video.
    #[error(
        "source {width}x{height} is not 2:1, so it is not a full equirectangular frame: \
         project only 2:1 sources (treat this one as flat video)"
    )]
    NotEquirect { width: u32, height: u32 },
    /// 4:2:0 chroma needs even luma sizes.
    #[error(
        "{what} size {width}x{height} is odd: 4:2:0 chroma needs even widths and heights \
         (scale or crop to an even size first)"
    )]
    OddSize {
        what: &'static str,
        width: u32,
        height: u32,
    },
    /// Below the smallest frame the kernel accepts.
    #[error("{what} size {width}x{height} is too small: {reason}")]
    TooSmall {
        what: &'static str,
        width: u32,
        height: u32,
        reason: String,
    },
    /// Above the largest frame the kernel accepts (ffmpeg's v360 stops at 32767).
    #[error("{what} size {width}x{height} is too large: at most {max} pixels a side")]
    TooLarge {
        what: &'static str,
        width: u32,
        height: u32,
        max: u32,
    },
    /// An explicit output size whose faces would not fall on whole pixels in both planes.
    #[error(
        "output size {width}x{height} does not fit the {layout} layout: {reason} \
         (the default for this source is {default_width}x{default_height})"
    )]
    BadOutputSize {
        layout: Layout,
        width: u32,
        height: u32,
        default_width: u32,
        default_height: u32,
        reason: &'static str,
    },
    /// A pixel format the kernel does not handle (it is 8-bit 4:2:0 only: convert first).
    #[error(
        "pixel format {0:?} is not supported: the kernel takes 8-bit I420 or NV12 \
         (convert 10-bit or other formats to 8-bit 4:2:0 first)"
    )]
    UnsupportedFormat(String),
    /// A frame whose pixel format is not the one the projector was built for.
    #[error("{what} frame is {got:?}, but the projector was built for {expected:?}")]
    FormatMismatch {
        what: &'static str,
        expected: crate::PixelFormat,
        got: crate::PixelFormat,
    },
    /// A plane's stride is shorter than one row of its pixels.
    #[error("{what} plane {plane}: stride {stride} is shorter than its row of {row_bytes} bytes")]
    StrideTooSmall {
        what: &'static str,
        plane: &'static str,
        stride: usize,
        row_bytes: usize,
    },
    /// A plane's buffer ends before its last row does.
    #[error("{what} plane {plane}: buffer of {len} bytes is too small, {needed} needed")]
    BufferTooSmall {
        what: &'static str,
        plane: &'static str,
        len: usize,
        needed: usize,
    },
    /// A thread count of zero.
    #[error("thread count must be at least 1")]
    NoThreads,
}
