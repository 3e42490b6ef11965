//! The compact map: for one plane, where every output pixel reads the source, stored as short
//! runs of output pixels whose source position is a quadratic in x, evaluated per pixel in
//! single precision (the same operations in the scalar and the SIMD kernel).
//!
//! ffmpeg's v360 keeps, for every output pixel, 4 source columns, 4 rows and 4 weights
//! (24 bytes) and streams all of it through memory each frame. Here each output row is cut
//! into runs of at most [`RUN_MAX`] pixels inside one smooth piece of the layout (a face, or an
//! EAC pad) and on one side of the longitude seam. Each run is fitted with a quadratic through
//! the exact source positions at its ends and middle, and kept if the exact positions at two
//! more points (where a quadratic's error peaks) are within [`FIT_TOLERANCE`]; otherwise it is
//! halved, down to runs of 3 pixels or fewer, which a quadratic fits exactly. Near the poles,
//! where longitude turns fast, runs get short; elsewhere they are 16 or [`RUN_MAX`] long,
//! 32 bytes each.
//!
//! Runs are stored band by band ([`BAND_ROWS`] output rows), and within a band tile column by
//! tile column, row by row: the kernel walks the output in `RUN_MAX x BAND_ROWS` tiles, so the
//! source a tile reads (a small patch, except at the poles) stays in cache while it is used.

use crate::geometry::{PlaneGeometry, Sample};

/// Longest run, and the width of a tile.
pub(crate) const RUN_MAX: u32 = 32;

/// Output rows per band: the height of a tile and the unit of work a thread takes.
pub(crate) const BAND_ROWS: u32 = 16;

/// Largest difference, in source pixels, allowed between a run's quadratic and the exact
/// position at the check points. Positions are rounded to 1/256 pixel on top of this.
pub(crate) const FIT_TOLERANCE: f64 = 1.0 / 512.0;

/// Bits of sub-pixel position the kernel interpolates with (weights 0..=256).
pub(crate) const WEIGHT_BITS: u32 = 8;
/// Positions in 1/256 pixel per source pixel.
const POS_ONE: f32 = (1 << WEIGHT_BITS) as f32;

/// A run of output pixels on one row. The source position of its pixel `k` is
/// `u[0] + k * (u[1] + k * u[2])` source pixels (the same for `v`), computed in `f32` in that
/// order (no fused multiply-add), then scaled by 256 and truncated: `u[0]` carries half a
/// 1/256 pixel so that the truncation rounds. Positions are never negative in a run without
/// [`Run::CLAMP`].
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
    pub u: [f32; 3],
    pub v: [f32; 3],
}

/// The position, in 1/256 pixel, of pixel `k` (as `f32`) of a run with coefficients `c`.
#[inline(always)]
pub(crate) fn position(c: &[f32; 3], k: f32) -> i32 {
    ((c[0] + k * (c[1] + k * c[2])) * POS_ONE) as i32
}

