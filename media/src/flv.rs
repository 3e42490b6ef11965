//! FLV: parsing of audio/video tag bodies (as carried by RTMP messages), encoding of FLV files
//! (header, tags, an `onMetaData` script tag whose `duration`/`filesize` can be patched in
//! place), and reading of FLV files with a clean stop at a truncated tail.
//!
//! Units: every FLV timestamp is in milliseconds; composition time offsets are signed
//! milliseconds. Nothing here allocates per tag on the parse path: tag bodies borrow the input.

use thiserror::Error;

/// Length of the FLV file header (`FLV`, version, flags, data offset).
pub const FILE_HEADER_LEN: usize = 9;
/// Length of an FLV tag header (type, DataSize, timestamp, extended timestamp, stream id).
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the PreviousTagSize field that follows the file header and every tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Largest tag body an FLV tag can describe (DataSize is 24 bits).
pub const MAX_TAG_BODY_LEN: usize = 0x00ff_ffff;

/// Everything that can be wrong with FLV bytes. Offsets are byte offsets into the buffer that
/// was handed to the failing function.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    #[error("{what} is truncated: needs {needed} bytes, only {available} present")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("not an FLV file: signature is {found:02x?}, expected \"FLV\"")]
    BadSignature { found: [u8; 3] },
    #[error("unsupported FLV version {0} (only version 1 exists)")]
    UnsupportedVersion(u8),
    #[error("FLV header declares a data offset of {0} bytes, below the 9-byte minimum")]
    BadDataOffset(u32),
    #[error("tag at offset {offset}: unknown tag type byte 0x{tag_type:02x} (expected 8, 9 or 18)")]
    UnknownTagType { offset: usize, tag_type: u8 },
    #[error("tag at offset {offset}: stream id is {stream_id}, FLV requires 0")]
    NonZeroStreamId { offset: usize, stream_id: u32 },
    #[error(
        "tag at offset {offset}: DataSize {data_size} is inconsistent with the PreviousTagSize \
         {found} that follows it (expected {expected}); the file is corrupt from this tag on"
    )]
    PreviousTagSizeMismatch {
        offset: usize,
        data_size: usize,
        found: u32,
        expected: u32,
    },
    #[error("tag body of {len} bytes exceeds the FLV limit of {MAX_TAG_BODY_LEN} bytes")]
    TagTooLarge { len: usize },
    #[error("metadata key of {len} bytes exceeds the AMF0 string limit of 65535 bytes")]
    KeyTooLong { len: usize },
    #[error("offset {offset} + 8 is outside the {len}-byte buffer being patched")]
    PatchOutOfRange { offset: usize, len: usize },
}

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), FlvError> {
    if buf.len() < n {
        Err(FlvError::Truncated {
            what,
            needed: n,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn be_u24(b: [u8; 3]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// Sign-extends a big-endian 24-bit value (FLV `SI24`).
fn be_i24(b: [u8; 3]) -> i32 {
    // Place the 24 bits in the top of an i32 and shift back arithmetically.
    i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8
}

fn array3(buf: &[u8], at: usize) -> Option<[u8; 3]> {
    buf.get(at..at + 3)?.try_into().ok()
}

fn array4(buf: &[u8], at: usize) -> Option<[u8; 4]> {
    buf.get(at..at + 4)?.try_into().ok()
}

// ---------------------------------------------------------------------------------------------
// Video tag bodies
// ---------------------------------------------------------------------------------------------

/// The FLV `FrameType` of a video tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// 1: key frame (for AVC/HEVC: a seekable frame, normally an IDR/IRAP picture).
    Key,
    /// 2 (inter frame) or 3 (disposable inter frame).
    Inter,
    /// 4 (generated key frame), 5 (video info/command frame) or a reserved value.
    Other(u8),
}

impl FrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 => FrameType::Key,
            2 | 3 => FrameType::Inter,
            other => FrameType::Other(other),
        }
    }
}

/// Video codec of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264: legacy codec id 7, or Enhanced RTMP FourCC `avc1`.
    Avc,
    /// H.265: legacy codec id 12 (non-standard but widespread), or Enhanced RTMP FourCC `hvc1`.
    Hevc,
    /// Any other Enhanced RTMP FourCC, e.g. `av01` or `vp09`.
    Enhanced([u8; 4]),
    /// Any other legacy codec id (2 Sorenson, 4 VP6, ...).
    Other(u8),
}

/// What a video tag carries. For legacy tags this is the `AVCPacketType` (AVC and HEVC only);
/// for Enhanced RTMP it is the mapped `VideoPacketType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacketType {
    /// Decoder configuration (AVCDecoderConfigurationRecord / HEVC / AV1 config record).
    SequenceHeader,
    /// Coded frame data. For AVC/HEVC: length-prefixed NAL units. Legacy non-AVC codecs and
    /// Enhanced `CodedFramesX` also map here.
    Nalu,
    /// End of sequence; no useful payload.
    EndOfSequence,
    /// Anything else (Enhanced metadata, multitrack, ModEx, reserved values).
    Other(u8),
}

