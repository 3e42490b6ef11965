//! Pixel formats and borrowed frames: plane slices with their strides.

use std::str::FromStr;

use crate::ProjectionError;

/// The 8-bit 4:2:0 layouts the kernel reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Three planes: Y, then U and V at half width and half height (`yuv420p`, GStreamer I420).
    I420,
    /// Two planes: Y, then interleaved U,V pairs at half width and half height.
    Nv12,
}

impl FromStr for PixelFormat {
    type Err = ProjectionError;

    /// Accepts GStreamer's and ffmpeg's names (`I420`, `yuv420p`, `NV12`, `nv12`); anything
    /// else, 10-bit formats included, is [`ProjectionError::UnsupportedFormat`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "i420" | "yuv420p" | "iyuv" => Ok(PixelFormat::I420),
            "nv12" => Ok(PixelFormat::Nv12),
            _ => Err(ProjectionError::UnsupportedFormat(name.to_string())),
        }
    }
}

/// A source frame: borrowed planes and their strides (bytes from one row to the next).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub(crate) format: PixelFormat,
    pub(crate) planes: [(&'a [u8], usize); 3],
}

impl<'a> Frame<'a> {
    /// An I420 frame from its Y, U and V planes.
    pub fn i420(
        y: &'a [u8],
        y_stride: usize,
        u: &'a [u8],
        u_stride: usize,
        v: &'a [u8],
        v_stride: usize,
    ) -> Frame<'a> {
        Frame {
            format: PixelFormat::I420,
            planes: [(y, y_stride), (u, u_stride), (v, v_stride)],
        }
    }

    /// An NV12 frame from its Y and interleaved UV planes.
    pub fn nv12(y: &'a [u8], y_stride: usize, uv: &'a [u8], uv_stride: usize) -> Frame<'a> {
        Frame {
            format: PixelFormat::Nv12,
            planes: [(y, y_stride), (uv, uv_stride), (&[], 0)],
        }
    }

    /// A tightly packed frame of `width x height` in one buffer (as `ffmpeg -f rawvideo`
    /// writes it): Y, then U and V (I420) or UV (NV12). Sizes must be even.
    pub fn packed(
        format: PixelFormat,
        data: &'a [u8],
        width: usize,
        height: usize,
    ) -> Result<Frame<'a>, ProjectionError> {
        let [y, c0, c1] = split_packed(format, data.len(), width, height, "source")?;
        Ok(match format {
            PixelFormat::I420 => Frame::i420(
                &data[y.0..y.1],
                width,
                &data[c0.0..c0.1],
                width / 2,
                &data[c1.0..c1.1],
                width / 2,
            ),
            PixelFormat::Nv12 => Frame::nv12(&data[y.0..y.1], width, &data[c0.0..c0.1], width),
        })
    }

    /// The frame's pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
}

/// An output frame: mutably borrowed planes and their strides.
#[derive(Debug)]
pub struct FrameMut<'a> {
    pub(crate) format: PixelFormat,
    pub(crate) planes: [(&'a mut [u8], usize); 3],
}

impl<'a> FrameMut<'a> {
    /// An I420 frame from its Y, U and V planes.
    pub fn i420(
        y: &'a mut [u8],
        y_stride: usize,
        u: &'a mut [u8],
        u_stride: usize,
        v: &'a mut [u8],
        v_stride: usize,
    ) -> FrameMut<'a> {
        FrameMut {
            format: PixelFormat::I420,
            planes: [(y, y_stride), (u, u_stride), (v, v_stride)],
        }
    }

    /// An NV12 frame from its Y and interleaved UV planes.
    pub fn nv12(
        y: &'a mut [u8],
        y_stride: usize,
        uv: &'a mut [u8],
        uv_stride: usize,
    ) -> FrameMut<'a> {
        FrameMut {
            format: PixelFormat::Nv12,
            planes: [(y, y_stride), (uv, uv_stride), (&mut [], 0)],
        }
    }

    /// A tightly packed frame of `width x height` in one buffer, as [`Frame::packed`].
    pub fn packed(
        format: PixelFormat,
        data: &'a mut [u8],
        width: usize,
        height: usize,
    ) -> Result<FrameMut<'a>, ProjectionError> {
        let [y, c0, _] = split_packed(format, data.len(), width, height, "output")?;
        let (luma, rest) = data.split_at_mut(y.1);
        let chroma_len = c0.1 - c0.0;
        Ok(match format {
            PixelFormat::I420 => {
                let (u, rest) = rest.split_at_mut(chroma_len);
                let v = &mut rest[..chroma_len];
                FrameMut::i420(luma, width, u, width / 2, v, width / 2)
            }
            PixelFormat::Nv12 => FrameMut::nv12(luma, width, &mut rest[..chroma_len], width),
        })
    }

    /// The frame's pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
}

