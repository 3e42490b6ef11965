//! The compact map: for one plane, where every output pixel reads the source, stored as runs
//! of up to 64 output pixels whose source position is a cubic in x, evaluated per pixel in
//! single precision (the same operations in the scalar and the SIMD kernel).
//!
//! ffmpeg's v360 keeps, for every output pixel, 4 source columns, 4 rows and 4 weights
//! (24 bytes) and streams all of it through memory each frame. Here each output row is cut
//! into runs of at most [`RUN_MAX`] pixels inside one smooth piece of the layout (a face, or an
//! EAC pad) and on one side of the longitude seam. Each run is fitted with a cubic through
//! the exact source positions at its ends and thirds, and kept if the exact positions at three
//! more points (the middles of the thirds, where a cubic's error peaks) are within
//! [`FIT_TOLERANCE`]; otherwise it is halved, down to runs of 4 pixels or fewer, which a cubic
//! fits exactly. Near the poles, where longitude turns fast, runs get short; elsewhere they are
//! [`RUN_MAX`] long: 48 bytes for 64 pixels. On a 3840x1920 source the c3x2 map is 7.1 MB
//! (ffmpeg's tables: 166 MB), the EAC one 9.3 MB (ffmpeg: 249 MB), both planes.
//!
//! Runs are stored band by band ([`BAND_ROWS`] output rows), and within a band tile column by
//! tile column, row by row: the kernel walks the output in `RUN_MAX x BAND_ROWS` tiles, so the
//! source a tile reads (a small patch, except near the poles) stays in cache while it is used,
//! and it prefetches the next tiles' source lines.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::geometry::{Piece, PlaneGeometry, Sample, Sampler};

/// Longest run, and the width of a tile.
pub(crate) const RUN_MAX: u32 = 64;

/// Output rows per band: the height of a tile and the unit of work a thread takes.
pub(crate) const BAND_ROWS: u32 = 16;

/// Largest difference, in source pixels, allowed between a run's cubic and the exact position
/// at the check points. Positions are rounded to 1/256 pixel on top of this; measured over
/// every pixel of a 4K projection the error stays below 1/190 pixel (bench/README.md).
pub(crate) const FIT_TOLERANCE: f64 = 1.0 / 512.0;

/// Bits of sub-pixel position the kernel interpolates with (weights 0..=256).
pub(crate) const WEIGHT_BITS: u32 = 8;
/// Positions in 1/256 pixel per source pixel.
const POS_ONE: f32 = (1 << WEIGHT_BITS) as f32;

/// A run of output pixels along a row. The source position of its pixel
/// `k`, in 1/256 source pixel, is `u[0] + k * (u[1] + k * (u[2] + k * u[3]))` (the same for `v`), computed
/// in `f32` in that order (no fused multiply-add) and truncated: `u[0]` carries half a 1/256
/// pixel so that the truncation rounds. Positions are never negative in a run without
/// [`Run::CLAMP`]. Single precision holds positions to 1/4096 pixel in a 4K frame, 1/512 in 16K.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    /// Output column of the first pixel.
    pub x: u16,
    /// Output row.
    pub y: u16,
    /// Pixels in the run, 1..=RUN_MAX.
    pub len: u16,
    /// [`Run::CLAMP`] when some pixel's 2x2 window would reach past the source's last column
    /// or row (only where a position is exactly on the edge, or a fit overshoots it): the
    /// kernel then clamps the window. [`Run::LAST_ROW`] when a window's lower row is the
    /// source's last and reaches its last two columns, where a 4-byte read at the window
    /// would pass the end of a tightly packed plane. Both are rare.
    pub flags: u16,
    pub u: [f32; 4],
    pub v: [f32; 4],
    /// Source column and row of the first and the last pixel's window (clamped to the plane),
    /// for prefetching: `[u_first, v_first, u_last, v_last]`.
    pub ends: [u16; 4],
}

/// The position, in 1/256 pixel, of pixel `k` (as `f32`) of a run with coefficients `c`.
#[inline(always)]
pub(crate) fn position(c: &[f32; 4], k: f32) -> i32 {
    (c[0] + k * (c[1] + k * (c[2] + k * c[3]))) as i32
}

impl Run {
    pub const CLAMP: u16 = 1;
    pub const LAST_ROW: u16 = 2;

    /// The output pixels of the run, in order.
    pub fn pixels(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (x, y) = (u32::from(self.x), u32::from(self.y));
        (0..u32::from(self.len)).map(move |k| (x + k, y))
    }