/// A parsed video tag body. `payload` borrows the input and starts after the (legacy or
/// enhanced) video tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag<'a> {
    pub frame_type: FrameType,
    pub codec: VideoCodec,
    pub packet_type: VideoPacketType,
    /// Composition time offset (PTS - DTS) in milliseconds; 0 where the format has none.
    pub composition_time_ms: i32,
    /// True for Enhanced RTMP (ExVideoTagHeader) tags.
    pub enhanced: bool,
    pub payload: &'a [u8],
}

impl<'a> VideoTag<'a> {
    /// Parses an FLV video tag body (the bytes of an RTMP video message).
    ///
    /// Never panics; truncated headers give [`FlvError::Truncated`].
    pub fn parse(body: &'a [u8]) -> Result<Self, FlvError> {
        let Some(&first) = body.first() else {
            return Err(FlvError::Truncated {
                what: "video tag header",
                needed: 1,
                available: 0,
            });
        };
        if first & 0x80 != 0 {
            return Self::parse_enhanced(body, first);
        }
        let frame_type = FrameType::from_bits(first >> 4);
        let codec = match first & 0x0f {
            7 => VideoCodec::Avc,
            12 => VideoCodec::Hevc,
            other => VideoCodec::Other(other),
        };
        match codec {
            VideoCodec::Avc | VideoCodec::Hevc => {
                need(body, 5, "AVC/HEVC video tag header")?;
                let packet_type = match body[1] {
                    0 => VideoPacketType::SequenceHeader,
                    1 => VideoPacketType::Nalu,
                    2 => VideoPacketType::EndOfSequence,
                    other => VideoPacketType::Other(other),
                };
                let cts = array3(body, 2).map(be_i24).unwrap_or(0);
                Ok(VideoTag {
                    frame_type,
                    codec,
                    packet_type,
                    composition_time_ms: cts,
                    enhanced: false,
                    payload: body.get(5..).unwrap_or(&[]),
                })
            }
            _ => Ok(VideoTag {
                frame_type,
                codec,
                packet_type: VideoPacketType::Nalu,
                composition_time_ms: 0,
                enhanced: false,
                payload: body.get(1..).unwrap_or(&[]),
            }),
        }
    }

    /// Enhanced RTMP ExVideoTagHeader: `1 | FrameType:3 | PacketType:4`, FourCC, then for
    /// `CodedFrames` of avc1/hvc1 an SI24 composition time.
    fn parse_enhanced(body: &'a [u8], first: u8) -> Result<Self, FlvError> {
        need(body, 5, "Enhanced RTMP video tag header")?;
        let frame_type = FrameType::from_bits((first >> 4) & 0x07);
        let raw_packet_type = first & 0x0f;
        let fourcc = array4(body, 1).unwrap_or_default();
        let codec = match &fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            _ => VideoCodec::Enhanced(fourcc),
        };
        let mut payload = body.get(5..).unwrap_or(&[]);
        let mut cts = 0;
        let packet_type = match raw_packet_type {
            0 => VideoPacketType::SequenceHeader,
            1 => {
                // Only avc1/hvc1 carry a composition time in CodedFrames.
                if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
                    need(body, 8, "Enhanced RTMP CodedFrames composition time")?;
                    cts = array3(body, 5).map(be_i24).unwrap_or(0);
                    payload = body.get(8..).unwrap_or(&[]);
                }
                VideoPacketType::Nalu
            }
            2 => VideoPacketType::EndOfSequence,
            3 => VideoPacketType::Nalu, // CodedFramesX: composition time implied 0
            other => VideoPacketType::Other(other),
        };
        Ok(VideoTag {
            frame_type,
            codec,
            packet_type,
            composition_time_ms: cts,
            enhanced: true,
            payload,
        })
    }

    /// True for a key frame carrying coded data (not a sequence header).
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == FrameType::Key && self.packet_type == VideoPacketType::Nalu
    }
}

// ---------------------------------------------------------------------------------------------
// Audio tag bodies
// ---------------------------------------------------------------------------------------------

/// Audio codec of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundFormat {
    /// Legacy SoundFormat 10, or Enhanced RTMP FourCC `mp4a`.
    Aac,
    /// Legacy SoundFormat 2 or 14 (MP3 8 kHz), or Enhanced RTMP FourCC `.mp3`.
    Mp3,
    /// Any other Enhanced RTMP FourCC (`Opus`, `fLaC`, `ac-3`, ...).
    Enhanced([u8; 4]),
    /// Any other legacy SoundFormat.
    Other(u8),
}