impl Run {
    pub const CLAMP: u16 = 1;
    pub const LAST_ROW: u16 = 2;

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
    /// Builds the map of a plane. Cost: about 5 exact evaluations per 32 output pixels, more
    /// near the poles.
    pub fn build(geometry: PlaneGeometry) -> PlaneMap {
        let tiles = tile_columns(&geometry);
        let mut runs =
            Vec::with_capacity((geometry.out_w as usize / 24 + 4) * geometry.out_h as usize);
        let mut bands = Vec::new();
        let mut y0 = 0;
        while y0 < geometry.out_h {
            let rows = BAND_ROWS.min(geometry.out_h - y0);
            let start = runs.len();
            for &(x0, x1) in &tiles {
                for y in y0..y0 + rows {
                    fit_interval(&geometry, y, x0, x1, &mut runs);
                }
            }
            bands.push(Band {
                y0,
                rows,
                start,
                end: runs.len(),
            });
            y0 += rows;
        }
        PlaneMap {
            geometry,
            runs,
            bands,
        }
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
    let mut start = 0;
    while start < g.out_w {
        let piece = g.column_piece(start);
        let mut end = start + 1;
        while end < g.out_w && g.column_piece(end) == piece {
            end += 1;
        }
        let mut x = start;
        while x < end {
            let x1 = (x + RUN_MAX).min(end);
            tiles.push((x, x1));
            x = x1;
        }
        start = end;
    }
    tiles
}

/// Adds the runs for output pixels `x0..x1` of row `y`, all inside one piece of the layout.
fn fit_interval(g: &PlaneGeometry, y: u32, x0: u32, x1: u32, runs: &mut Vec<Run>) {
    // Within a piece, a row's direction has x either constant or monotonic in the column and z
    // constant whenever x varies, so the row crosses the longitude seam (x changes sign behind
    // the viewer) at most once, and the ends show whether it does.
    let first = g.sample(x0, y);
    let last = g.sample(x1 - 1, y);
    if first.x_negative != last.x_negative && first.behind {
        // The first column on the far side of the seam.
        let (mut lo, mut hi) = (x0, x1 - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if g.sample(mid, y).x_negative == first.x_negative {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        fit_run(g, y, x0, hi, runs);
        fit_run(g, y, hi, x1, runs);
    } else {
        fit_run(g, y, x0, x1, runs);
    }
}

/// Fits a quadratic to the source positions of pixels `x0..x1` of row `y` (no seam inside),
/// halving the run until the fit holds.
fn fit_run(g: &PlaneGeometry, y: u32, x0: u32, x1: u32, runs: &mut Vec<Run>) {
    let n = x1 - x0;
    let at = |k: u32| -> Sample { g.sample(x0 + k, y) };
    let last = n - 1;
    let mid = last / 2;
    let s0 = at(0);
    let sm = at(mid);
    let sn = at(last);
    let fit_u = Quadratic::through(mid, last, s0.u, sm.u, sn.u);
    let fit_v = Quadratic::through(mid, last, s0.v, sm.v, sn.v);
    if n > 3 {
        // A quadratic's interpolation error between nodes 0, n/2, n peaks near 0.21n and
        // 0.79n; check there (and, for 4 pixels, at the one point not fitted).
        let checks = [
            (f64::from(last) * 0.21).round() as u32,
            (f64::from(last) * 0.79).round() as u32,
        ];
        let ok = checks.iter().all(|&k| {
            if k == 0 || k == mid || k == last {
                return true;
            }
            let s = at(k);
            (fit_u.at(k) - f64::from(s.u)).abs() <= FIT_TOLERANCE
                && (fit_v.at(k) - f64::from(s.v)).abs() <= FIT_TOLERANCE
        });
        if !ok {
            let split = x0 + n / 2;
            fit_run(g, y, x0, split, runs);
            fit_run(g, y, split, x1, runs);
            return;
        }
    }
    let mut run = Run {
        x: x0 as u16,
        y: y as u16,
        len: n as u16,
        flags: 0,
        u: fit_u.coefficients(),
        v: fit_v.coefficients(),
    };
    // The kernel's fast path reads columns ui, ui + 1 and rows vi, vi + 1 unchecked against
    // the edges: flag the run if any pixel would need more.
    let (max_u, max_v) = (g.src_w as i32 - 2, g.src_h as i32 - 2);
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

/// `f(x) = a + b x + c x^2` through `(0, f0)`, `(m, fm)`, `(n, fn)` (fewer points for runs of
/// one or two pixels, where `m` or `n` is 0).
#[derive(Debug, Clone, Copy)]
struct Quadratic {
    a: f64,
    b: f64,
    c: f64,
}

impl Quadratic {
    fn through(m: u32, n: u32, f0: f32, fm: f32, fn_: f32) -> Quadratic {
        let (f0, fm, fn_) = (f64::from(f0), f64::from(fm), f64::from(fn_));
        let (m, n) = (f64::from(m), f64::from(n));
        if n == 0.0 {
            return Quadratic {
                a: f0,
                b: 0.0,
                c: 0.0,
            };
        }
        if m == 0.0 {
            return Quadratic {
                a: f0,
                b: (fn_ - f0) / n,
                c: 0.0,
            };
        }
        // Divided differences.
        let d1 = (fm - f0) / m;
        let d2 = (fn_ - fm) / (n - m);
        let c = (d2 - d1) / n;
        let b = d1 - c * m;
        Quadratic { a: f0, b, c }
    }

    fn at(&self, x: u32) -> f64 {
        let x = f64::from(x);
        self.a + x * (self.b + x * self.c)
    }

    /// The run's coefficients, the start biased by half a 1/256 pixel so that the kernel's
    /// truncation rounds.
    fn coefficients(&self) -> [f32; 3] {
        [
            (self.a + 0.5 / f64::from(POS_ONE)) as f32,
            self.b as f32,
            self.c as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    fn plane(layout: Layout, out_w: u32, out_h: u32, src_w: u32) -> PlaneMap {
        PlaneMap::build(PlaneGeometry {
            layout,
            out_w,
            out_h,
            src_w,
            src_h: src_w / 2,
        })
    }

    #[test]
    fn runs_cover_every_output_pixel_once() {
        for (layout, w, h) in [(Layout::Cubemap3x2, 384, 256), (Layout::Eac, 512, 288)] {
            let map = plane(layout, w, h, 512);
            let mut hits = vec![0u8; (w * h) as usize];
            for run in &map.runs {
                assert!(run.len >= 1 && u32::from(run.len) <= RUN_MAX);
                for x in run.x..run.x + run.len {
                    hits[(u32::from(run.y) * w + u32::from(x)) as usize] += 1;
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
                for (k, (pu, pv)) in run.positions().enumerate() {
                    let s = map
                        .geometry
                        .sample(u32::from(run.x) + k as u32, u32::from(run.y));
                    let du = (pu as f64 / 256.0 - f64::from(s.u)).abs();
                    let dv = (pv as f64 / 256.0 - f64::from(s.v)).abs();
                    worst = worst.max(du).max(dv);
                }
            }
            assert!(worst < 1.0 / 64.0, "{layout}: {worst}");
        }
    }

    #[test]
    fn quadratic_fits_three_points() {
        let q = Quadratic::through(2, 4, 1.0, 5.0, 17.0);
        for (x, f) in [(0, 1.0), (2, 5.0), (4, 17.0), (1, 2.0), (3, 10.0)] {
            assert!((q.at(x) - f).abs() < 1e-12);
        }
    }
}
