//! AAC: the AudioSpecificConfig carried by FLV sequence headers (ISO/IEC 14496-3 1.6.2.1),
//! RFC 6381 codec strings, and the 7-byte ADTS header that MPEG-TS needs in front of every raw
//! AAC frame.

use thiserror::Error;

/// Sampling frequencies by `samplingFrequencyIndex` (0..=12); 13 and 14 are reserved and 15
/// means an explicit 24-bit frequency follows.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Length of an ADTS header without CRC.
pub const ADTS_HEADER_LEN: usize = 7;
/// Largest ADTS frame (header included): `aac_frame_length` is 13 bits.
pub const MAX_ADTS_FRAME_LEN: usize = 0x1fff;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AacError {
    #[error(
        "AudioSpecificConfig truncated: {field} needs {needed} more bits at bit {bit}, only {available} bits in total"
    )]
    Truncated {
        field: &'static str,
        bit: usize,
        needed: usize,
        available: usize,
    },
    #[error("AudioSpecificConfig has audio object type 0 (null)")]
    NullObjectType,
    #[error("AudioSpecificConfig uses reserved sampling frequency index {0}")]
    ReservedFrequencyIndex(u8),
    #[error("AudioSpecificConfig has an explicit sampling frequency of 0 Hz")]
    ZeroFrequency,
    #[error("ADTS cannot carry audio object type {0} (only types 1..=4)")]
    AdtsObjectType(u8),
    #[error("ADTS cannot carry an explicit sampling frequency ({0} Hz has no index)")]
    AdtsExplicitFrequency(u32),
    #[error("ADTS cannot carry channel configuration {0} (4 bits max 7)")]
    AdtsChannelConfig(u8),
    #[error("raw AAC frame of {0} bytes is too large for ADTS (max {max})", max = MAX_ADTS_FRAME_LEN - ADTS_HEADER_LEN)]
    AdtsFrameTooLarge(usize),
}

struct Bits<'a> {
    buf: &'a [u8],
    bit: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize, field: &'static str) -> Result<u32, AacError> {
        debug_assert!(n <= 32);
        let available = self.buf.len() * 8;
        if self.bit + n > available {
            return Err(AacError::Truncated {
                field,
                bit: self.bit,
                needed: n,
                available,
            });
        }
        let mut v: u32 = 0;
        for _ in 0..n {
            let byte = self.buf.get(self.bit / 8).copied().unwrap_or(0);
            let b = (byte >> (7 - self.bit % 8)) & 1;
            v = (v << 1) | u32::from(b);
            self.bit += 1;
        }
        Ok(v)
    }

    fn object_type(&mut self) -> Result<u8, AacError> {
        let t = self.read(5, "audioObjectType")? as u8;
        if t == 31 {
            Ok(32 + self.read(6, "audioObjectTypeExt")? as u8)
        } else {
            Ok(t)
        }
    }

    /// Returns (index, frequency in Hz).
    fn frequency(&mut self) -> Result<(u8, u32), AacError> {
        let idx = self.read(4, "samplingFrequencyIndex")? as u8;
        match idx {
            15 => {
                let f = self.read(24, "samplingFrequency")?;
                if f == 0 {
                    return Err(AacError::ZeroFrequency);
                }
                Ok((idx, f))
            }
            13 | 14 => Err(AacError::ReservedFrequencyIndex(idx)),
            i => Ok((i, SAMPLE_RATES.get(usize::from(i)).copied().unwrap_or(0))),
        }
    }
}