/// `AACPacketType` (or the mapped Enhanced `AudioPacketType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AacPacketType {
    /// AudioSpecificConfig.
    SequenceHeader,
    /// A raw AAC frame (or, for non-AAC formats, the coded audio data).
    Raw,
    /// Anything else (Enhanced sequence end, multichannel config, multitrack, ...).
    Other(u8),
}

/// A parsed audio tag body; `payload` borrows the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag<'a> {
    pub format: SoundFormat,
    pub packet_type: AacPacketType,
    /// Legacy SoundRate code (0 = 5.5 kHz, 1 = 11 kHz, 2 = 22 kHz, 3 = 44 kHz). AAC ignores it:
    /// the AudioSpecificConfig is authoritative. 0 for Enhanced tags.
    pub rate_code: u8,
    /// Legacy SoundSize: true for 16-bit samples.
    pub sixteen_bit: bool,
    /// Legacy SoundType: true for stereo.
    pub stereo: bool,
    /// True for Enhanced RTMP (ExAudioTagHeader) tags.
    pub enhanced: bool,
    pub payload: &'a [u8],
}

impl<'a> AudioTag<'a> {
    /// Parses an FLV audio tag body (the bytes of an RTMP audio message). Never panics.
    pub fn parse(body: &'a [u8]) -> Result<Self, FlvError> {
        let Some(&first) = body.first() else {
            return Err(FlvError::Truncated {
                what: "audio tag header",
                needed: 1,
                available: 0,
            });
        };
        let format_bits = first >> 4;
        if format_bits == 9 {
            // Enhanced RTMP ExAudioTagHeader: `9 | AudioPacketType:4`, FourCC.
            need(body, 5, "Enhanced RTMP audio tag header")?;
            let fourcc = array4(body, 1).unwrap_or_default();
            let format = match &fourcc {
                b"mp4a" => SoundFormat::Aac,
                b".mp3" => SoundFormat::Mp3,
                _ => SoundFormat::Enhanced(fourcc),
            };
            let packet_type = match first & 0x0f {
                0 => AacPacketType::SequenceHeader,
                1 => AacPacketType::Raw,
                other => AacPacketType::Other(other),
            };
            return Ok(AudioTag {
                format,
                packet_type,
                rate_code: 0,
                sixteen_bit: true,
                stereo: true,
                enhanced: true,
                payload: body.get(5..).unwrap_or(&[]),
            });
        }
        let format = match format_bits {
            10 => SoundFormat::Aac,
            2 | 14 => SoundFormat::Mp3,
            other => SoundFormat::Other(other),
        };
        let rate_code = (first >> 2) & 0x03;
        let sixteen_bit = first & 0x02 != 0;
        let stereo = first & 0x01 != 0;
        let (packet_type, payload) = if format == SoundFormat::Aac {
            need(body, 2, "AAC audio tag header")?;
            let pt = match body[1] {
                0 => AacPacketType::SequenceHeader,
                1 => AacPacketType::Raw,
                other => AacPacketType::Other(other),
            };
            (pt, body.get(2..).unwrap_or(&[]))
        } else {
            (AacPacketType::Raw, body.get(1..).unwrap_or(&[]))
        };
        Ok(AudioTag {
            format,
            packet_type,
            rate_code,
            sixteen_bit,
            stereo,
            enhanced: false,
            payload,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Writing FLV files
// ---------------------------------------------------------------------------------------------

/// FLV tag type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    Audio,
    Video,
    Script,
}

impl TagKind {
    /// The TagType byte (8, 9 or 18).
    pub fn type_byte(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }

    /// Inverse of [`TagKind::type_byte`]; `None` for anything else (including the encrypted
    /// "Filter" bit, which this crate does not support).
    pub fn from_type_byte(b: u8) -> Option<Self> {
        match b {
            8 => Some(TagKind::Audio),
            9 => Some(TagKind::Video),
            18 => Some(TagKind::Script),
            _ => None,
        }
    }
}

/// The 9-byte FLV file header followed by PreviousTagSize0 (= 0): the first 13 bytes of a file.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; FILE_HEADER_LEN + 4] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Total bytes a tag with a `body_len`-byte body occupies in a file, including its trailing
/// PreviousTagSize.
pub fn encoded_tag_len(body_len: usize) -> usize {
    TAG_HEADER_LEN + body_len + PREVIOUS_TAG_SIZE_LEN
}

/// Appends one tag (11-byte header, body, 4-byte PreviousTagSize) to `out`.
///
/// `timestamp_ms` is written as the 24-bit Timestamp plus the TimestampExtended byte, so the
/// full 32-bit millisecond range survives. Returns the number of bytes appended.
pub fn write_tag(
    out: &mut Vec<u8>,
    kind: TagKind,
    timestamp_ms: u32,
    body: &[u8],
) -> Result<usize, FlvError> {
    if body.len() > MAX_TAG_BODY_LEN {
        return Err(FlvError::TagTooLarge { len: body.len() });
    }
    let size = body.len() as u32; // fits: checked against MAX_TAG_BODY_LEN above
    let ts = timestamp_ms.to_be_bytes();
    let size_b = size.to_be_bytes();
    out.reserve(encoded_tag_len(body.len()));
    out.push(kind.type_byte());
    out.extend_from_slice(&size_b[1..4]);
    out.extend_from_slice(&ts[1..4]); // lower 24 bits
    out.push(ts[0]); // TimestampExtended: upper 8 bits
    out.extend_from_slice(&[0, 0, 0]); // StreamID, always 0
    out.extend_from_slice(body);
    out.extend_from_slice(&(size + TAG_HEADER_LEN as u32).to_be_bytes());
    Ok(encoded_tag_len(body.len()))
}

/// Encodes one complete tag (11-byte header, body, 4-byte PreviousTagSize).
pub fn encode_tag(kind: TagKind, timestamp_ms: u32, body: &[u8]) -> Result<Vec<u8>, FlvError> {
    let mut out = Vec::with_capacity(encoded_tag_len(body.len()));
    write_tag(&mut out, kind, timestamp_ms, body)?;
    Ok(out)
}

/// An encoded `onMetaData` script tag plus where each numeric value sits inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedMetadata {
    /// The complete tag: 11-byte header, AMF0 body, 4-byte PreviousTagSize.
    pub tag: Vec<u8>,
    /// `(key, offset)`: offset of the 8-byte big-endian f64 of each field, counted from the
    /// first byte of `tag`. Overwriting those 8 bytes keeps the tag valid (fixed width).
    pub value_offsets: Vec<(String, usize)>,
}

impl EncodedMetadata {
    /// Offset (from the start of [`EncodedMetadata::tag`]) of the f64 stored under `key`.
    pub fn offset_of(&self, key: &str) -> Option<usize> {
        self.value_offsets
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, o)| *o)
    }