    /// The run's positions in 1/256 source pixel, as the kernel computes them.
    pub fn positions(&self) -> impl Iterator<Item = (i32, i32)> + '_ {
        (0..self.len).map(move |k| {
            let k = f32::from(k);
            (position(&self.u, k), position(&self.v, k))
        })
    }
}

/// One band's runs: rows `y0..y0 + rows` of the plane, runs `start..end` of [`PlaneMap::runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Band {
    pub y0: u32,
    pub rows: u32,
    pub start: usize,
    pub end: usize,
}

/// The map of one plane.
#[derive(Debug, Clone)]
pub(crate) struct PlaneMap {
    pub geometry: PlaneGeometry,
    pub runs: Vec<Run>,
    pub bands: Vec<Band>,
}

impl PlaneMap {
    /// Builds the maps of several planes on `threads` threads (band by band; the result does
    /// not depend on the thread count). Cost: about 5 exact evaluations per 64 output pixels,
    /// more near the poles.
    pub fn build(geometries: &[PlaneGeometry], threads: usize) -> Vec<PlaneMap> {
        let samplers: Vec<Sampler> = geometries.iter().map(|&g| Sampler::new(g)).collect();
        let tiles: Vec<Vec<(u32, u32)>> = geometries.iter().map(tile_columns).collect();
        let jobs: Vec<(usize, u32, u32)> = geometries
            .iter()
            .enumerate()
            .flat_map(|(p, g)| {
                (0..g.out_h)
                    .step_by(BAND_ROWS as usize)
                    .map(move |y0| (p, y0, BAND_ROWS.min(g.out_h - y0)))
            })
            .collect();
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, y0, rows)) = jobs.get(i) else {
                    return done;
                };
                let mut runs = Vec::new();
                for &tile in &tiles[p] {
                    fit_tile(&samplers[p], tile, (y0, y0 + rows), &mut runs);
                }
                done.push((i, runs));
            }
        };
        let mut built: Vec<(usize, Vec<Run>)> = std::thread::scope(|scope| {
            let others: Vec<_> = (1..threads.max(1)).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for other in others {
                all.extend(other.join().expect("a map-building thread panicked"));
            }
            all
        });
        built.sort_unstable_by_key(|(i, _)| *i);
        let mut maps: Vec<PlaneMap> = geometries
            .iter()
            .map(|&geometry| PlaneMap {
                geometry,
                runs: Vec::new(),
                bands: Vec::new(),
            })
            .collect();
        for ((p, y0, rows), (_, runs)) in jobs.into_iter().zip(built) {
            let map = &mut maps[p];
            let start = map.runs.len();
            map.runs.extend(runs);
            map.bands.push(Band {
                y0,
                rows,
                start,
                end: map.runs.len(),
            });
        }
        maps
    }

    /// Bytes the map takes (what a frame streams through, besides pixels).
    pub fn bytes(&self) -> usize {
        self.runs.len() * std::mem::size_of::<Run>()
            + self.bands.len() * std::mem::size_of::<Band>()
    }
}

/// The tile columns of a plane: each piece of the layout (face, EAC pad) cut into
/// `RUN_MAX`-wide columns from its left edge. The pieces are the same for every row.
fn tile_columns(g: &PlaneGeometry) -> Vec<(u32, u32)> {
    let mut tiles = Vec::new();
    for (start, end) in pieces(g.out_w, |i| g.column_piece(i)) {
        let mut x = start;
        while x < end {
            let x1 = (x + RUN_MAX).min(end);
            tiles.push((x, x1));
            x = x1;
        }
    }
    tiles
}

