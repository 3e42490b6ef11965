//! The per-frame walk: bilinear interpolation of the source along a plane's map, one band of
//! output rows at a time, tile by tile.
//!
//! Interpolation is separable with 8-bit weights (positions rounded to 1/256 pixel) and the
//! result truncated, as ffmpeg's `interp=linear` truncates its 14-bit sum; its 2x2 window is
//! ffmpeg's: columns `floor(u)` and `floor(u) + 1`, rows `floor(v)` and `floor(v) + 1`.
//!
//! Two implementations give identical bytes: a portable scalar one, and on x86-64 CPUs with
//! AVX2 one that does 16 pixels at a time ([`avx2`]), 2.7 to 2.8 times faster (3840x1920
//! source, one thread: c3x2 23 against 63 frames/s, EAC 16 against 43).

use crate::map::{Band, PlaneMap, Run, WEIGHT_BITS, position};

/// A source plane: `width x height` samples (of one byte, or two for NV12's UV).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SrcPlane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

/// An output plane's rows for one band, from the band's first row, and its stride.
pub(crate) type OutRows<'a> = (&'a mut [u8], usize);

/// Where a band's output goes.
pub(crate) enum BandOut<'a> {
    /// One 8-bit plane (luma).
    Single(OutRows<'a>),
    /// Two planes read through the same map (I420's U and V).
    Pair(OutRows<'a>, OutRows<'a>),
    /// One plane of interleaved pairs (NV12's UV).
    Interleaved(OutRows<'a>),
}

/// The source for a band, matching its [`BandOut`].
#[derive(Clone, Copy)]
pub(crate) enum BandSrc<'a> {
    Single(SrcPlane<'a>),
    Pair(SrcPlane<'a>, SrcPlane<'a>),
    Interleaved(SrcPlane<'a>),
}

/// Which implementation runs the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Simd {
    /// The best the CPU has.
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
        Simd::Scalar
    }
}

const ONE: i32 = 1 << WEIGHT_BITS;
const MASK: i32 = ONE - 1;

/// Runs ahead of the current one whose source lines the AVX2 path prefetches: about the
/// next tile's run on the same row (tiles are [`crate::map::BAND_ROWS`] runs tall).
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 32;

/// The part of a band's rows `out` (`stride` apart) that a run covers, `bytes` per pixel.
#[inline(always)]
fn run_out<'a>(
    run: &Run,
    y0: usize,
    out: &'a mut [u8],
    stride: usize,
    bytes: usize,
) -> &'a mut [u8] {
    let at = (run.y as usize - y0) * stride + bytes * run.x as usize;
    &mut out[at..at + bytes * run.len as usize]
}