    /// Offset of the `duration` value (seconds), if the field was encoded.
    pub fn duration_offset(&self) -> Option<usize> {
        self.offset_of("duration")
    }

    /// Offset of the `filesize` value (bytes), if the field was encoded.
    pub fn filesize_offset(&self) -> Option<usize> {
        self.offset_of("filesize")
    }
}

/// Encodes an `onMetaData` script tag (timestamp 0) whose value is an AMF0 ECMA array of
/// numbers, in the given order.
///
/// To have `duration`/`filesize` patchable later, include them (e.g. as 0.0) and keep the
/// returned offsets; see [`patch_f64`]. AMF0 numbers are always 8 bytes, so patching never
/// changes the tag's length.
pub fn encode_metadata(fields: &[(&str, f64)]) -> Result<EncodedMetadata, FlvError> {
    const NAME: &[u8] = b"onMetaData";
    let mut body = Vec::with_capacity(32 + fields.len() * 24);
    body.push(0x02); // AMF0 string marker
    body.extend_from_slice(&(NAME.len() as u16).to_be_bytes());
    body.extend_from_slice(NAME);
    body.push(0x08); // AMF0 ECMA array marker
    // The associative count is a hint; a u32 holds any realistic count, saturate otherwise.
    body.extend_from_slice(
        &u32::try_from(fields.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    let mut value_offsets = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        let key_len =
            u16::try_from(key.len()).map_err(|_| FlvError::KeyTooLong { len: key.len() })?;
        body.extend_from_slice(&key_len.to_be_bytes());
        body.extend_from_slice(key.as_bytes());
        body.push(0x00); // AMF0 number marker
        value_offsets.push(((*key).to_owned(), TAG_HEADER_LEN + body.len()));
        body.extend_from_slice(&value.to_be_bytes());
    }
    body.extend_from_slice(&[0x00, 0x00, 0x09]); // object end
    let tag = encode_tag(TagKind::Script, 0, &body)?;
    Ok(EncodedMetadata { tag, value_offsets })
}

/// Overwrites the 8-byte big-endian f64 at `offset` in `buf` (e.g. a metadata tag held in
/// memory); a recorder with a file seeks to `tag_file_offset + offset` and writes
/// `value.to_be_bytes()` instead.
pub fn patch_f64(buf: &mut [u8], offset: usize, value: f64) -> Result<(), FlvError> {
    let len = buf.len();
    let slot = offset
        .checked_add(8)
        .and_then(|end| buf.get_mut(offset..end))
        .ok_or(FlvError::PatchOutOfRange { offset, len })?;
    slot.copy_from_slice(&value.to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading FLV files
// ---------------------------------------------------------------------------------------------

/// The FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub has_audio: bool,
    pub has_video: bool,
    /// Offset of the first tag's header: DataOffset + PreviousTagSize0.
    pub first_tag_offset: usize,
}

/// Parses the file header. Does not check PreviousTagSize0 (writers disagree on it) but does
/// require it to be present.
pub fn parse_file_header(buf: &[u8]) -> Result<FileHeader, FlvError> {
    need(buf, 3, "FLV signature")?;
    let sig = array3(buf, 0).unwrap_or_default();
    if &sig != b"FLV" {
        return Err(FlvError::BadSignature { found: sig });
    }
    need(buf, FILE_HEADER_LEN, "FLV file header")?;
    if buf[3] != 1 {
        return Err(FlvError::UnsupportedVersion(buf[3]));
    }
    let flags = buf[4];
    let data_offset = array4(buf, 5).map(u32::from_be_bytes).unwrap_or(0);
    if data_offset < FILE_HEADER_LEN as u32 {
        return Err(FlvError::BadDataOffset(data_offset));
    }
    let first_tag_offset = (data_offset as usize).saturating_add(PREVIOUS_TAG_SIZE_LEN);
    need(
        buf,
        first_tag_offset,
        "FLV file header and PreviousTagSize0",
    )?;
    Ok(FileHeader {
        has_audio: flags & 0x04 != 0,
        has_video: flags & 0x01 != 0,
        first_tag_offset,
    })
}

/// One tag read from a file; `body` borrows the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    pub kind: TagKind,
    /// Full 32-bit timestamp (Timestamp | TimestampExtended << 24), milliseconds.
    pub timestamp_ms: u32,
    pub body: &'a [u8],
    /// Offset of the tag header within the buffer given to the reader.
    pub offset: usize,
}

/// Iterates over the complete tags of a buffer that starts at a tag header (i.e. after the file
/// header and PreviousTagSize0).
///
/// Yields `Ok(tag)` per complete tag (header, body and trailing PreviousTagSize all present and
/// consistent), then ends (`None`) at the end of the buffer or at a truncated tail. Garbage
/// gives one `Err` and then the iterator ends. [`TagReader::valid_len`] is always the length
/// of the prefix made of complete, valid tags.
#[derive(Debug, Clone)]
pub struct TagReader<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
    /// Offset added to error/tag offsets so they refer to the caller's whole buffer.
    base: usize,
}

