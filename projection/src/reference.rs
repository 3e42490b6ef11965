//! A straight per-pixel model of ffmpeg 5.1's `v360=e:LAYOUT:interp=linear` on 8-bit 4:2:0:
//! the exact map evaluated for every output pixel, ffmpeg's 14-bit weights
//! (`lrintf(w * 16385)`) and its truncating sum. Slow (trigonometry per pixel, no tables
//! kept); it exists to check the fast kernel and to pin down ffmpeg's conventions in tests.

use crate::geometry::PlaneGeometry;
use crate::{Frame, FrameMut, Layout, PixelFormat, ProjectionError};

/// Projects `src` (`source` size) into `dst` (`output` size) the way ffmpeg 5.1 does, on one
/// thread. Both frames must be I420 and tightly sized for their planes.
pub fn project(
    layout: Layout,
    source: (u32, u32),
    output: (u32, u32),
    src: &Frame<'_>,
    dst: &mut FrameMut<'_>,
) -> Result<(), ProjectionError> {
    for (what, got) in [("source", src.format), ("output", dst.format)] {
        if got != PixelFormat::I420 {
            return Err(ProjectionError::FormatMismatch {
                what,
                expected: PixelFormat::I420,
                got,
            });
        }
    }
    for p in 0..3 {
        let shift = u32::from(p > 0);
        let g = PlaneGeometry {
            layout,
            out_w: output.0 >> shift,
            out_h: output.1 >> shift,
            src_w: source.0 >> shift,
            src_h: source.1 >> shift,
        };
        let (s, ss) = src.planes[p];
        let (d, ds) = (&mut *dst.planes[p].0, dst.planes[p].1);
        crate::frame::check_plane(
            "source",
            "plane",
            s.len(),
            ss,
            g.src_w as usize,
            g.src_h as usize,
        )?;
        crate::frame::check_plane(
            "output",
            "plane",
            d.len(),
            ds,
            g.out_w as usize,
            g.out_h as usize,
        )?;
        plane(&g, s, ss, d, ds);
    }
    Ok(())
}

/// One plane, ffmpeg's way.
fn plane(g: &PlaneGeometry, src: &[u8], src_stride: usize, dst: &mut [u8], dst_stride: usize) {
    let (max_u, max_v) = (g.src_w as usize - 1, g.src_h as usize - 1);
    for j in 0..g.out_h {
        for i in 0..g.out_w {
            let s = g.sample(i, j);
            let (ui, vi) = (s.u.floor(), s.v.floor());
            let (du, dv) = (s.u - ui, s.v - vi);
            // ffmpeg's bilinear_kernel; lrintf rounds half to even.
            let k = |w: f32| (w * 16385.0).round_ties_even() as i32;
            let ker = [
                k((1.0 - du) * (1.0 - dv)),
                k(du * (1.0 - dv)),
                k((1.0 - du) * dv),
                k(du * dv),
            ];
            // The window never leaves the frame with a non-zero weight (u <= W - 1): clamp
            // the zero-weight taps on the edge itself.
            let (u0, v0) = (ui as usize, vi as usize);
            let (u1, v1) = ((u0 + 1).min(max_u), (v0 + 1).min(max_v));
            let px = |u: usize, v: usize| i32::from(src[v * src_stride + u]);
            let sum = ker[0] * px(u0, v0)
                + ker[1] * px(u1, v0)
                + ker[2] * px(u0, v1)
                + ker[3] * px(u1, v1);
            dst[j as usize * dst_stride + i as usize] = (sum >> 14).clamp(0, 255) as u8;
        }
    }
}