/// Walks one band: every run of the band, writing `out`.
pub(crate) fn project_band(
    map: &PlaneMap,
    band: &Band,
    src: BandSrc<'_>,
    out: BandOut<'_>,
    simd: Simd,
) {
    let runs = &map.runs[band.start..band.end];
    let y0 = band.y0 as usize;
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    match (src, out) {
        (BandSrc::Single(s), BandOut::Single((d, stride))) => {
            #[cfg(target_arch = "x86_64")]
            let wide = simd == Simd::Avx2 && avx2::fits(&s);
            for (i, run) in runs.iter().enumerate() {
                #[cfg(target_arch = "x86_64")]
                if wide && let Some(next) = runs.get(i + PREFETCH_AHEAD) {
                    avx2::prefetch(next, &s, 1);
                }
                let dst = run_out(run, y0, d, stride, 1);
                if run.flags & Run::CLAMP != 0 {
                    single_run_clamped(run, s, dst);
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                if wide && run.flags & Run::LAST_ROW == 0 {
                    avx2::single_run(run, s, dst);
                    continue;
                }
                single_run(run, s, dst);
            }
        }
        (BandSrc::Pair(su, sv), BandOut::Pair((du, du_stride), (dv, dv_stride))) => {
            #[cfg(target_arch = "x86_64")]
            let wide = simd == Simd::Avx2 && avx2::fits(&su) && avx2::fits(&sv);
            for (i, run) in runs.iter().enumerate() {
                #[cfg(target_arch = "x86_64")]
                if wide && let Some(next) = runs.get(i + PREFETCH_AHEAD) {
                    avx2::prefetch(next, &su, 1);
                    avx2::prefetch(next, &sv, 1);
                }
                let a = run_out(run, y0, du, du_stride, 1);
                let b = run_out(run, y0, dv, dv_stride, 1);
                if run.flags & Run::CLAMP != 0 {
                    single_run_clamped(run, su, a);
                    single_run_clamped(run, sv, b);
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                if wide && run.flags & Run::LAST_ROW == 0 {
                    avx2::pair_run(run, su, sv, a, b);
                    continue;
                }
                single_run(run, su, a);
                single_run(run, sv, b);
            }
        }
        (BandSrc::Interleaved(s), BandOut::Interleaved((d, stride))) => {
            #[cfg(target_arch = "x86_64")]
            let wide = simd == Simd::Avx2 && avx2::fits(&s);
            for (i, run) in runs.iter().enumerate() {
                #[cfg(target_arch = "x86_64")]
                if wide && let Some(next) = runs.get(i + PREFETCH_AHEAD) {
                    avx2::prefetch(next, &s, 2);
                }
                let dst = run_out(run, y0, d, stride, 2);
                if run.flags & Run::CLAMP != 0 {
                    interleaved_run_clamped(run, s, dst);
                    continue;
                }
                // NV12's 4-byte reads (two UV pairs) never pass the end of a row.
                #[cfg(target_arch = "x86_64")]
                if wide {
                    avx2::interleaved_run(run, s, dst);
                    continue;
                }
                interleaved_run(run, s, dst);
            }
        }
        _ => unreachable!("band source and output are built together"),
    }
}

/// Bilinear mix of rows `top` and `bottom` (two columns each), weights in 1/256: exactly
/// `((t0 (256 - fu) + t1 fu) (256 - fv) + (b0 (256 - fu) + b1 fu) fv) >> 16`.
#[inline(always)]
fn lerp2(top: [i32; 2], bottom: [i32; 2], fu: i32, fv: i32) -> u8 {
    let t = (top[0] << WEIGHT_BITS) + (top[1] - top[0]) * fu;
    let b = (bottom[0] << WEIGHT_BITS) + (bottom[1] - bottom[0]) * fu;
    (((t << WEIGHT_BITS) + (b - t) * fv) >> (2 * WEIGHT_BITS)) as u8
}

/// The bilinear sample of the 2x2 window whose top-left byte is at `at`, rows `stride` apart,
/// columns `step` bytes apart.
#[inline(always)]
fn window(data: &[u8], at: usize, stride: usize, step: usize, fu: i32, fv: i32) -> u8 {
    // One slice, so one bounds check: the four indexes below are provably inside it.
    let w = &data[at..at + stride + step + 1];
    lerp2(
        [i32::from(w[0]), i32::from(w[step])],
        [i32::from(w[stride]), i32::from(w[stride + step])],
        fu,
        fv,
    )
}

/// Portable fast path: every window is inside the plane (checked when the map was built).
#[inline(never)]
fn single_run(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
    let mut k = 0.0f32;
    for d in dst.iter_mut() {
        let (pu, pv) = (position(&run.u, k), position(&run.v, k));
        k += 1.0;
        let at = (pv >> WEIGHT_BITS) as usize * s.stride + (pu >> WEIGHT_BITS) as usize;
        *d = window(s.data, at, s.stride, 1, pu & MASK, pv & MASK);
    }
}

#[inline(never)]
fn interleaved_run(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
    let mut k = 0.0f32;
    for d in dst.chunks_exact_mut(2) {
        let (pu, pv) = (position(&run.u, k), position(&run.v, k));
        k += 1.0;
        let at = (pv >> WEIGHT_BITS) as usize * s.stride + 2 * (pu >> WEIGHT_BITS) as usize;
        d[0] = window(s.data, at, s.stride, 2, pu & MASK, pv & MASK);
        d[1] = window(s.data, at + 1, s.stride, 2, pu & MASK, pv & MASK);
    }
}

/// The window's columns and rows, clamped to the plane (ffmpeg's window never leaves the
/// frame with a non-zero weight; this only guards the edge itself and fit overshoot).
#[inline]
fn clamped(pu: i32, pv: i32, s: &SrcPlane<'_>) -> (usize, usize, usize, usize, i32, i32) {
    let (max_u, max_v) = (s.width as i32 - 1, s.height as i32 - 1);
    let (ui, vi) = (pu >> WEIGHT_BITS, pv >> WEIGHT_BITS);
    let (mut fu, mut fv) = (pu & MASK, pv & MASK);
    if ui < 0 {
        fu = 0;
    }
    if vi < 0 {
        fv = 0;
    }
    let u0 = ui.clamp(0, max_u) as usize;
    let u1 = (ui + 1).clamp(0, max_u) as usize;
    let v0 = vi.clamp(0, max_v) as usize;
    let v1 = (vi + 1).clamp(0, max_v) as usize;
    (u0, u1, v0, v1, fu, fv)
}

fn single_run_clamped(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
    for ((pu, pv), d) in run.positions().zip(dst.iter_mut()) {
        let (u0, u1, v0, v1, fu, fv) = clamped(pu, pv, &s);
        let (r0, r1) = (v0 * s.stride, v1 * s.stride);
        let px = |at: usize| i32::from(s.data[at]);
        *d = lerp2(
            [px(r0 + u0), px(r0 + u1)],
            [px(r1 + u0), px(r1 + u1)],
            fu,
            fv,
        );
    }
}

fn interleaved_run_clamped(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
    for ((pu, pv), d) in run.positions().zip(dst.chunks_exact_mut(2)) {
        let (u0, u1, v0, v1, fu, fv) = clamped(pu, pv, &s);
        let (r0, r1) = (v0 * s.stride, v1 * s.stride);
        for (c, out) in d.iter_mut().enumerate() {
            let px = |at: usize| i32::from(s.data[at + c]);
            *out = lerp2(
                [px(r0 + 2 * u0), px(r0 + 2 * u1)],
                [px(r1 + 2 * u0), px(r1 + 2 * u1)],
                fu,
                fv,
            );
        }
    }
}

/// The AVX2 fast path: 16 output pixels per step.
///
/// The source is read row by row, not pixel by pixel: the windows of 8 neighbouring output
/// pixels usually span a few source rows and at most 15 columns (everywhere but near the
/// poles), so for each of those rows a 16-byte load per 8 pixels and one byte shuffle
/// (`pshufb`) fetch the two samples each pixel needs from that row, and a blend keeps them for
/// the pixels whose window uses it. Steps whose windows spread wider fall back to gathers
/// (`vpgatherdd`, 4 bytes per window row), which are much slower on the CPUs measured. The
/// interpolation is the scalar one, in 32-bit lanes: the bytes are identical.
///
/// This is the crate's only `unsafe` code, kept because it measured 2.7 to 2.8 times as fast
/// as the scalar path, which is bound by per-pixel instruction count, not by memory (with the
/// source made to fit in L1 the scalar path gained only 12 %).
/// What makes it sound:
/// - the functions run only after `is_x86_feature_detected!("avx2")` ([`Simd::detect`] is
///   the only place a [`Simd::Avx2`] is made);
/// - 16-byte row loads come from slices taken with bounds checks (`get`);
/// - a gather reads 4 bytes at `data + at` and `data + at + stride`, where `at` is a pixel's
///   window, which the map proved to lie inside the plane (runs with [`Run::CLAMP`] never get
///   here), and the frame's planes were checked to hold `stride * (height - 1) + row bytes`.
///   The 2 bytes past the window stay inside the buffer because the window's column is at
///   most `width - 2` and a row follows, except on the plane's last row, whose runs carry
///   [`Run::LAST_ROW`] and take the scalar path (NV12's reads never pass a row's end);
/// - offsets are `i32`: [`avx2::fits`] sends planes of 2 GiB or more to the scalar path;
/// - lanes past the end of a run take the run's first pixel's window, and only the run's own
///   pixels are stored, through safe slices;
/// - prefetches are hints that never fault.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::SrcPlane;
    use crate::map::Run;

    /// Whether every byte offset into the plane fits the gathers' `i32` offsets.
    pub fn fits(s: &SrcPlane<'_>) -> bool {
        s.data.len() < i32::MAX as usize - 4 * s.stride
    }

    /// Asks for the source lines a run will read (its first and last windows, both rows).
    pub fn prefetch(run: &Run, s: &SrcPlane<'_>, bytes: usize) {
        let [u0, v0, u1, v1] = run.ends.map(usize::from);
        for at in [v0 * s.stride + bytes * u0, v1 * s.stride + bytes * u1] {
            for off in [at, at + s.stride] {
                let p = s.data.as_ptr().wrapping_add(off).cast::<i8>();
                // SAFETY: a prefetch is a hint: it never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
            }
        }
    }

    /// The windows of 16 pixels of a run, as two halves of 8: source column and row of each
    /// window's top-left sample (32-bit lanes, and all 16 as 16-bit lanes), and the weights.
    /// Lanes past the run's end repeat its first pixel.
    struct Step {
        ui: [__m256i; 2],
        vi: [__m256i; 2],
        fu: [__m256i; 2],
        fv: [__m256i; 2],
        u16s: __m256i,
        v16s: __m256i,
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(run: &Run, k: f32, n: usize) -> Step {
        let lanes = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        // The operations of map::position, in the same order, lane by lane.
        let pos = |c: &[f32; 4], ks: __m256| {
            let mul_add =
                |x: __m256, c: f32| _mm256_add_ps(_mm256_set1_ps(c), _mm256_mul_ps(ks, x));
            let p = mul_add(mul_add(_mm256_set1_ps(c[3]), c[2]), c[1]);
            _mm256_cvttps_epi32(mul_add(p, c[0]))
        };
        let mut pu = [_mm256_setzero_si256(); 2];
        let mut pv = [_mm256_setzero_si256(); 2];
        for h in 0..2 {
            let ks = _mm256_add_ps(_mm256_set1_ps(k + (8 * h) as f32), lanes);
            pu[h] = pos(&run.u, ks);
            pv[h] = pos(&run.v, ks);
        }
        if n < 16 {
            let zero = _mm256_setzero_si256();
            let (u0, v0) = (
                _mm256_permutevar8x32_epi32(pu[0], zero),
                _mm256_permutevar8x32_epi32(pv[0], zero),
            );
            for h in 0..2 {
                let first = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let index = _mm256_add_epi32(first, _mm256_set1_epi32(8 * h as i32));
                let live = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), index);
                pu[h] = _mm256_blendv_epi8(u0, pu[h], live);
                pv[h] = _mm256_blendv_epi8(v0, pv[h], live);
            }
        }
        let mask = _mm256_set1_epi32(0xff);
        let ui = pu.map(|p| _mm256_srai_epi32::<8>(p));
        let vi = pv.map(|p| _mm256_srai_epi32::<8>(p));
        // 16-bit copies in pixel order (columns and rows are within 0..16384).
        let narrow = |a: [__m256i; 2]| {
            _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a[0], a[1]))
        };
        Step {
            u16s: narrow(ui),
            v16s: narrow(vi),
            ui,
            vi,
            fu: pu.map(|p| _mm256_and_si256(p, mask)),
            fv: pv.map(|p| _mm256_and_si256(p, mask)),
        }
    }

    /// How a step's windows lie in the source when they fit the row-by-row read: each half's
    /// first column, the first row and the number of rows, and the shuffle that picks each
    /// window's two samples out of its half's 16-byte load.
    struct Shape {
        u0: [usize; 2],
        v0: usize,
        rows: usize,
        pick: __m256i,
    }

    /// Columns the 8 windows of a half may span (plus one for the right samples) to be read
    /// with one 16-byte load per row, and rows a step may span.
    const MAX_COLUMNS: i32 = 15;
    const MAX_ROWS: i32 = 8;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn shape(st: &Step) -> Option<Shape> {
        let ones = _mm_set1_epi16(-1);
        let min = |v: __m128i| _mm_extract_epi16::<0>(_mm_minpos_epu16(v));
        let max = |v: __m128i| 0xffff - min(_mm_xor_si128(v, ones));
        let halves = |v: __m256i| (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let (ul, uh) = halves(st.u16s);
        let (vl, vh) = halves(st.v16s);
        let (ul_min, uh_min) = (min(ul), min(uh));
        let vmin = min(_mm_min_epu16(vl, vh));
        let vmax = max(_mm_max_epu16(vl, vh));
        if max(ul) - ul_min > MAX_COLUMNS - 1
            || max(uh) - uh_min > MAX_COLUMNS - 1
            || vmax - vmin > MAX_ROWS - 2
        {
            return None;
        }
        let base = _mm256_setr_m128i(_mm_set1_epi16(ul_min as i16), _mm_set1_epi16(uh_min as i16));
        let rel = _mm256_sub_epi16(st.u16s, base);
        let pick = _mm256_or_si256(
            rel,
            _mm256_slli_epi16::<8>(_mm256_add_epi16(rel, _mm256_set1_epi16(1))),
        );
        Some(Shape {
            u0: [ul_min as usize, uh_min as usize],
            v0: vmin as usize,
            rows: (vmax - vmin + 2) as usize,
            pick,
        })
    }

    /// The 16 windows of a step read row by row: the (left, right) samples of each window's
    /// upper and lower row, as byte pairs. `None` if a 16-byte load would pass the plane's end.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn by_rows(data: &[u8], stride: usize, st: &Step, sh: &Shape) -> Option<(__m256i, __m256i)> {
        // Everything the step reads, bounds-checked once: its rows, from the first column a
        // half starts at to 16 bytes past the last.
        let (lo, hi) = (sh.u0[0], sh.u0[1]);
        let start = sh.v0 * stride;
        let block = data.get(start..start + (sh.rows - 1) * stride + lo.max(hi) + 16)?;
        let (mut top, mut bottom) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut above = _mm256_setzero_si256();
        let mut row = _mm256_set1_epi16(sh.v0 as i16);
        for k in 0..sh.rows {
            let at = k * stride;
            // SAFETY: `at + lo + 16` and `at + hi + 16` are at most `block.len()` (k < rows);
            // the loads may be unaligned.
            let bytes = unsafe {
                let p = block.as_ptr();
                _mm256_loadu2_m128i(p.add(at + hi).cast(), p.add(at + lo).cast())
            };
            let samples = _mm256_shuffle_epi8(bytes, sh.pick);
            let here = _mm256_cmpeq_epi16(st.v16s, row);
            top = _mm256_blendv_epi8(top, samples, here);
            // Windows whose upper row is the previous one take this one as their lower row.
            bottom = _mm256_blendv_epi8(bottom, samples, above);
            above = here;
            row = _mm256_add_epi16(row, _mm256_set1_epi16(1));
        }
        Some((top, bottom))
    }

    /// Half `h` of a step read with gathers (4 bytes at each window row, samples `bytes`
    /// wide): the upper and lower rows' 4 bytes per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn by_gathers(
        data: &[u8],
        stride: usize,
        st: &Step,
        h: usize,
        bytes: i32,
    ) -> (__m256i, __m256i) {
        let col = _mm256_mullo_epi32(st.ui[h], _mm256_set1_epi32(bytes));
        let at = _mm256_add_epi32(
            _mm256_mullo_epi32(st.vi[h], _mm256_set1_epi32(stride as i32)),
            col,
        );
        let below = _mm256_add_epi32(at, _mm256_set1_epi32(stride as i32));
        let base = data.as_ptr().cast::<i32>();
        // SAFETY: see the module's docs: every offset plus 3 is inside `data`.
        unsafe {
            (
                _mm256_i32gather_epi32::<1>(base, at),
                _mm256_i32gather_epi32::<1>(base, below),
            )
        }
    }

    /// Samples `lo` and `lo + gap` (bytes) of each 32-bit lane of a gather, as the 16-bit
    /// pairs the weights multiply.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pairs(v: __m256i, lo: i32, gap: i32) -> __m256i {
        let byte = |at: i32| {
            _mm256_and_si256(
                _mm256_srlv_epi32(v, _mm256_set1_epi32(8 * at)),
                _mm256_set1_epi32(0xff),
            )
        };
        _mm256_or_si256(byte(lo), _mm256_slli_epi32::<16>(byte(lo + gap)))
    }

    /// Bilinear mix of 8 windows given as 16-bit (left, right) sample pairs per 32-bit lane,
    /// for the upper and the lower row: the integers of `super::lerp2`, in 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mix(top: __m256i, bottom: __m256i, fu: __m256i, fv: __m256i) -> __m256i {
        let w = _mm256_or_si256(
            _mm256_sub_epi32(_mm256_set1_epi32(256), fu),
            _mm256_slli_epi32::<16>(fu),
        );
        let t = _mm256_madd_epi16(top, w);
        let b = _mm256_madd_epi16(bottom, w);
        let mixed = _mm256_add_epi32(
            _mm256_slli_epi32::<8>(t),
            _mm256_mullo_epi32(_mm256_sub_epi32(b, t), fv),
        );
        _mm256_srli_epi32::<16>(mixed)
    }

    /// Two halves of 8 results (each 0..=255) as 16 bytes in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bytes16(lo: __m256i, hi: __m256i) -> __m128i {
        let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi));
        let b = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(words, words));
        _mm256_castsi256_si128(b)
    }

    /// One plane through a step: row by row when the windows allow, else by gathers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sample(data: &[u8], stride: usize, st: &Step, sh: Option<&Shape>) -> __m128i {
        if let Some(sh) = sh
            && let Some((top, bottom)) = by_rows(data, stride, st, sh)
        {
            let half = |v: __m256i, h: usize| {
                _mm256_cvtepu8_epi16(if h == 0 {
                    _mm256_castsi256_si128(v)
                } else {
                    _mm256_extracti128_si256::<1>(v)
                })
            };
            let lo = mix(half(top, 0), half(bottom, 0), st.fu[0], st.fv[0]);
            let hi = mix(half(top, 1), half(bottom, 1), st.fu[1], st.fv[1]);
            return bytes16(lo, hi);
        }
        let mut out = [_mm256_setzero_si256(); 2];
        for (h, o) in out.iter_mut().enumerate() {
            let (top, bottom) = by_gathers(data, stride, st, h, 1);
            *o = mix(pairs(top, 0, 1), pairs(bottom, 0, 1), st.fu[h], st.fv[h]);
        }
        bytes16(out[0], out[1])
    }

    /// Stores a step's bytes: a whole 16 with one store, a run's last few through a copy.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn put(dst: &mut [u8], bytes: __m128i) {
        match <&mut [u8; 16]>::try_from(&mut *dst) {
            // SAFETY: `whole` is 16 writable bytes; the store may be unaligned.
            Ok(whole) => unsafe { _mm_storeu_si128(whole.as_mut_ptr().cast(), bytes) },
            Err(_) => {
                let n = dst.len();
                dst.copy_from_slice(&to_array(bytes)[..n]);
            }
        }
    }

    /// The 16 bytes of a vector, in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_array(v: __m128i) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(_mm_extract_epi64::<0>(v) as u64).to_le_bytes());
        out[8..].copy_from_slice(&(_mm_extract_epi64::<1>(v) as u64).to_le_bytes());
        out
    }

    #[target_feature(enable = "avx2")]
    fn single_run_avx2(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        for (c, chunk) in dst.chunks_mut(16).enumerate() {
            let st = step(run, (16 * c) as f32, chunk.len());
            let sh = shape(&st);
            put(chunk, sample(s.data, s.stride, &st, sh.as_ref()));
        }
    }

    #[target_feature(enable = "avx2")]
    fn pair_run_avx2(run: &Run, su: SrcPlane<'_>, sv: SrcPlane<'_>, du: &mut [u8], dv: &mut [u8]) {
        for (c, (a, b)) in du.chunks_mut(16).zip(dv.chunks_mut(16)).enumerate() {
            let st = step(run, (16 * c) as f32, a.len());
            let sh = shape(&st);
            put(a, sample(su.data, su.stride, &st, sh.as_ref()));
            put(b, sample(sv.data, sv.stride, &st, sh.as_ref()));
        }
    }

    #[target_feature(enable = "avx2")]
    fn interleaved_run_avx2(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        for (c, chunk) in dst.chunks_mut(32).enumerate() {
            let st = step(run, (16 * c) as f32, chunk.len() / 2);
            let mut u = [_mm256_setzero_si256(); 2];
            let mut v = [_mm256_setzero_si256(); 2];
            for h in 0..2 {
                let (top, bottom) = by_gathers(s.data, s.stride, &st, h, 2);
                u[h] = mix(pairs(top, 0, 2), pairs(bottom, 0, 2), st.fu[h], st.fv[h]);
                v[h] = mix(pairs(top, 1, 2), pairs(bottom, 1, 2), st.fu[h], st.fv[h]);
            }
            let (u, v) = (to_array(bytes16(u[0], u[1])), to_array(bytes16(v[0], v[1])));
            for ((pair, x), y) in chunk.chunks_exact_mut(2).zip(u).zip(v) {
                pair[0] = x;
                pair[1] = y;
            }
        }
    }

    /// AVX2 path of `super::single_run`. The caller checked [`fits`] and the run's flags.
    pub fn single_run(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        // SAFETY: AVX2 is present (Simd::Avx2 exists only after detection).
        unsafe { single_run_avx2(run, s, dst) }
    }

    /// AVX2 path of I420 chroma: U and V through the same windows.
    pub fn pair_run(run: &Run, su: SrcPlane<'_>, sv: SrcPlane<'_>, du: &mut [u8], dv: &mut [u8]) {
        // SAFETY: as single_run.
        unsafe { pair_run_avx2(run, su, sv, du, dv) }
    }

    /// AVX2 path of NV12 chroma (gathers: a UV row segment is twice as wide).
    pub fn interleaved_run(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        // SAFETY: as single_run.
        unsafe { interleaved_run_avx2(run, s, dst) }
    }
}