impl<'a> TagReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        TagReader {
            buf,
            pos: 0,
            done: false,
            base: 0,
        }
    }

    fn with_base(buf: &'a [u8], base: usize) -> Self {
        TagReader {
            buf,
            pos: 0,
            done: false,
            base,
        }
    }

    /// Length (relative to the reader's buffer) of the prefix holding the tags yielded so far.
    pub fn valid_len(&self) -> usize {
        self.pos
    }

    /// True when the reader stopped because the last tag in the buffer is incomplete.
    pub fn is_truncated(&self) -> bool {
        self.done && self.pos < self.buf.len()
    }

    fn read_one(&mut self) -> Option<Result<Tag<'a>, FlvError>> {
        let rest = self.buf.get(self.pos..)?;
        let offset = self.base + self.pos;
        if rest.len() < TAG_HEADER_LEN {
            return None; // empty or truncated tag header
        }
        // The filter bit (0x20) marks encrypted tags; they are reported as unknown types.
        let tag_type = rest[0];
        let Some(kind) = TagKind::from_type_byte(tag_type) else {
            return Some(Err(FlvError::UnknownTagType { offset, tag_type }));
        };
        let data_size = be_u24(array3(rest, 1)?) as usize;
        let ts_low = be_u24(array3(rest, 4)?);
        let timestamp_ms = (u32::from(rest[7]) << 24) | ts_low;
        let stream_id = be_u24(array3(rest, 8)?);
        if stream_id != 0 {
            return Some(Err(FlvError::NonZeroStreamId { offset, stream_id }));
        }
        let body_end = TAG_HEADER_LEN + data_size;
        let Some(found) = array4(rest, body_end).map(u32::from_be_bytes) else {
            return None; // truncated body or PreviousTagSize
        };
        let expected = (data_size + TAG_HEADER_LEN) as u32; // data_size < 2^24
        if found != expected {
            return Some(Err(FlvError::PreviousTagSizeMismatch {
                offset,
                data_size,
                found,
                expected,
            }));
        }
        let body = rest.get(TAG_HEADER_LEN..body_end)?;
        self.pos += body_end + PREVIOUS_TAG_SIZE_LEN;
        Some(Ok(Tag {
            kind,
            timestamp_ms,
            body,
            offset,
        }))
    }
}

impl<'a> Iterator for TagReader<'a> {
    type Item = Result<Tag<'a>, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_one();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Parses all complete tags of a buffer that starts at a tag header (after the file header
/// and PreviousTagSize0). Returns the tags and the number of bytes they occupy; bytes after
/// that are an incomplete tag (the caller keeps them and appends more data). Garbage is an
/// error.
pub fn parse_tags(buf: &[u8]) -> Result<(Vec<Tag<'_>>, usize), FlvError> {
    let mut reader = TagReader::new(buf);
    let tags = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((tags, reader.valid_len()))
}

/// A whole FLV file read from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvFile<'a> {
    pub header: FileHeader,
    pub tags: Vec<Tag<'a>>,
    /// Length of the playable prefix: file header plus every complete tag.
    pub valid_len: usize,
}

