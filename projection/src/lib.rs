//! The 360 projection kernel: equirectangular frames to ffmpeg's cubemap 3x2 (`c3x2`) and
//! equi-angular cubemap (`eac`) layouts, bilinear, on 8-bit I420 and NV12 planes, on as many
//! threads as asked. Pure Rust, no GStreamer: the worker wraps it.
//!
//! The maps are ffmpeg 5.1 v360's, so the output is interchangeable with
//! `ffmpeg -vf v360=e:c3x2:interp=linear` (or `e:eac`): same layout, face order and rotation,
//! pixel centres, EAC padding, and the same per-plane mapping of chroma. What differs is how the
//! map is kept: ffmpeg stores 24 bytes per output pixel and reads them all each frame; this
//! crate stores runs of up to 64 pixels whose source position is a cubic in x (under 1 byte
//! per output pixel), walks the output in tiles, and on x86-64 with AVX2 reads the source
//! row by row for 16 pixels at a time (module `kernel`). Its source positions are within
//! 1/190 pixel of ffmpeg's; its output is within a few levels of ffmpeg's (about 68 dB PSNR).
//! [`reference`](mod@reference) is a per-pixel model of ffmpeg's filter that reproduces its output exactly.
//!
//! ```
//! use projection::{Frame, FrameMut, Interp, Layout, PixelFormat, Projector, packed_len};
//!
//! let p = Projector::new(Layout::Cubemap3x2, (512, 256), None, Interp::Bilinear, PixelFormat::I420, 2)?;
//! assert_eq!(p.output_size(), (384, 256));
//! let src = vec![128u8; packed_len(512, 256)];
//! let mut out = vec![0u8; packed_len(384, 256)];
//! p.project(
//!     &Frame::packed(PixelFormat::I420, &src, 512, 256)?,
//!     &mut FrameMut::packed(PixelFormat::I420, &mut out, 384, 256)?,
//!     2,
//! )?;
//! assert!(out.iter().all(|&b| b == 128));
//! # Ok::<(), projection::ProjectionError>(())
//! ```
//!
//! Rules: the source must be exactly 2:1 (anything else is not a full sphere:
//! [`ProjectionError::NotEquirect`], and the caller treats it as flat video) with even sides;
//! output sizes default to ffmpeg's ([`Layout::default_output_size`]); explicit sizes must be
//! even and, for `c3x2`, give faces on whole pixels in both planes.
// The only unsafe code is the AVX2 kernel (kernel::avx2), which says why it is there and why
// it is sound; everything else is safe.
#![deny(unsafe_code)]

mod error;
mod frame;
mod geometry;
mod kernel;
mod layout;
mod map;
pub mod reference;

use std::sync::Mutex;

pub use error::ProjectionError;
pub use frame::{Frame, FrameMut, PixelFormat, packed_len};
pub use layout::{Layout, MAX_SIDE, MIN_FACE};

use frame::check_plane;
use geometry::PlaneGeometry;
use kernel::{BandOut, BandSrc, Simd, SrcPlane};
use map::PlaneMap;

/// How the source is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Interp {
    /// ffmpeg's `interp=linear` (its default): a 2x2 window at `floor(u), floor(v)`.
    #[default]
    Bilinear,
}

/// A projection from one equirectangular size to one layout and output size, with its maps
/// built. Build once per stream, then call [`Projector::project`] for every frame; it is
/// `Sync`, so threads may share it.
#[derive(Debug, Clone)]
pub struct Projector {
    layout: Layout,
    source: (u32, u32),
    output: (u32, u32),
    format: PixelFormat,
    luma: PlaneMap,
    chroma: PlaneMap,
}

/// Facts about a projector's maps, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapStats {
    /// Runs in the luma and chroma maps.
    pub runs: usize,
    /// Output pixels per run, on average (at most 32).
    pub pixels_per_run: f64,
    /// Runs whose window needs clamping at the source's edge (the slower path).
    pub clamped_runs: usize,
    /// Bytes of both maps.
    pub bytes: usize,
    /// Bytes ffmpeg's bilinear tables take for the same projection (24 per output pixel, luma
    /// and one chroma plane).
    pub ffmpeg_bytes: usize,
}

