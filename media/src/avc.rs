//! H.264/AVC: the AVCDecoderConfigurationRecord carried by FLV sequence headers, facts from the
//! SPS (size, profile, level, frame rate), RFC 6381 codec strings, and conversion of
//! length-prefixed (AVCC) access units to Annex B for MPEG-TS.
//!
//! Every function here accepts arbitrary bytes without panicking.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::BitReader;
use thiserror::Error;

/// NAL unit types this module cares about (ITU-T H.264 Table 7-1).
pub mod nal_type {
    pub const NON_IDR_SLICE: u8 = 1;
    pub const IDR_SLICE: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
}

/// Annex B start code used for every NAL unit written by this module.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Access unit delimiter NAL (type 9, primary_pic_type 7 = "any slice type"), with start code.
pub const AUD_NAL: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AvcError {
    #[error(
        "AVC decoder configuration record truncated at byte {offset}: {what} needs {needed} bytes, {available} left"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("AVC decoder configuration record has version {0}, expected 1")]
    BadVersion(u8),
    #[error("AVC decoder configuration record carries no SPS")]
    NoSps,
    #[error("NAL length size {0} is invalid (must be 1, 2 or 4 bytes)")]
    BadNalLengthSize(u8),
    #[error(
        "NAL unit at byte {offset} declares {declared} bytes but only {remaining} remain in the \
         {total}-byte access unit"
    )]
    NalOverrun {
        offset: usize,
        declared: usize,
        remaining: usize,
        total: usize,
    },
    #[error("NAL length prefix at byte {offset} is truncated ({remaining} of {size} bytes)")]
    TruncatedLength {
        offset: usize,
        remaining: usize,
        size: usize,
    },
    #[error("SPS is not a sequence parameter set NAL (header byte {0:#04x})")]
    NotSps(u8),
    #[error("SPS could not be parsed: {0}")]
    BadSps(String),
}

/// A parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile_idc: u8,
    /// The `profile_compatibility` byte, i.e. the SPS constraint_set flags.
    pub profile_compatibility: u8,
    pub level_idc: u8,
    /// Size in bytes of the NAL length prefixes in coded frames: 1, 2 or 4.
    pub nal_length_size: u8,
    /// SPS NAL units (with NAL header byte, without start code or length). Never empty.
    pub sps: Vec<Bytes>,
    /// PPS NAL units (with NAL header byte, without start code or length).
    pub pps: Vec<Bytes>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AvcError> {
        let available = self.buf.len().saturating_sub(self.pos);
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(AvcError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                available,
            })?;
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AvcError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AvcError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (the payload of an FLV AVC sequence header).
    ///
    /// The optional High-profile trailer (chroma format, bit depths, SPS extensions) is ignored.
    pub fn parse(record: &[u8]) -> Result<Self, AvcError> {
        let mut c = Cursor {
            buf: record,
            pos: 0,
        };
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(AvcError::BadVersion(version));
        }
        let profile_idc = c.u8("AVCProfileIndication")?;
        let profile_compatibility = c.u8("profile_compatibility")?;
        let level_idc = c.u8("AVCLevelIndication")?;
        let nal_length_size = (c.u8("lengthSizeMinusOne")? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(AvcError::BadNalLengthSize(nal_length_size));
        }
        let num_sps = c.u8("numOfSequenceParameterSets")? & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(num_sps));
        for _ in 0..num_sps {
            let len = c.u16("sequenceParameterSetLength")?;
            sps.push(Bytes::copy_from_slice(
                c.take(usize::from(len), "sequenceParameterSetNALUnit")?,
            ));
        }
        let num_pps = c.u8("numOfPictureParameterSets")?;
        let mut pps = Vec::with_capacity(usize::from(num_pps));
        for _ in 0..num_pps {
            let len = c.u16("pictureParameterSetLength")?;
            pps.push(Bytes::copy_from_slice(
                c.take(usize::from(len), "pictureParameterSetNALUnit")?,
            ));
        }
        // Empty parameter sets are useless and would only produce empty NAL units later.
        sps.retain(|s| !s.is_empty());
        pps.retain(|p| !p.is_empty());
        if sps.is_empty() {
            return Err(AvcError::NoSps);
        }
        Ok(AvcConfig {
            profile_idc,
            profile_compatibility,
            level_idc,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// RFC 6381 codec string from the record's profile/compatibility/level, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        codec_string(self.profile_idc, self.profile_compatibility, self.level_idc)
    }

    /// Facts from the first SPS.
    pub fn sps_info(&self) -> Result<SpsInfo, AvcError> {
        // `parse` guarantees at least one SPS; stay total anyway.
        let first = self.sps.first().ok_or(AvcError::NoSps)?;
        SpsInfo::parse(first)
    }
}