/// Parses a whole FLV file. A truncated final tag is not an error (it is left out and
/// `valid_len` stops before it); garbage is. Tag offsets refer to `file`.
pub fn parse_file(file: &[u8]) -> Result<FlvFile<'_>, FlvError> {
    let header = parse_file_header(file)?;
    let body = file.get(header.first_tag_offset..).unwrap_or(&[]);
    let mut reader = TagReader::with_base(body, header.first_tag_offset);
    let tags = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok(FlvFile {
        header,
        tags,
        valid_len: header.first_tag_offset + reader.valid_len(),
    })
}

/// Byte length of the valid prefix of a (possibly crash-truncated) FLV file: the file header
/// plus every complete tag. Truncating the file to this length makes it playable up to its
/// last complete tag. Garbage (bad signature, bad tag header, PreviousTagSize mismatch) is an
/// error; use [`playable_prefix_len`] to recover as much as possible regardless.
pub fn last_complete_tag_end(file: &[u8]) -> Result<usize, FlvError> {
    let header = match parse_file_header(file) {
        Ok(h) => h,
        // A file cut inside its own header has an empty valid prefix.
        Err(FlvError::Truncated { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    let body = file.get(header.first_tag_offset..).unwrap_or(&[]);
    let mut reader = TagReader::with_base(body, header.first_tag_offset);
    for item in reader.by_ref() {
        item?;
    }
    Ok(header.first_tag_offset + reader.valid_len())
}

/// Like [`last_complete_tag_end`] but never fails: returns the length of the longest prefix
/// made of a valid header and valid complete tags, stopping at the first garbage (0 when the
/// header itself is bad). Meant for crash recovery, where the tail may hold zeros or junk.
pub fn playable_prefix_len(file: &[u8]) -> usize {
    let Ok(header) = parse_file_header(file) else {
        return 0;
    };
    let body = file.get(header.first_tag_offset..).unwrap_or(&[]);
    let mut reader = TagReader::with_base(body, header.first_tag_offset);
    for item in reader.by_ref() {
        if item.is_err() {
            break;
        }
    }
    header.first_tag_offset + reader.valid_len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_file() -> Vec<u8> {
        let mut f = file_header(true, true).to_vec();
        f.extend(encode_metadata(&[("duration", 0.0)]).unwrap().tag);
        f.extend(encode_tag(TagKind::Video, 0, &[0x17, 0, 0, 0, 0, 1, 0x64]).unwrap());
        f.extend(encode_tag(TagKind::Audio, 23, &[0xaf, 1, 0x21, 0x10]).unwrap());
        f.extend(encode_tag(TagKind::Video, 0x0123_4567, &[0x27, 1, 0, 0, 0x21]).unwrap());
        f
    }

    #[test]
    fn legacy_avc_keyframe_parses_with_composition_time() {
        let body = [0x17, 0x01, 0x00, 0x00, 0x50, 0xaa, 0xbb];
        let tag = VideoTag::parse(&body).unwrap();
        assert_eq!(tag.frame_type, FrameType::Key);
        assert_eq!(tag.codec, VideoCodec::Avc);
        assert_eq!(tag.packet_type, VideoPacketType::Nalu);
        assert_eq!(tag.composition_time_ms, 80);
        assert_eq!(tag.payload, &[0xaa, 0xbb]);
        assert!(tag.is_keyframe());
        assert!(!tag.enhanced);
    }

    #[test]
    fn negative_composition_time_is_sign_extended() {
        let body = [0x27, 0x01, 0xff, 0xff, 0xd8];
        let tag = VideoTag::parse(&body).unwrap();
        assert_eq!(tag.frame_type, FrameType::Inter);
        assert_eq!(tag.composition_time_ms, -40);
        assert!(tag.payload.is_empty());
    }

    #[test]
    fn legacy_sequence_header_and_hevc_codec_id() {
        let tag = VideoTag::parse(&[0x17, 0x00, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(tag.packet_type, VideoPacketType::SequenceHeader);
        assert!(!tag.is_keyframe());
        let tag = VideoTag::parse(&[0x1c, 0x02, 0, 0, 0]).unwrap();
        assert_eq!(tag.codec, VideoCodec::Hevc);
        assert_eq!(tag.packet_type, VideoPacketType::EndOfSequence);
    }

    #[test]
    fn other_legacy_codec_payload_starts_after_first_byte() {
        let tag = VideoTag::parse(&[0x22, 9, 8]).unwrap();
        assert_eq!(tag.codec, VideoCodec::Other(2));
        assert_eq!(tag.payload, &[9, 8]);
    }

    #[test]
    fn enhanced_hvc1_coded_frames_carry_composition_time() {
        let mut body = vec![0x80 | 0x10 | 1];
        body.extend_from_slice(b"hvc1");
        body.extend_from_slice(&[0, 0, 0x21, 0xee]);
        let tag = VideoTag::parse(&body).unwrap();
        assert!(tag.enhanced);
        assert_eq!(tag.codec, VideoCodec::Hevc);
        assert_eq!(tag.frame_type, FrameType::Key);
        assert_eq!(tag.packet_type, VideoPacketType::Nalu);
        assert_eq!(tag.composition_time_ms, 0x21);
        assert_eq!(tag.payload, &[0xee]);
    }

    #[test]
    fn enhanced_av1_has_fourcc_and_no_composition_time() {
        let mut body = vec![0x80 | 0x20 | 1];
        body.extend_from_slice(b"av01");
        body.extend_from_slice(&[1, 2, 3]);
        let tag = VideoTag::parse(&body).unwrap();
        assert_eq!(tag.codec, VideoCodec::Enhanced(*b"av01"));
        assert_eq!(tag.frame_type, FrameType::Inter);
        assert_eq!(tag.composition_time_ms, 0);
        assert_eq!(tag.payload, &[1, 2, 3]);
        let mut seq = vec![0x80 | 0x10];
        seq.extend_from_slice(b"vp09");
        let tag = VideoTag::parse(&seq).unwrap();
        assert_eq!(tag.codec, VideoCodec::Enhanced(*b"vp09"));
        assert_eq!(tag.packet_type, VideoPacketType::SequenceHeader);
    }

    #[test]
    fn truncated_video_headers_are_errors() {
        assert!(matches!(
            VideoTag::parse(&[]),
            Err(FlvError::Truncated { needed: 1, .. })
        ));
        assert!(matches!(
            VideoTag::parse(&[0x17, 1, 0]),
            Err(FlvError::Truncated {
                needed: 5,
                available: 3,
                ..
            })
        ));
        assert!(matches!(
            VideoTag::parse(&[0x91, b'h', b'v', b'c', b'1', 0]),
            Err(FlvError::Truncated { needed: 8, .. })
        ));
    }

    #[test]
    fn aac_audio_tags_parse() {
        let tag = AudioTag::parse(&[0xaf, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(tag.format, SoundFormat::Aac);
        assert_eq!(tag.packet_type, AacPacketType::SequenceHeader);
        assert_eq!(tag.payload, &[0x12, 0x10]);
        assert!(tag.stereo && tag.sixteen_bit);
        assert_eq!(tag.rate_code, 3);
        let raw = AudioTag::parse(&[0xaf, 0x01, 0x21]).unwrap();
        assert_eq!(raw.packet_type, AacPacketType::Raw);
        assert!(AudioTag::parse(&[0xaf]).is_err());
        assert!(AudioTag::parse(&[]).is_err());
    }

    #[test]
    fn mp3_and_enhanced_audio_tags_parse() {
        let mp3 = AudioTag::parse(&[0x2e, 0xff, 0xfb]).unwrap();
        assert_eq!(mp3.format, SoundFormat::Mp3);
        assert_eq!(mp3.payload, &[0xff, 0xfb]);
        assert!(!mp3.stereo);
        let mut opus = vec![0x91];
        opus.extend_from_slice(b"Opus");
        opus.push(7);
        let tag = AudioTag::parse(&opus).unwrap();
        assert_eq!(tag.format, SoundFormat::Enhanced(*b"Opus"));
        assert_eq!(tag.packet_type, AacPacketType::Raw);
        assert_eq!(tag.payload, &[7]);
    }

    #[test]
    fn file_header_sets_flags() {
        assert_eq!(
            file_header(true, true),
            [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
    }

    #[test]
    fn encode_tag_writes_extended_timestamp_and_previous_tag_size() {
        let tag = encode_tag(TagKind::Video, 0x1234_5678, &[1, 2, 3]).unwrap();
        assert_eq!(
            tag,
            [
                9, 0, 0, 3, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14
            ]
        );
    }

    #[test]
    fn oversized_body_is_rejected() {
        let body = vec![0; MAX_TAG_BODY_LEN + 1];
        assert_eq!(
            encode_tag(TagKind::Audio, 0, &body),
            Err(FlvError::TagTooLarge {
                len: MAX_TAG_BODY_LEN + 1
            })
        );
    }

    #[test]
    fn metadata_is_amf0_ecma_array_with_patchable_offsets() {
        let meta =
            encode_metadata(&[("duration", 0.0), ("width", 1280.0), ("filesize", 0.0)]).unwrap();
        let body = &meta.tag[TAG_HEADER_LEN..meta.tag.len() - 4];
        assert_eq!(meta.tag[0], 18);
        assert_eq!(&body[..13], b"\x02\x00\x0aonMetaData");
        assert_eq!(&body[13..18], &[0x08, 0, 0, 0, 3]);
        assert_eq!(&body[body.len() - 3..], &[0, 0, 9]);
        let w = meta.offset_of("width").unwrap();
        assert_eq!(meta.tag[w - 1], 0x00, "number marker precedes the value");
        assert_eq!(&meta.tag[w..w + 8], &1280.0f64.to_be_bytes());

        let mut patched = meta.tag.clone();
        patch_f64(&mut patched, meta.duration_offset().unwrap(), 12.5).unwrap();
        patch_f64(&mut patched, meta.filesize_offset().unwrap(), 4096.0).unwrap();
        assert_eq!(patched.len(), meta.tag.len());
        let d = meta.duration_offset().unwrap();
        assert_eq!(&patched[d..d + 8], &12.5f64.to_be_bytes());
        let f = meta.filesize_offset().unwrap();
        assert_eq!(&patched[f..f + 8], &4096.0f64.to_be_bytes());
        assert!(meta.offset_of("height").is_none());
        assert_eq!(
            patch_f64(&mut patched, usize::MAX, 1.0),
            Err(FlvError::PatchOutOfRange {
                offset: usize::MAX,
                len: meta.tag.len()
            })
        );
    }

    #[test]
    fn written_file_reads_back() {
        let f = sample_file();
        let parsed = parse_file(&f).unwrap();
        assert!(parsed.header.has_audio && parsed.header.has_video);
        assert_eq!(parsed.valid_len, f.len());
        let kinds: Vec<_> = parsed.tags.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                TagKind::Script,
                TagKind::Video,
                TagKind::Audio,
                TagKind::Video
            ]
        );
        assert_eq!(parsed.tags[3].timestamp_ms, 0x0123_4567);
        assert_eq!(parsed.tags[2].body, &[0xaf, 1, 0x21, 0x10]);
        assert_eq!(parsed.tags[0].offset, 13);
        assert_eq!(last_complete_tag_end(&f), Ok(f.len()));
    }

    #[test]
    fn truncated_tail_stops_cleanly_at_every_cut() {
        let f = sample_file();
        let full = parse_file(&f).unwrap();
        let ends: Vec<usize> = full
            .tags
            .iter()
            .map(|t| t.offset + encoded_tag_len(t.body.len()))
            .collect();
        for cut in 0..f.len() {
            let expected = if cut < 13 {
                0
            } else {
                ends.iter()
                    .copied()
                    .filter(|&e| e <= cut)
                    .max()
                    .unwrap_or(13)
            };
            assert_eq!(last_complete_tag_end(&f[..cut]), Ok(expected), "cut {cut}");
            assert_eq!(playable_prefix_len(&f[..cut]), expected, "cut {cut}");
        }
    }

    #[test]
    fn parse_tags_reports_consumed_bytes_for_streaming() {
        let f = sample_file();
        let tags_region = &f[13..];
        let (tags, used) = parse_tags(&tags_region[..tags_region.len() - 2]).unwrap();
        assert_eq!(tags.len(), 3);
        assert_eq!(used, tags[2].offset + encoded_tag_len(tags[2].body.len()));
        let mut reader = TagReader::new(&tags_region[..tags_region.len() - 2]);
        assert_eq!(reader.by_ref().count(), 3);
        assert!(reader.is_truncated());
    }

    #[test]
    fn garbage_is_rejected_with_offsets() {
        assert_eq!(
            parse_file(b"FLX\x01\x05\0\0\0\x09\0\0\0\0").unwrap_err(),
            FlvError::BadSignature { found: *b"FLX" }
        );
        assert_eq!(
            last_complete_tag_end(b"MZ\x90\0"),
            Err(FlvError::BadSignature {
                found: [b'M', b'Z', 0x90]
            })
        );
        assert_eq!(
            parse_file(b"FLV\x02\x05\0\0\0\x09\0\0\0\0").unwrap_err(),
            FlvError::UnsupportedVersion(2)
        );

        let mut f = sample_file();
        let second = parse_file(&f).unwrap().tags[1].offset;
        // Corrupt the DataSize of the second tag: its PreviousTagSize no longer matches.
        f[second + 3] = f[second + 3].wrapping_add(1);
        let err = last_complete_tag_end(&f).unwrap_err();
        assert!(
            matches!(err, FlvError::PreviousTagSizeMismatch { offset, .. } if offset == second),
            "{err}"
        );
        assert_eq!(playable_prefix_len(&f), second);

        let mut f = sample_file();
        f[second] = 0; // zeroed tail after a crash
        assert_eq!(
            last_complete_tag_end(&f),
            Err(FlvError::UnknownTagType {
                offset: second,
                tag_type: 0
            })
        );
        assert_eq!(playable_prefix_len(&f), second);

        let mut f = sample_file();
        f[second + 9] = 1;
        assert!(matches!(
            parse_file(&f),
            Err(FlvError::NonZeroStreamId { stream_id: 256, .. })
        ));
    }
}
