//! The per-frame walk: bilinear interpolation of the source along a plane's map, one band of
//! output rows at a time, tile by tile.
//!
//! Interpolation is separable with 8-bit weights (positions rounded to 1/256 pixel) and the
//! result truncated, as ffmpeg's `interp=linear` truncates its 14-bit sum; its 2x2 window is
//! ffmpeg's: columns `floor(u)` and `floor(u) + 1`, rows `floor(v)` and `floor(v) + 1`.
//!
//! Two implementations give identical bytes: a portable scalar one, and on x86-64 CPUs with
//! AVX2 one that does 8 pixels at a time with gathers ([`avx2`]), about 3 times faster.

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
    match (src, out) {
        (BandSrc::Single(s), BandOut::Single((d, stride))) => {
            #[cfg(target_arch = "x86_64")]
            let wide = simd == Simd::Avx2 && avx2::fits(&s);
            for (i, run) in runs.iter().enumerate() {
                #[cfg(target_arch = "x86_64")]
                if wide && let Some(next) = runs.get(i + PREFETCH_AHEAD) {
                    avx2::prefetch(next, &s, 1);
                }
                let at = (run.y as usize - y0) * stride + run.x as usize;
                let dst = &mut d[at..at + run.len as usize];
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
                let row = run.y as usize - y0;
                let (x, len) = (run.x as usize, run.len as usize);
                let a = &mut du[row * du_stride + x..][..len];
                let b = &mut dv[row * dv_stride + x..][..len];
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
                let at = (run.y as usize - y0) * stride + 2 * run.x as usize;
                let dst = &mut d[at..at + 2 * run.len as usize];
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

/// The AVX2 fast path: 8 output pixels per step.
///
/// The source is read row by row, not pixel by pixel: the 8 windows of a step usually span a
/// few source rows and at most 15 columns (everywhere but near the poles), so for each of
/// those rows one 16-byte load and one byte shuffle (`pshufb`) fetch the two samples every
/// pixel needs from it, and a blend keeps them for the pixels whose window uses that row.
/// Steps whose windows spread wider fall back to gathers (`vpgatherdd`, 4 bytes per window
/// row), which are much slower on the CPUs measured. The interpolation is the scalar one, in
/// 32-bit lanes: the bytes are identical.
///
/// This is the crate's only `unsafe` code, kept because it measured more than twice as fast
/// as the scalar path, which is bound by per-pixel instruction count (see bench/README.md).
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
    use crate::map::{Run, position};

    /// Whether every byte offset into the plane fits the gathers' `i32` offsets.
    pub fn fits(s: &SrcPlane<'_>) -> bool {
        s.data.len() < i32::MAX as usize - 4 * s.stride
    }

    /// Asks for the source lines a run will read (its first and last windows, both rows).
    pub fn prefetch(run: &Run, s: &SrcPlane<'_>, bytes: usize) {
        let last = f32::from(run.len - 1);
        for k in [0.0, last] {
            let (pu, pv) = (position(&run.u, k), position(&run.v, k));
            let at = (pv >> 8).max(0) as usize * s.stride + bytes * (pu >> 8).max(0) as usize;
            for off in [at, at + s.stride] {
                let p = s.data.as_ptr().wrapping_add(off).cast::<i8>();
                // SAFETY: a prefetch is a hint: it never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
            }
        }
    }

    /// The windows of 8 pixels of a run: source column and row of each window's top-left
    /// sample, and the weights. Lanes past `n` repeat lane 0.
    struct Step {
        ui: __m256i,
        vi: __m256i,
        fu: __m256i,
        fv: __m256i,
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(run: &Run, k: f32, n: usize) -> Step {
        let ks = _mm256_add_ps(
            _mm256_set1_ps(k),
            _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0),
        );
        // The operations of map::position, in the same order, lane by lane.
        let pos = |c: &[f32; 3]| {
            let inner = _mm256_add_ps(
                _mm256_set1_ps(c[1]),
                _mm256_mul_ps(ks, _mm256_set1_ps(c[2])),
            );
            let p = _mm256_add_ps(_mm256_set1_ps(c[0]), _mm256_mul_ps(ks, inner));
            _mm256_cvttps_epi32(_mm256_mul_ps(p, _mm256_set1_ps(256.0)))
        };
        let (mut pu, mut pv) = (pos(&run.u), pos(&run.v));
        if n < 8 {
            let live = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let zero = _mm256_setzero_si256();
            pu = _mm256_blendv_epi8(_mm256_permutevar8x32_epi32(pu, zero), pu, live);
            pv = _mm256_blendv_epi8(_mm256_permutevar8x32_epi32(pv, zero), pv, live);
        }
        let mask = _mm256_set1_epi32(0xff);
        Step {
            ui: _mm256_srai_epi32::<8>(pu),
            vi: _mm256_srai_epi32::<8>(pv),
            fu: _mm256_and_si256(pu, mask),
            fv: _mm256_and_si256(pv, mask),
        }
    }

    /// How a step's windows lie in the source when they fit the row-by-row read: the first
    /// column and row, the rows to read, the shuffle that picks each window's two samples out
    /// of a 16-byte load, and each window's row (16-bit lanes).
    struct Shape {
        u0: usize,
        v0: usize,
        rows: usize,
        pick: __m128i,
        vi: __m128i,
    }

    /// Columns a step's windows may span (plus one for the right samples) to be read with one
    /// 16-byte load per row, and rows.
    const MAX_COLUMNS: i32 = 15;
    const MAX_ROWS: i32 = 4;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn shape(st: &Step) -> Option<Shape> {
        // 16-bit copies: low half the columns, high half the rows (all within 0..16384).
        let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(st.ui, st.vi));
        let (u16s, v16s) = (
            _mm256_castsi256_si128(packed),
            _mm256_extracti128_si256::<1>(packed),
        );
        let ones = _mm_set1_epi16(-1);
        let min = |v: __m128i| _mm_extract_epi16::<0>(_mm_minpos_epu16(v));
        let max =
            |v: __m128i| 0xffff - _mm_extract_epi16::<0>(_mm_minpos_epu16(_mm_xor_si128(v, ones)));
        let (umin, umax) = (min(u16s), max(u16s));
        let (vmin, vmax) = (min(v16s), max(v16s));
        if umax - umin > MAX_COLUMNS - 1 || vmax - vmin > MAX_ROWS - 2 {
            return None;
        }
        let rel = _mm_sub_epi16(u16s, _mm_set1_epi16(umin as i16));
        let pick = _mm_or_si128(
            rel,
            _mm_slli_epi16::<8>(_mm_add_epi16(rel, _mm_set1_epi16(1))),
        );
        Some(Shape {
            u0: umin as usize,
            v0: vmin as usize,
            rows: (vmax - vmin + 2) as usize,
            pick,
            vi: v16s,
        })
    }

    /// The 8 windows of a step read row by row, or `None` if a row's 16 bytes would pass the
    /// end of the plane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn by_rows(data: &[u8], stride: usize, sh: &Shape) -> Option<(__m128i, __m128i)> {
        let (mut top, mut bottom) = (_mm_setzero_si128(), _mm_setzero_si128());
        for r in sh.v0..sh.v0 + sh.rows {
            let at = r * stride + sh.u0;
            let bytes = data.get(at..at + 16)?;
            // SAFETY: `bytes` is a 16-byte slice; the load may be unaligned.
            let row = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
            let samples = _mm_shuffle_epi8(row, sh.pick);
            let here = _mm_set1_epi16(r as i16);
            top = _mm_blendv_epi8(top, samples, _mm_cmpeq_epi16(sh.vi, here));
            let above = _mm_set1_epi16(r as i16 - 1);
            bottom = _mm_blendv_epi8(bottom, samples, _mm_cmpeq_epi16(sh.vi, above));
        }
        Some((top, bottom))
    }

    /// The 8 windows of a step read with gathers (4 bytes at each window row), `bytes` per
    /// sample: the two samples of a window are bytes `lo` and `lo + bytes` of each lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn by_gathers(data: &[u8], stride: usize, st: &Step, bytes: i32) -> (__m256i, __m256i) {
        let col = _mm256_mullo_epi32(st.ui, _mm256_set1_epi32(bytes));
        let at = _mm256_add_epi32(
            _mm256_mullo_epi32(st.vi, _mm256_set1_epi32(stride as i32)),
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

    /// Bilinear mix of 8 windows given as 16-bit sample pairs (left, right) per 32-bit lane
    /// for the upper and the lower row: the integers of `super::lerp2`, as bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mix(top: __m256i, bottom: __m256i, fu: __m256i, fv: __m256i) -> [u8; 8] {
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
        let v = _mm256_srli_epi32::<16>(mixed);
        let words = _mm256_packus_epi32(v, v);
        let b = _mm256_packus_epi16(words, words);
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        (_mm256_extract_epi64::<0>(b) as u64).to_le_bytes()
    }

    /// One plane through a step: row by row when the windows allow, else by gathers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sample(data: &[u8], stride: usize, st: &Step, sh: Option<&Shape>) -> [u8; 8] {
        if let Some(sh) = sh
            && let Some((top, bottom)) = by_rows(data, stride, sh)
        {
            return mix(
                _mm256_cvtepu8_epi16(top),
                _mm256_cvtepu8_epi16(bottom),
                st.fu,
                st.fv,
            );
        }
        let (top, bottom) = by_gathers(data, stride, st, 1);
        mix(pairs(top, 0, 1), pairs(bottom, 0, 1), st.fu, st.fv)
    }

    #[target_feature(enable = "avx2")]
    fn single_run_avx2(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        for (c, chunk) in dst.chunks_mut(8).enumerate() {
            let st = step(run, (8 * c) as f32, chunk.len());
            let sh = shape(&st);
            let out = sample(s.data, s.stride, &st, sh.as_ref());
            chunk.copy_from_slice(&out[..chunk.len()]);
        }
    }

    #[target_feature(enable = "avx2")]
    fn pair_run_avx2(run: &Run, su: SrcPlane<'_>, sv: SrcPlane<'_>, du: &mut [u8], dv: &mut [u8]) {
        for (c, (a, b)) in du.chunks_mut(8).zip(dv.chunks_mut(8)).enumerate() {
            let st = step(run, (8 * c) as f32, a.len());
            let sh = shape(&st);
            let out = sample(su.data, su.stride, &st, sh.as_ref());
            a.copy_from_slice(&out[..a.len()]);
            let out = sample(sv.data, sv.stride, &st, sh.as_ref());
            b.copy_from_slice(&out[..b.len()]);
        }
    }

    #[target_feature(enable = "avx2")]
    fn interleaved_run_avx2(run: &Run, s: SrcPlane<'_>, dst: &mut [u8]) {
        for (c, chunk) in dst.chunks_mut(16).enumerate() {
            let st = step(run, (8 * c) as f32, chunk.len() / 2);
            let (top, bottom) = by_gathers(s.data, s.stride, &st, 2);
            let u = mix(pairs(top, 0, 2), pairs(bottom, 0, 2), st.fu, st.fv);
            let v = mix(pairs(top, 1, 2), pairs(bottom, 1, 2), st.fu, st.fv);
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