/// RFC 6381 `avc1.PPCCLL` codec string (profile, constraint flags, level as two hex digits).
pub fn codec_string(profile_idc: u8, constraint_flags: u8, level_idc: u8) -> String {
    format!("avc1.{profile_idc:02x}{constraint_flags:02x}{level_idc:02x}")
}

/// Facts read from a sequence parameter set.
#[derive(Debug, Clone, PartialEq)]
pub struct SpsInfo {
    /// Displayed width in pixels, after frame cropping.
    pub width: u32,
    /// Displayed height in pixels, after frame cropping (frames, not fields).
    pub height: u32,
    pub profile_idc: u8,
    /// The constraint_set flags byte (same as the record's profile_compatibility).
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Frames per second from VUI timing info (time_scale / (2 * num_units_in_tick)), when
    /// present and sane.
    pub frame_rate: Option<f64>,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (NAL header byte included, emulation prevention bytes allowed).
    pub fn parse(sps_nal: &[u8]) -> Result<Self, AvcError> {
        let (&header, rest) = sps_nal.split_first().ok_or(AvcError::Truncated {
            what: "SPS NAL header",
            offset: 0,
            needed: 1,
            available: 0,
        })?;
        if header & 0x1f != nal_type::SPS {
            return Err(AvcError::NotSps(header));
        }
        let rbsp = remove_emulation_prevention(rest);
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| AvcError::BadSps(format!("{e:?}")))?;
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| AvcError::BadSps(format!("{e:?}")))?;
        let frame_rate = sps
            .vui_parameters
            .as_ref()
            .and_then(|v| v.timing_info.as_ref())
            .and_then(|t| {
                if t.num_units_in_tick == 0 || t.time_scale == 0 {
                    return None;
                }
                let fps = f64::from(t.time_scale) / (2.0 * f64::from(t.num_units_in_tick));
                (fps.is_finite() && fps <= 1000.0).then_some(fps)
            });
        Ok(SpsInfo {
            width,
            height,
            profile_idc: sps.profile_idc.into(),
            constraint_flags: sps.constraint_flags.into(),
            level_idc: sps.level_idc,
            frame_rate,
        })
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        codec_string(self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// Strips emulation prevention bytes (`00 00 03` -> `00 00`) to recover the RBSP.
pub fn remove_emulation_prevention(nal_payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal_payload.len());
    let mut zeros = 0usize;
    for &b in nal_payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Iterator over the NAL units of a length-prefixed (AVCC) access unit. Yields an error (and
/// then stops) when a length prefix is truncated or overruns the buffer.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    buf: &'a [u8],
    pos: usize,
    size: usize,
    failed: bool,
}

/// Splits an AVCC payload into NAL units. `nal_length_size` must be 1, 2 or 4; other values
/// yield a single [`AvcError::BadNalLengthSize`].
pub fn nal_units(payload: &[u8], nal_length_size: u8) -> NalUnits<'_> {
    NalUnits {
        buf: payload,
        pos: 0,
        size: usize::from(nal_length_size),
        failed: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], AvcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        if !matches!(self.size, 1 | 2 | 4) {
            self.failed = true;
            return Some(Err(AvcError::BadNalLengthSize(self.size as u8)));
        }
        let offset = self.pos;
        let remaining = self.buf.len() - offset;
        let Some(prefix) = self.buf.get(offset..offset + self.size) else {
            self.failed = true;
            return Some(Err(AvcError::TruncatedLength {
                offset,
                remaining,
                size: self.size,
            }));
        };
        let declared = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let start = offset + self.size;
        let Some(nal) = start
            .checked_add(declared)
            .and_then(|end| self.buf.get(start..end))
        else {
            self.failed = true;
            return Some(Err(AvcError::NalOverrun {
                offset,
                declared,
                remaining: self.buf.len() - start,
                total: self.buf.len(),
            }));
        };
        self.pos = start + declared;
        Some(Ok(nal))
    }
}

/// What [`avcc_to_annexb`] found in an access unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessUnitInfo {
    /// The access unit contains an IDR slice (NAL type 5).
    pub has_idr: bool,
    /// Number of NAL units written (including inserted AUD/SPS/PPS).
    pub nal_count: usize,
    /// The access unit contains at least one coded slice (NAL types 1..=5).
    pub has_slice: bool,
}