/// How far the map's source positions are from ffmpeg's exact ones, in source pixels of each
/// plane, over every output pixel ([`Projector::map_error`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapError {
    /// Largest error in u or v.
    pub max: f64,
    /// Root mean square of the u and v errors.
    pub rms: f64,
    /// Output pixels whose 2x2 window (its top-left column and row) differs from ffmpeg's.
    pub window_differs: usize,
    /// Output pixels compared.
    pub pixels: usize,
}

impl Projector {
    /// Builds the maps for `layout` from a `source` (width, height) equirectangular frame to an
    /// `output` size, or ffmpeg's default size for the layout when `None`, on `threads`
    /// threads (the maps do not depend on the count).
    pub fn new(
        layout: Layout,
        source: (u32, u32),
        output: Option<(u32, u32)>,
        interp: Interp,
        format: PixelFormat,
        threads: usize,
    ) -> Result<Projector, ProjectionError> {
        let Interp::Bilinear = interp;
        if threads == 0 {
            return Err(ProjectionError::NoThreads);
        }
        layout::check_source_size(source.0, source.1)?;
        let default = layout.default_output_size(source.0, source.1);
        let output = output.unwrap_or(default);
        layout.check_output_size(output.0, output.1, default)?;
        let plane = |shift: u32| PlaneGeometry {
            layout,
            out_w: output.0 >> shift,
            out_h: output.1 >> shift,
            src_w: source.0 >> shift,
            src_h: source.1 >> shift,
        };
        let mut maps = PlaneMap::build(&[plane(0), plane(1)], threads);
        let chroma = maps.pop().expect("two maps");
        let luma = maps.pop().expect("two maps");
        Ok(Projector {
            layout,
            source,
            output,
            format,
            luma,
            chroma,
        })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The source size (width, height).
    pub fn source_size(&self) -> (u32, u32) {
        self.source
    }

    /// The output size (width, height).
    pub fn output_size(&self) -> (u32, u32) {
        self.output
    }

    /// The pixel format of the frames it takes and writes.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Projects one frame on `threads` threads (1: the calling thread only). `src` must be a
    /// frame of the source size and `dst` one of the output size, both in the projector's
    /// format; every output pixel is written. Output is identical for any thread count.
    pub fn project(
        &self,
        src: &Frame<'_>,
        dst: &mut FrameMut<'_>,
        threads: usize,
    ) -> Result<(), ProjectionError> {
        self.project_using(src, dst, threads, Simd::detect())
    }

    /// [`Projector::project`] with a chosen implementation (tests compare them).
    fn project_using(
        &self,
        src: &Frame<'_>,
        dst: &mut FrameMut<'_>,
        threads: usize,
        simd: Simd,
    ) -> Result<(), ProjectionError> {
        if threads == 0 {
            return Err(ProjectionError::NoThreads);
        }
        for (what, got) in [("source", src.format), ("output", dst.format)] {
            if got != self.format {
                return Err(ProjectionError::FormatMismatch {
                    what,
                    expected: self.format,
                    got,
                });
            }
        }
        self.check_frame("source", self.source, src.planes.map(|(d, s)| (d.len(), s)))?;
        self.check_frame(
            "output",
            self.output,
            [0, 1, 2].map(|i| (dst.planes[i].0.len(), dst.planes[i].1)),
        )?;

        let (sw, sh) = (self.source.0 as usize, self.source.1 as usize);
        let plane = |i: usize, width: usize, height: usize| SrcPlane {
            data: src.planes[i].0,
            stride: src.planes[i].1,
            width,
            height,
        };
        let luma_src = BandSrc::Single(plane(0, sw, sh));
        let chroma_src = match self.format {
            PixelFormat::I420 => BandSrc::Pair(plane(1, sw / 2, sh / 2), plane(2, sw / 2, sh / 2)),
            PixelFormat::Nv12 => BandSrc::Interleaved(plane(1, sw / 2, sh / 2)),
        };

        // One job per band of each map; the output planes are cut into the bands' rows.
        let mut jobs: Vec<(&PlaneMap, &map::Band, BandSrc<'_>, BandOut<'_>)> =
            Vec::with_capacity(self.luma.bands.len() + self.chroma.bands.len());
        let rows = map::BAND_ROWS as usize;
        let [(y, ys), (c0, c0s), (c1, c1s)] = &mut dst.planes;
        let (ys, c0s, c1s) = (*ys, *c0s, *c1s);
        let luma_bands = self.luma.bands.iter().zip(y.chunks_mut(rows * ys));
        for (band, out) in luma_bands {
            jobs.push((&self.luma, band, luma_src, BandOut::Single((out, ys))));
        }
        match self.format {
            PixelFormat::I420 => {
                let bands = self
                    .chroma
                    .bands
                    .iter()
                    .zip(c0.chunks_mut(rows * c0s).zip(c1.chunks_mut(rows * c1s)));
                for (band, (u, v)) in bands {
                    jobs.push((
                        &self.chroma,
                        band,
                        chroma_src,
                        BandOut::Pair((u, c0s), (v, c1s)),
                    ));
                }
            }
            PixelFormat::Nv12 => {
                for (band, uv) in self.chroma.bands.iter().zip(c0.chunks_mut(rows * c0s)) {
                    jobs.push((
                        &self.chroma,
                        band,
                        chroma_src,
                        BandOut::Interleaved((uv, c0s)),
                    ));
                }
            }
        }

        if threads == 1 {
            for (map, band, src, out) in jobs {
                kernel::project_band(map, band, src, out, simd);
            }
            return Ok(());
        }
        // Threads take bands from a shared list until it is empty: bands near the poles cost
        // more, so a fixed split would leave a thread idle.
        jobs.reverse();
        let queue = Mutex::new(jobs);
        let work = || {
            loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((map, band, src, out)) = job else {
                    break;
                };
                kernel::project_band(map, band, src, out, simd);
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        Ok(())
    }

    /// Checks a frame's planes (length, stride) against a size in the projector's format.
    fn check_frame(
        &self,
        what: &'static str,
        (w, h): (u32, u32),
        planes: [(usize, usize); 3],
    ) -> Result<(), ProjectionError> {
        let (w, h) = (w as usize, h as usize);
        check_plane(what, "Y", planes[0].0, planes[0].1, w, h)?;
        match self.format {
            PixelFormat::I420 => {
                check_plane(what, "U", planes[1].0, planes[1].1, w / 2, h / 2)?;
                check_plane(what, "V", planes[2].0, planes[2].1, w / 2, h / 2)
            }
            PixelFormat::Nv12 => check_plane(what, "UV", planes[1].0, planes[1].1, w, h / 2),
        }
    }

    /// Sizes of the maps, against ffmpeg's tables.
    pub fn map_stats(&self) -> MapStats {
        let maps = [&self.luma, &self.chroma];
        let runs: usize = maps.iter().map(|m| m.runs.len()).sum();
        let pixels: usize = maps
            .iter()
            .map(|m| m.geometry.out_w as usize * m.geometry.out_h as usize)
            .sum();
        MapStats {
            runs,
            pixels_per_run: pixels as f64 / runs as f64,
            clamped_runs: maps
                .iter()
                .map(|m| {
                    m.runs
                        .iter()
                        .filter(|r| r.flags & map::Run::CLAMP != 0)
                        .count()
                })
                .sum(),
            bytes: maps.iter().map(|m| m.bytes()).sum(),
            ffmpeg_bytes: pixels * 24,
        }
    }

    /// Compares every output pixel's source position in the maps (as the kernel computes it,
    /// rounded to 1/256 pixel) with ffmpeg's exact one. Slow: it evaluates the exact map
    /// everywhere, as ffmpeg's set-up does; for tests and benchmarks.
    pub fn map_error(&self) -> MapError {
        let mut max = 0.0f64;
        let mut sum_sq = 0.0f64;
        let mut window_differs = 0;
        let mut pixels = 0;
        for m in [&self.luma, &self.chroma] {
            for run in &m.runs {
                for ((x, y), (pu, pv)) in run.pixels().zip(run.positions()) {
                    let s = m.geometry.sample(x, y);
                    let eu = pu as f64 / 256.0 - f64::from(s.u);
                    let ev = pv as f64 / 256.0 - f64::from(s.v);
                    max = max.max(eu.abs()).max(ev.abs());
                    sum_sq += eu * eu + ev * ev;
                    if (pu >> 8, pv >> 8) != (s.u.floor() as i32, s.v.floor() as i32) {
                        window_differs += 1;
                    }
                    pixels += 1;
                }
            }
        }
        MapError {
            max,
            rms: (sum_sq / (2 * pixels) as f64).sqrt(),
            window_differs,
            pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_flat_source_gives_a_flat_output() {
        for layout in [Layout::Cubemap3x2, Layout::Eac] {
            for format in [PixelFormat::I420, PixelFormat::Nv12] {
                let p =
                    Projector::new(layout, (256, 128), None, Interp::Bilinear, format, 1).unwrap();
                let (w, h) = p.output_size();
                let src = vec![77u8; packed_len(256, 128)];
                let mut out = vec![0u8; packed_len(w as usize, h as usize)];
                p.project(
                    &Frame::packed(format, &src, 256, 128).unwrap(),
                    &mut FrameMut::packed(format, &mut out, w as usize, h as usize).unwrap(),
                    3,
                )
                .unwrap();
                assert!(out.iter().all(|&b| b == 77), "{layout} {format:?}");
            }
        }
    }

    #[test]
    fn the_simd_kernel_writes_the_scalar_kernels_bytes() {
        let simd = Simd::detect();
        if simd == Simd::Scalar {
            eprintln!("no SIMD kernel on this CPU: nothing to compare");
            return;
        }
        for layout in [Layout::Cubemap3x2, Layout::Eac] {
            for format in [PixelFormat::I420, PixelFormat::Nv12] {
                // Small faces (large steps in the source) and 2:1 noise: both the row-by-row
                // reads and the gathers are used, and every edge case of the runs.
                for (sw, out) in [
                    (512, None),
                    (1024, Some((288, 192))),
                    (256, Some((1536, 1024))),
                ] {
                    let p = Projector::new(layout, (sw, sw / 2), out, Interp::Bilinear, format, 2);
                    let p = match p {
                        Ok(p) => p,
                        Err(_) => continue,
                    };
                    let (w, h) = (p.output_size().0 as usize, p.output_size().1 as usize);
                    let src = noise(packed_len(sw as usize, sw as usize / 2), sw);
                    let frame = Frame::packed(format, &src, sw as usize, sw as usize / 2).unwrap();
                    let mut a = vec![0u8; packed_len(w, h)];
                    let mut b = vec![1u8; packed_len(w, h)];
                    p.project_using(
                        &frame,
                        &mut FrameMut::packed(format, &mut a, w, h).unwrap(),
                        1,
                        Simd::Scalar,
                    )
                    .unwrap();
                    p.project_using(
                        &frame,
                        &mut FrameMut::packed(format, &mut b, w, h).unwrap(),
                        2,
                        simd,
                    )
                    .unwrap();
                    assert!(a == b, "{layout} {format:?} {sw} {out:?}");
                }
            }
        }
    }

    #[test]
    fn strided_planes_give_the_same_output_as_packed_ones() {
        let p = Projector::new(
            Layout::Eac,
            (256, 128),
            None,
            Interp::Bilinear,
            PixelFormat::I420,
            1,
        )
        .unwrap();
        let (w, h) = (p.output_size().0 as usize, p.output_size().1 as usize);
        let src = noise(packed_len(256, 128), 7);
        let mut packed = vec![0u8; packed_len(w, h)];
        p.project(
            &Frame::packed(PixelFormat::I420, &src, 256, 128).unwrap(),
            &mut FrameMut::packed(PixelFormat::I420, &mut packed, w, h).unwrap(),
            1,
        )
        .unwrap();
        // The same source with a 300-byte luma stride, and output with padded strides.
        let mut y = vec![0u8; 300 * 128];
        for r in 0..128 {
            y[r * 300..r * 300 + 256].copy_from_slice(&src[r * 256..r * 256 + 256]);
        }
        let (u, v) = src[256 * 128..].split_at(128 * 64);
        let (ys, cs) = (w + 64, w / 2 + 16);
        let (mut oy, mut ou, mut ov) = (
            vec![0u8; ys * h],
            vec![0u8; cs * h / 2],
            vec![0u8; cs * h / 2],
        );
        p.project(
            &Frame::i420(&y, 300, u, 128, v, 128),
            &mut FrameMut::i420(&mut oy, ys, &mut ou, cs, &mut ov, cs),
            2,
        )
        .unwrap();
        for r in 0..h {
            assert_eq!(&oy[r * ys..r * ys + w], &packed[r * w..(r + 1) * w]);
        }
        let cu = &packed[w * h..w * h + w * h / 4];
        for r in 0..h / 2 {
            assert_eq!(&ou[r * cs..r * cs + w / 2], &cu[r * w / 2..(r + 1) * w / 2]);
        }
    }

    #[test]
    fn bad_frames_are_refused_with_the_plane_named() {
        let p = Projector::new(
            Layout::Cubemap3x2,
            (256, 128),
            None,
            Interp::Bilinear,
            PixelFormat::I420,
            1,
        )
        .unwrap();
        let src = vec![0u8; packed_len(256, 128)];
        let mut out = vec![0u8; packed_len(192, 128)];
        let (y, rest) = src.split_at(256 * 128);
        let (u, v) = rest.split_at(128 * 64);
        let (oy, orest) = out.split_at_mut(192 * 128);
        let (ou, ov) = orest.split_at_mut(96 * 64);
        let err = p
            .project(
                &Frame::i420(y, 200, u, 128, v, 128),
                &mut FrameMut::i420(oy, 192, ou, 96, ov, 96),
                1,
            )
            .unwrap_err();
        assert!(
            matches!(err, ProjectionError::StrideTooSmall { plane: "Y", .. }),
            "{err}"
        );
        let err = p
            .project(
                &Frame::i420(y, 256, u, 128, &v[..100], 128),
                &mut FrameMut::i420(oy, 192, ou, 96, ov, 96),
                1,
            )
            .unwrap_err();
        assert!(
            matches!(err, ProjectionError::BufferTooSmall { plane: "V", .. }),
            "{err}"
        );
        let err = p
            .project(
                &Frame::nv12(y, 256, rest, 256),
                &mut FrameMut::i420(oy, 192, ou, 96, ov, 96),
                1,
            )
            .unwrap_err();
        assert!(
            matches!(err, ProjectionError::FormatMismatch { .. }),
            "{err}"
        );
        let err = p
            .project(
                &Frame::i420(y, 256, u, 128, v, 128),
                &mut FrameMut::i420(oy, 192, ou, 96, ov, 96),
                0,
            )
            .unwrap_err();
        assert_eq!(err, ProjectionError::NoThreads);
    }

    #[test]
    fn bad_sizes_are_refused_at_build() {
        let new = |src, out| {
            Projector::new(
                Layout::Cubemap3x2,
                src,
                out,
                Interp::Bilinear,
                PixelFormat::I420,
                1,
            )
        };
        let err = new((3840, 2160), None).unwrap_err();
        assert!(err.to_string().contains("3840x2160 is not 2:1"), "{err}");
        assert!(matches!(
            new((1922, 961), None),
            Err(ProjectionError::OddSize { .. })
        ));
        assert!(matches!(
            new((0, 0), None),
            Err(ProjectionError::ZeroSize { .. })
        ));
        assert!(matches!(
            new((16, 8), None),
            Err(ProjectionError::TooSmall { .. })
        ));
        let err = new((3840, 1920), Some((2882, 1920))).unwrap_err();
        assert!(
            err.to_string()
                .contains("default for this source is 2880x1920"),
            "{err}"
        );
        assert!(new((3840, 1920), Some((1536, 1024))).is_ok());
    }

    #[test]
    fn the_map_is_small_and_close_to_ffmpegs() {
        for layout in [Layout::Cubemap3x2, Layout::Eac] {
            let p = Projector::new(
                layout,
                (1024, 512),
                None,
                Interp::Bilinear,
                PixelFormat::I420,
                2,
            )
            .unwrap();
            let stats = p.map_stats();
            assert!(stats.bytes * 4 < stats.ffmpeg_bytes, "{layout}: {stats:?}");
            let err = p.map_error();
            assert!(err.max < 1.0 / 64.0, "{layout}: {err:?}");
        }
    }
}