/// Bytes of a packed 4:2:0 frame of `width x height` (even sizes).
pub fn packed_len(width: usize, height: usize) -> usize {
    width * height + 2 * (width / 2) * (height / 2)
}

/// Byte ranges of the planes of a packed frame.
fn split_packed(
    format: PixelFormat,
    len: usize,
    width: usize,
    height: usize,
    what: &'static str,
) -> Result<[(usize, usize); 3], ProjectionError> {
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(ProjectionError::OddSize {
            what,
            width: width as u32,
            height: height as u32,
        });
    }
    let needed = packed_len(width, height);
    if len < needed {
        return Err(ProjectionError::BufferTooSmall {
            what,
            plane: "packed frame",
            len,
            needed,
        });
    }
    let y = width * height;
    let c = (width / 2) * (height / 2);
    Ok(match format {
        PixelFormat::I420 => [(0, y), (y, y + c), (y + c, y + 2 * c)],
        PixelFormat::Nv12 => [(0, y), (y, y + 2 * c), (y + 2 * c, y + 2 * c)],
    })
}

/// Checks that a plane of `rows` rows of `row_bytes` bytes fits in `len` bytes at `stride`.
pub(crate) fn check_plane(
    what: &'static str,
    plane: &'static str,
    len: usize,
    stride: usize,
    row_bytes: usize,
    rows: usize,
) -> Result<(), ProjectionError> {
    if stride < row_bytes {
        return Err(ProjectionError::StrideTooSmall {
            what,
            plane,
            stride,
            row_bytes,
        });
    }
    let needed = stride * (rows - 1) + row_bytes;
    if len < needed {
        return Err(ProjectionError::BufferTooSmall {
            what,
            plane,
            len,
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!("I420".parse::<PixelFormat>(), Ok(PixelFormat::I420));
        assert_eq!("yuv420p".parse::<PixelFormat>(), Ok(PixelFormat::I420));
        assert_eq!("NV12".parse::<PixelFormat>(), Ok(PixelFormat::Nv12));
        let err = "I420_10LE".parse::<PixelFormat>().unwrap_err();
        assert_eq!(err, ProjectionError::UnsupportedFormat("I420_10LE".into()));
        assert!(err.to_string().contains("8-bit"), "{err}");
    }

    #[test]
    fn packed_frames_split_into_planes() {
        let data = vec![0u8; packed_len(8, 4)];
        let f = Frame::packed(PixelFormat::I420, &data, 8, 4).unwrap();
        assert_eq!(f.planes[0].0.len(), 32);
        assert_eq!(f.planes[1].0.len(), 8);
        assert_eq!(f.planes[2].0.len(), 8);
        let mut out = vec![0u8; packed_len(8, 4)];
        let f = FrameMut::packed(PixelFormat::Nv12, &mut out, 8, 4).unwrap();
        assert_eq!((f.planes[0].0.len(), f.planes[1].0.len()), (32, 16));
        let mut out = vec![0u8; packed_len(8, 4)];
        let f = FrameMut::packed(PixelFormat::I420, &mut out, 8, 4).unwrap();
        assert_eq!(
            (
                f.planes[0].0.len(),
                f.planes[1].0.len(),
                f.planes[2].0.len()
            ),
            (32, 8, 8)
        );
        assert!(matches!(
            Frame::packed(PixelFormat::I420, &data[..40], 8, 4),
            Err(ProjectionError::BufferTooSmall { .. })
        ));
    }
}