/// A parsed AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Signalled audio object type (2 = AAC LC, 5 = SBR/HE-AAC, 29 = PS/HE-AACv2, ...),
    /// escape (31) already resolved to 32 + ext.
    pub object_type: u8,
    /// `samplingFrequencyIndex`; 15 means [`AudioSpecificConfig::sample_rate`] was explicit.
    pub sampling_frequency_index: u8,
    /// Sampling frequency of the core decoder in Hz (what ADTS and timestamps use).
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = defined in a PCE, 1..=7 standard layouts).
    pub channel_config: u8,
    /// For explicitly signalled SBR/PS (object type 5 or 29): the underlying core object type
    /// (normally 2) and the SBR output sampling frequency in Hz.
    pub sbr: Option<(u8, u32)>,
    /// `frameLengthFlag`: frames hold 960 instead of 1024 samples (GA object types only).
    pub short_frames: bool,
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig (the payload of an FLV AAC sequence header).
    pub fn parse(data: &[u8]) -> Result<Self, AacError> {
        let mut r = Bits { buf: data, bit: 0 };
        let object_type = r.object_type()?;
        if object_type == 0 {
            return Err(AacError::NullObjectType);
        }
        let (sampling_frequency_index, sample_rate) = r.frequency()?;
        let channel_config = r.read(4, "channelConfiguration")? as u8;
        let mut core_type = object_type;
        let mut sbr = None;
        if object_type == 5 || object_type == 29 {
            let (_, ext_rate) = r.frequency()?;
            core_type = r.object_type()?;
            sbr = Some((core_type, ext_rate));
        }
        // GASpecificConfig starts with frameLengthFlag for the general-audio object types.
        let short_frames = matches!(core_type, 1..=4 | 6 | 7 | 17 | 19..=23)
            && r.read(1, "frameLengthFlag").unwrap_or(0) == 1;
        Ok(AudioSpecificConfig {
            object_type,
            sampling_frequency_index,
            sample_rate,
            channel_config,
            sbr,
            short_frames,
        })
    }

    /// RFC 6381 codec string: `mp4a.40.<object type>`, e.g. `mp4a.40.2` for AAC LC.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Number of output channels for channel configurations 1..=7 (7 means 7.1 = 8 channels);
    /// `None` for 0 (program config element) and reserved values.
    pub fn channels(&self) -> Option<u8> {
        match self.channel_config {
            1..=6 => Some(self.channel_config),
            7 => Some(8),
            _ => None,
        }
    }

    /// Samples per frame at [`AudioSpecificConfig::sample_rate`] (1024, or 960 with the short
    /// frame flag).
    pub fn samples_per_frame(&self) -> u32 {
        if self.short_frames { 960 } else { 1024 }
    }

    /// Duration of one raw frame in 90 kHz ticks (rounded down; 1920 for 48 kHz).
    pub fn frame_duration_90k(&self) -> u64 {
        if self.sample_rate == 0 {
            return 0;
        }
        u64::from(self.samples_per_frame()) * 90_000 / u64::from(self.sample_rate)
    }

    /// The 7-byte ADTS header (MPEG-4, no CRC, one raw data block) for a raw AAC frame of
    /// `raw_frame_len` bytes.
    ///
    /// For explicitly signalled HE-AAC the header describes the core (AAC LC) stream, which is
    /// how decoders expect implicit SBR in ADTS.
    pub fn adts_header(&self, raw_frame_len: usize) -> Result<[u8; ADTS_HEADER_LEN], AacError> {
        let object_type = self.sbr.map_or(self.object_type, |(core, _)| core);
        if !(1..=4).contains(&object_type) {
            return Err(AacError::AdtsObjectType(object_type));
        }
        if self.sampling_frequency_index >= 13 {
            return Err(AacError::AdtsExplicitFrequency(self.sample_rate));
        }
        if self.channel_config > 7 {
            return Err(AacError::AdtsChannelConfig(self.channel_config));
        }
        let frame_len = raw_frame_len
            .checked_add(ADTS_HEADER_LEN)
            .filter(|&l| l <= MAX_ADTS_FRAME_LEN)
            .ok_or(AacError::AdtsFrameTooLarge(raw_frame_len))?;
        let profile = object_type - 1;
        let sfi = self.sampling_frequency_index;
        let ch = self.channel_config;
        let len = frame_len as u16; // <= 0x1fff, checked above
        Ok([
            0xff,
            0xf1, // sync, MPEG-4, layer 0, protection_absent = 1
            (profile << 6) | (sfi << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 0x07) as u8) << 5) | 0x1f, // buffer fullness 0x7ff (VBR)
            0xfc,                               // rest of fullness, one raw data block
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aac_lc_stereo_48k_from_ffmpeg() {
        // ffmpeg -c:a aac -ac 2 at 48 kHz, FLV sequence header payload.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sampling_frequency_index, 3);
        assert_eq!(asc.sample_rate, 48000);
        assert_eq!(asc.channel_config, 2);
        assert_eq!(asc.channels(), Some(2));
        assert_eq!(asc.sbr, None);
        assert!(!asc.short_frames);
        assert_eq!(asc.codec_string(), "mp4a.40.2");
        assert_eq!(asc.frame_duration_90k(), 1920);
    }

    #[test]
    fn escaped_object_type_and_explicit_frequency() {
        // AOT 31 + ext 10 (= 42, USAC), index 15 + 24-bit 22222 Hz, channel config 1:
        // 11111 001010 1111 000000000101011011001110 0001
        let asc = AudioSpecificConfig::parse(&[0xf9, 0x5e, 0x00, 0xad, 0x9c, 0x20]).unwrap();
        assert_eq!(asc.object_type, 42);
        assert_eq!(asc.sampling_frequency_index, 15);
        assert_eq!(asc.sample_rate, 22222);
        assert_eq!(asc.channel_config, 1);
        assert_eq!(asc.codec_string(), "mp4a.40.42");
        assert_eq!(
            asc.adts_header(10),
            Err(AacError::AdtsObjectType(42)),
            "USAC cannot go into ADTS"
        );
    }

    #[test]
    fn explicit_he_aac_reports_sbr_and_core_type() {
        // AOT 5, 24 kHz (idx 6), stereo, ext idx 3 (48 kHz), core AOT 2:
        // 00101 0110 0010 0011 00010 (pad)
        let asc = AudioSpecificConfig::parse(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(asc.object_type, 5);
        assert_eq!(asc.sample_rate, 24000);
        assert_eq!(asc.sbr, Some((2, 48000)));
        assert_eq!(asc.codec_string(), "mp4a.40.5");
        let h = asc.adts_header(100).unwrap();
        assert_eq!(h[2] >> 6, 1, "ADTS profile is the LC core");
        assert_eq!((h[2] >> 2) & 0x0f, 6, "ADTS carries the core rate index");
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(matches!(
            AudioSpecificConfig::parse(&[]),
            Err(AacError::Truncated {
                field: "audioObjectType",
                ..
            })
        ));
        assert!(matches!(
            AudioSpecificConfig::parse(&[0x12]),
            Err(AacError::Truncated { .. })
        ));
        assert_eq!(
            AudioSpecificConfig::parse(&[0x00, 0x00]),
            Err(AacError::NullObjectType)
        );
        // AOT 2, frequency index 13.
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x80]),
            Err(AacError::ReservedFrequencyIndex(13))
        );
        // AOT 2, explicit frequency 0.
        assert_eq!(
            AudioSpecificConfig::parse(&[0x17, 0x80, 0x00, 0x00, 0x10]),
            Err(AacError::ZeroFrequency)
        );
    }

    #[test]
    fn adts_header_encodes_profile_rate_channels_and_length() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap(); // LC 44.1 kHz stereo
        assert_eq!(asc.sample_rate, 44100);
        let h = asc.adts_header(371).unwrap();
        // ISO/IEC 13818-7 6.2: profile 1, index 4, channels 2, frame length 378, fullness 0x7ff.
        assert_eq!(h, [0xff, 0xf1, 0x50, 0x80, 0x2f, 0x5f, 0xfc]);
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        assert_eq!(len, 378);
        assert_eq!(
            asc.adts_header(MAX_ADTS_FRAME_LEN),
            Err(AacError::AdtsFrameTooLarge(MAX_ADTS_FRAME_LEN))
        );
        assert!(
            asc.adts_header(MAX_ADTS_FRAME_LEN - ADTS_HEADER_LEN)
                .is_ok()
        );
    }

    /// Found by the `aac_config` fuzz target: `raw_frame_len + 7` overflowed.
    #[test]
    fn adts_header_for_absurd_length_is_an_error_not_an_overflow() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            asc.adts_header(usize::MAX),
            Err(AacError::AdtsFrameTooLarge(usize::MAX))
        );
        assert_eq!(
            asc.adts_header(usize::MAX - 6),
            Err(AacError::AdtsFrameTooLarge(usize::MAX - 6))
        );
    }

    #[test]
    fn explicit_frequency_cannot_be_written_as_adts() {
        let asc = AudioSpecificConfig::parse(&[0x17, 0x80, 0x56, 0xce, 0x10]).unwrap();
        assert_eq!(asc.sample_rate, 0xad9c);
        assert_eq!(
            asc.adts_header(1),
            Err(AacError::AdtsExplicitFrequency(0xad9c))
        );
    }
}