/// Maximal intervals of `0..len` over which `piece` does not change.
fn pieces(len: u32, piece: impl Fn(u32) -> Piece) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let p = piece(start);
        let mut end = start + 1;
        while end < len && piece(end) == p {
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// Adds the runs of one tile: `x0..x1` (inside one column piece) by `y0..y1` (one band).
///
/// Runs always go along rows. Runs down the columns of EAC's turned faces, where the source
/// moves more vertically along a row, would read fewer source rows per step, but writing a
/// column costs more than that saves (tried: EAC 5 % slower).
fn fit_tile(g: &Sampler, (x0, x1): (u32, u32), (y0, y1): (u32, u32), runs: &mut Vec<Run>) {
    for y in y0..y1 {
        fit_line(g, Line { x: x0, y }, x1 - x0, runs);
    }
}

/// A line of output pixels: from `(x, y)` along the row.
#[derive(Debug, Clone, Copy)]
struct Line {
    x: u32,
    y: u32,
}

impl Line {
    fn sample(&self, g: &Sampler, k: u32) -> Sample {
        g.sample(self.x + k, self.y)
    }

    fn skip(&self, k: u32) -> Line {
        Line {
            x: self.x + k,
            ..*self
        }
    }
}

/// Adds the runs for the first `n` pixels of `line`, all inside one piece of the layout.
fn fit_line(g: &Sampler, line: Line, n: u32, runs: &mut Vec<Run>) {
    // Within a piece, the direction's x along a line is either constant or monotonic, and z
    // is constant whenever x varies, so the line crosses the longitude seam (x changes sign
    // behind the viewer) at most once, and its ends show whether it does.
    let first = line.sample(g, 0);
    let last = line.sample(g, n - 1);
    if first.x_negative != last.x_negative && first.behind {
        // The first pixel on the far side of the seam.
        let (mut lo, mut hi) = (0, n - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if line.sample(g, mid).x_negative == first.x_negative {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        fit_run(g, line, hi, runs);
        fit_run(g, line.skip(hi), n - hi, runs);
    } else {
        fit_run(g, line, n, runs);
    }
}

/// Fits a cubic to the source positions of the first `n` pixels of `line` (no seam inside),
/// halving the run until the fit holds.
fn fit_run(g: &Sampler, line: Line, n: u32, runs: &mut Vec<Run>) {
    let at = |k: u32| -> Sample { line.sample(g, k) };
    let last = n - 1;
    // Nodes at the ends and thirds (every pixel of runs of 4 or fewer, fitted exactly).
    let third = |t: f64| (f64::from(last) * t).round() as u32;
    let nodes: Vec<u32> = if n <= 4 {
        (0..n).collect()
    } else {
        vec![0, third(1.0 / 3.0), third(2.0 / 3.0), last]
    };
    let samples: Vec<Sample> = nodes.iter().map(|&k| at(k)).collect();
    let fit = |coord: fn(&Sample) -> f32| {
        let points: Vec<(u32, f32)> = nodes
            .iter()
            .zip(&samples)
            .map(|(&k, s)| (k, coord(s)))
            .collect();
        Cubic::through(&points)
    };
    let fit_u = fit(|s| s.u);
    let fit_v = fit(|s| s.v);
    if n > 4 {
        // A cubic's interpolation error between the nodes peaks near the middle of each
        // third; check there.
        let ok = [1.0 / 6.0, 0.5, 5.0 / 6.0].iter().all(|&t| {
            let k = third(t);
            if nodes.contains(&k) {
                return true;
            }
            let s = at(k);
            (fit_u.at(k) - f64::from(s.u)).abs() <= FIT_TOLERANCE
                && (fit_v.at(k) - f64::from(s.v)).abs() <= FIT_TOLERANCE
        });
        if !ok {
            let half = n / 2;
            fit_run(g, line, half, runs);
            fit_run(g, line.skip(half), n - half, runs);
            return;
        }
    }
    let mut run = Run {
        x: line.x as u16,
        y: line.y as u16,
        len: n as u16,
        flags: 0,
        u: fit_u.coefficients(),
        v: fit_v.coefficients(),
        ends: [0; 4],
    };
    let window = |k: u32| {
        let k = k as f32;
        let (pu, pv) = (position(&run.u, k), position(&run.v, k));
        let clamp = |p: i32, size: u32| (p >> WEIGHT_BITS).clamp(0, size as i32 - 1) as u16;
        (clamp(pu, g.geometry.src_w), clamp(pv, g.geometry.src_h))
    };
    let ((u0, v0), (u1, v1)) = (window(0), window(n - 1));
    run.ends = [u0, v0, u1, v1];
    // The kernel's fast path reads columns ui, ui + 1 and rows vi, vi + 1 unchecked against
    // the edges: flag the run if any pixel would need more.
    let (max_u, max_v) = (g.geometry.src_w as i32 - 2, g.geometry.src_h as i32 - 2);
    let mut inside = true;
    let mut last_row = false;
    for (pu, pv) in run.positions() {
        let (ui, vi) = (pu >> WEIGHT_BITS, pv >> WEIGHT_BITS);
        inside &= (0..=max_u).contains(&ui) && (0..=max_v).contains(&vi);
        last_row |= vi == max_v && ui + 3 > max_u + 1;
    }
    if !inside {
        run.flags |= Run::CLAMP;
    }
    if last_row {
        run.flags |= Run::LAST_ROW;
    }
    runs.push(run);
}

/// The polynomial `f(x) = c[0] + c[1] x + c[2] x^2 + c[3] x^3` through up to four points
/// (of the lowest degree that goes through them all).
#[derive(Debug, Clone, Copy)]
struct Cubic {
    c: [f64; 4],
}

impl Cubic {
    /// Through `(x, f)` points with distinct `x`, the first at `x = 0`.
    fn through(points: &[(u32, f32)]) -> Cubic {
        debug_assert!(!points.is_empty() && points.len() <= 4 && points[0].0 == 0);
        // Newton's divided differences, then the Newton form expanded around 0.
        let xs: Vec<f64> = points.iter().map(|p| f64::from(p.0)).collect();
        let mut dd: Vec<f64> = points.iter().map(|p| f64::from(p.1)).collect();
        for level in 1..dd.len() {
            for i in (level..dd.len()).rev() {
                dd[i] = (dd[i] - dd[i - 1]) / (xs[i] - xs[i - level]);
            }
        }
        let get = |i: usize| dd.get(i).copied().unwrap_or(0.0);
        let (x1, x2) = (
            xs.get(1).copied().unwrap_or(0.0),
            xs.get(2).copied().unwrap_or(0.0),
        );
        let (c0, c1, c2, c3) = (get(0), get(1), get(2), get(3));
        Cubic {
            c: [c0, c1 - c2 * x1 + c3 * x1 * x2, c2 - c3 * (x1 + x2), c3],
        }
    }

    fn at(&self, x: u32) -> f64 {
        let x = f64::from(x);
        self.c[0] + x * (self.c[1] + x * (self.c[2] + x * self.c[3]))
    }

    /// The run's coefficients in 1/256 pixel, the start biased by half of one so that the
    /// kernel's truncation rounds.
    fn coefficients(&self) -> [f32; 4] {
        let one = f64::from(POS_ONE);
        [
            (self.c[0] * one + 0.5) as f32,
            (self.c[1] * one) as f32,
            (self.c[2] * one) as f32,
            (self.c[3] * one) as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    fn plane(layout: Layout, out_w: u32, out_h: u32, src_w: u32) -> PlaneMap {
        let g = PlaneGeometry {
            layout,
            out_w,
            out_h,
            src_w,
            src_h: src_w / 2,
        };
        let mut maps = PlaneMap::build(&[g], 3);
        let map = maps.pop().unwrap();
        let one = PlaneMap::build(&[g], 1).pop().unwrap();
        assert!(
            map.runs == one.runs && map.bands == one.bands,
            "maps depend on threads"
        );
        map
    }

    #[test]
    fn runs_cover_every_output_pixel_once() {
        for (layout, w, h) in [(Layout::Cubemap3x2, 384, 256), (Layout::Eac, 512, 288)] {
            let map = plane(layout, w, h, 512);
            let mut hits = vec![0u8; (w * h) as usize];
            for run in &map.runs {
                assert!(run.len >= 1 && u32::from(run.len) <= RUN_MAX);
                for (x, y) in run.pixels() {
                    hits[(y * w + x) as usize] += 1;
                }
            }
            assert!(hits.iter().all(|&h| h == 1), "{layout}");
            let rows: u32 = map.bands.iter().map(|b| b.rows).sum();
            assert_eq!(rows, h);
        }
    }

    #[test]
    fn run_positions_stay_close_to_the_exact_map() {
        for (layout, w, h) in [(Layout::Cubemap3x2, 384, 256), (Layout::Eac, 512, 288)] {
            let map = plane(layout, w, h, 512);
            let mut worst = 0.0f64;
            for run in &map.runs {
                for ((x, y), (pu, pv)) in run.pixels().zip(run.positions()) {
                    let s = map.geometry.sample(x, y);
                    let du = (pu as f64 / 256.0 - f64::from(s.u)).abs();
                    let dv = (pv as f64 / 256.0 - f64::from(s.v)).abs();
                    worst = worst.max(du).max(dv);
                }
            }
            assert!(worst < 1.0 / 64.0, "{layout}: {worst}");
        }
    }

    #[test]
    fn cubic_fits_its_points() {
        // f(x) = 1 + x^2 - x^3 / 8 at 0, 2, 4, 6; and fewer points, lower degree.
        let f = |x: f64| 1.0 + x * x - x * x * x / 8.0;
        let pts: Vec<(u32, f32)> = [0, 2, 4, 6]
            .iter()
            .map(|&x| (x, f(f64::from(x)) as f32))
            .collect();
        let c = Cubic::through(&pts);
        for x in 0..8 {
            assert!((c.at(x) - f(f64::from(x))).abs() < 1e-9, "{x}");
        }
        let line = Cubic::through(&[(0, 1.0), (3, 7.0)]);
        assert!((line.at(1) - 3.0).abs() < 1e-12);
        assert_eq!(Cubic::through(&[(0, 5.0)]).at(9), 5.0);
    }
}
