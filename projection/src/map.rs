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

use crate::geometry::{Piece, PlaneGeometry, Sample};

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

/// A run of output pixels along a row. The source position of its pixel
/// `k`, in 1/256 source pixel, is `u[0] + k * (u[1] + k * u[2])` (the same for `v`), computed
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
    pub u: [f32; 3],
    pub v: [f32; 3],
}

/// The position, in 1/256 pixel, of pixel `k` (as `f32`) of a run with coefficients `c`.
#[inline(always)]
pub(crate) fn position(c: &[f32; 3], k: f32) -> i32 {
    (c[0] + k * (c[1] + k * c[2])) as i32
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
            for &tile in &tiles {
                fit_tile(&geometry, tile, (y0, y0 + rows), &mut runs);
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
fn fit_tile(g: &PlaneGeometry, (x0, x1): (u32, u32), (y0, y1): (u32, u32), runs: &mut Vec<Run>) {
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
    fn sample(&self, g: &PlaneGeometry, k: u32) -> Sample {
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
fn fit_line(g: &PlaneGeometry, line: Line, n: u32, runs: &mut Vec<Run>) {
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

/// Fits a quadratic to the source positions of the first `n` pixels of `line` (no seam
/// inside), halving the run until the fit holds.
fn fit_run(g: &PlaneGeometry, line: Line, n: u32, runs: &mut Vec<Run>) {
    let at = |k: u32| -> Sample { line.sample(g, k) };
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

    /// The run's coefficients in 1/256 pixel, the start biased by half of one so that the
    /// kernel's truncation rounds.
    fn coefficients(&self) -> [f32; 3] {
        let one = f64::from(POS_ONE);
        [
            (self.a * one + 0.5) as f32,
            (self.b * one) as f32,
            (self.c * one) as f32,
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
    fn quadratic_fits_three_points() {
        let q = Quadratic::through(2, 4, 1.0, 5.0, 17.0);
        for (x, f) in [(0, 1.0), (2, 5.0), (4, 17.0), (1, 2.0), (3, 10.0)] {
            assert!((q.at(x) - f).abs() < 1e-12);
        }
    }
}