/// Appends `payload` (length-prefixed NAL units, one access unit) to `out` as Annex B.
///
/// * An AUD is written first unless the access unit already starts with one.
/// * Before an IDR access unit (`keyframe`, or any NAL of type 5), the SPS and PPS from
///   `params` are inserted after the AUD when the access unit carries no SPS of its own, so
///   every segment starting there is decodable.
/// * Empty NAL units are dropped.
///
/// On error (`nal_length_size` invalid, truncated prefix, length overrun) `out` is left exactly
/// as it was.
pub fn avcc_to_annexb(
    payload: &[u8],
    nal_length_size: u8,
    out: &mut Vec<u8>,
    params: Option<&AvcConfig>,
    keyframe: bool,
) -> Result<AccessUnitInfo, AvcError> {
    // First pass: validate and learn what is in-band, so nothing is written on error.
    let mut has_idr = false;
    let mut has_sps = false;
    let mut has_slice = false;
    let mut starts_with_aud = false;
    for (i, nal) in nal_units(payload, nal_length_size).enumerate() {
        let nal = nal?;
        let Some(&h) = nal.first() else { continue };
        let t = h & 0x1f;
        if i == 0 && t == nal_type::AUD {
            starts_with_aud = true;
        }
        has_idr |= t == nal_type::IDR_SLICE;
        has_sps |= t == nal_type::SPS;
        has_slice |= (nal_type::NON_IDR_SLICE..=nal_type::IDR_SLICE).contains(&t);
    }

    let mut info = AccessUnitInfo {
        has_idr,
        nal_count: 0,
        has_slice,
    };
    out.reserve(payload.len() + 64);
    let mut nals = nal_units(payload, nal_length_size).flatten();
    if starts_with_aud {
        if let Some(aud) = nals.next() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(aud);
        }
    } else {
        out.extend_from_slice(&AUD_NAL);
    }
    info.nal_count += 1;
    if (keyframe || has_idr)
        && !has_sps
        && let Some(cfg) = params
    {
        for ps in cfg.sps.iter().chain(cfg.pps.iter()) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(ps);
            info.nal_count += 1;
        }
    }
    for nal in nals {
        let Some(&h) = nal.first() else { continue };
        // A second AUD inside the access unit would split it in two for the decoder.
        if h & 0x1f == nal_type::AUD {
            continue;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
        info.nal_count += 1;
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// AVCDecoderConfigurationRecord from `ffmpeg -f lavfi -i testsrc=size=1280x720:rate=30
    /// -c:v libx264 -pix_fmt yuv420p -f flv`: High profile, level 3.1, 30 fps.
    pub(crate) const HIGH_720P30_AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];

    /// Same encoder, 1920x1080 Main profile level 4.0 at 25 fps: coded as 1088 lines and cropped.
    const MAIN_1080P25_AVCC: &[u8] = &[
        0x01, 0x4d, 0x40, 0x28, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x4d, 0x40, 0x28, 0xec, 0xa0, 0x3c,
        0x01, 0x13, 0xf2, 0xe0, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x64,
        0x1e, 0x30, 0x63, 0x2c, 0x01, 0x00, 0x05, 0x68, 0xeb, 0xe3, 0xcb, 0x20,
    ];

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn parses_real_x264_record() {
        let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
        assert_eq!(cfg.profile_idc, 0x64);
        assert_eq!(cfg.profile_compatibility, 0);
        assert_eq!(cfg.level_idc, 0x1f);
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.sps[0].len(), 0x1a);
        assert_eq!(cfg.pps.len(), 1);
        assert_eq!(&cfg.pps[0][..], &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]);
        assert_eq!(cfg.codec_string(), "avc1.64001f");
    }

    #[test]
    fn sps_gives_size_profile_level_and_frame_rate() {
        let info = AvcConfig::parse(HIGH_720P30_AVCC)
            .unwrap()
            .sps_info()
            .unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!(info.profile_idc, 100);
        assert_eq!(info.constraint_flags, 0);
        assert_eq!(info.level_idc, 31);
        assert_eq!(info.frame_rate, Some(30.0));
        assert_eq!(info.codec_string(), "avc1.64001f");
    }

    #[test]
    fn sps_cropping_is_applied() {
        let cfg = AvcConfig::parse(MAIN_1080P25_AVCC).unwrap();
        let info = cfg.sps_info().unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.frame_rate, Some(25.0));
        assert_eq!(info.codec_string(), "avc1.4d4028");
        assert_eq!(cfg.codec_string(), "avc1.4d4028");
    }

    #[test]
    fn every_truncation_of_the_record_is_a_clean_error() {
        // The trailing High-profile extension (last 4 bytes) is optional; all cuts before it
        // must fail.
        let needed = HIGH_720P30_AVCC.len() - 4;
        for cut in 0..needed {
            let err = AvcConfig::parse(&HIGH_720P30_AVCC[..cut]).unwrap_err();
            assert!(
                matches!(err, AvcError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
        assert!(AvcConfig::parse(&HIGH_720P30_AVCC[..needed]).is_ok());
    }

    #[test]
    fn bad_records_are_rejected() {
        let mut v = HIGH_720P30_AVCC.to_vec();
        v[0] = 0;
        assert_eq!(AvcConfig::parse(&v), Err(AvcError::BadVersion(0)));
        let mut v = HIGH_720P30_AVCC.to_vec();
        v[4] = 0xfe; // lengthSizeMinusOne = 2
        assert_eq!(AvcConfig::parse(&v), Err(AvcError::BadNalLengthSize(3)));
        assert_eq!(
            AvcConfig::parse(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            Err(AvcError::NoSps)
        );
    }

    #[test]
    fn garbage_sps_is_an_error_not_a_panic() {
        assert!(matches!(SpsInfo::parse(&[0x67]), Err(AvcError::BadSps(_))));
        assert_eq!(SpsInfo::parse(&[0x68, 1]), Err(AvcError::NotSps(0x68)));
        assert!(SpsInfo::parse(&[]).is_err());
        assert!(SpsInfo::parse(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            [0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(remove_emulation_prevention(&[0, 3, 0]), [0, 3, 0]);
    }

    #[test]
    fn idr_without_inband_parameters_gets_aud_sps_pps() {
        let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
        let idr = [0x65, 0x88, 0x84];
        let mut out = Vec::new();
        let info = avcc_to_annexb(&avcc(&[&idr]), 4, &mut out, Some(&cfg), true).unwrap();
        let mut expected = AUD_NAL.to_vec();
        expected.extend_from_slice(&START_CODE);
        expected.extend_from_slice(&cfg.sps[0]);
        expected.extend_from_slice(&START_CODE);
        expected.extend_from_slice(&cfg.pps[0]);
        expected.extend_from_slice(&START_CODE);
        expected.extend_from_slice(&idr);
        assert_eq!(out, expected);
        assert!(info.has_idr && info.has_slice);
        assert_eq!(info.nal_count, 4);
    }

    #[test]
    fn inband_parameters_and_aud_are_not_duplicated() {
        let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
        let nals: [&[u8]; 4] = [&[0x09, 0x10], &cfg.sps[0], &cfg.pps[0], &[0x65, 1]];
        let mut out = vec![0xee]; // existing content is kept
        avcc_to_annexb(&avcc(&nals), 4, &mut out, Some(&cfg), true).unwrap();
        let mut expected = vec![0xee];
        for n in nals {
            expected.extend_from_slice(&START_CODE);
            expected.extend_from_slice(n);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn inter_frame_gets_only_an_aud() {
        let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
        let mut out = Vec::new();
        let p = avcc(&[&[0x41, 0x9a], &[]]);
        let info = avcc_to_annexb(&p, 4, &mut out, Some(&cfg), false).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 0x9a]);
        assert!(!info.has_idr);
    }

    #[test]
    fn two_byte_length_prefixes_work() {
        let mut out = Vec::new();
        avcc_to_annexb(&[0, 2, 0x41, 7, 0, 1, 0x06], 2, &mut out, None, false).unwrap();
        assert_eq!(
            out,
            [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 7, 0, 0, 0, 1, 0x06]
        );
    }

    #[test]
    fn length_overruns_are_errors_and_leave_output_untouched() {
        let mut out = vec![1, 2, 3];
        let err = avcc_to_annexb(&[0, 0, 0, 9, 0x65, 1], 4, &mut out, None, true).unwrap_err();
        assert_eq!(
            err,
            AvcError::NalOverrun {
                offset: 0,
                declared: 9,
                remaining: 2,
                total: 6
            }
        );
        assert_eq!(out, [1, 2, 3]);
        let err = avcc_to_annexb(&[0, 0, 0, 1, 0x41, 0, 0], 4, &mut out, None, false).unwrap_err();
        assert!(matches!(err, AvcError::TruncatedLength { offset: 5, .. }));
        assert_eq!(
            avcc_to_annexb(&[1], 3, &mut out, None, false),
            Err(AvcError::BadNalLengthSize(3))
        );
        assert_eq!(
            avcc_to_annexb(&[0, 0, 0, 0xff], 0, &mut out, None, false),
            Err(AvcError::BadNalLengthSize(0))
        );
        // A huge declared length must not overflow.
        let err = avcc_to_annexb(&[0xff; 8], 4, &mut out, None, false).unwrap_err();
        assert!(matches!(err, AvcError::NalOverrun { .. }));
        assert_eq!(out, [1, 2, 3]);
    }
}
