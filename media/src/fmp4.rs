//! A small CMAF / fragmented MP4 writer (ISO/IEC 14496-12, 14496-14, 14496-15, 23000-19):
//! the init segment (`ftyp` + `moov` with `avc1`/`avcC` and `mp4a`/`esds`, `mvex`/`trex`) and
//! media fragments (`moof` with one `traf` per track, then one `mdat`).
//!
//! Track 1 is video (timescale 90 kHz), track 2 is audio (timescale = the AAC sample rate).
//! Video samples are length-prefixed NAL units with 4-byte lengths (what `avcC` announces);
//! audio samples are raw AAC frames (no ADTS header).

use bytes::Bytes;

use crate::aac::AudioSpecificConfig;
use crate::avc::AvcConfig;

/// Track id of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of the video track (ticks per second), the same as MPEG-TS timestamps.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// `sample_flags` of a sync sample: depends on no other sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// What the init segment says about the video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    /// AVCDecoderConfigurationRecord with 4-byte NAL lengths (see [`avcc_record`]).
    pub avcc: Bytes,
    pub width: u16,
    pub height: u16,
}

/// What the init segment says about the audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioParams {
    /// The AudioSpecificConfig as the encoder sent it.
    pub asc: Bytes,
    /// Core sampling rate in Hz; also the track's timescale.
    pub sample_rate: u32,
    pub channels: u16,
    /// Samples per AAC frame (1024, or 960): each sample's duration.
    pub frame_samples: u32,
}

impl AudioParams {
    /// Parameters from a parsed AudioSpecificConfig and its bytes.
    pub fn new(asc: &AudioSpecificConfig, raw: &[u8]) -> Self {
        AudioParams {
            asc: Bytes::copy_from_slice(raw),
            sample_rate: asc.sample_rate,
            channels: u16::from(asc.channels().unwrap_or(2)),
            frame_samples: asc.samples_per_frame(),
        }
    }
}

/// An AVCDecoderConfigurationRecord for `cfg` with 4-byte NAL lengths: `original` itself when
/// it already uses them (keeping the High-profile trailer), else rebuilt from the parameter
/// sets.
pub fn avcc_record(cfg: &AvcConfig, original: &[u8]) -> Bytes {
    if cfg.nal_length_size == 4 {
        return Bytes::copy_from_slice(original);
    }
    let mut out = vec![
        1,
        cfg.profile_idc,
        cfg.profile_compatibility,
        cfg.level_idc,
        0xff,
        0xe0 | (cfg.sps.len().min(31) as u8),
    ];
    for sps in cfg.sps.iter().take(31) {
        out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        out.extend_from_slice(sps);
    }
    out.push(cfg.pps.len().min(255) as u8);
    for pps in cfg.pps.iter().take(255) {
        out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        out.extend_from_slice(pps);
    }
    Bytes::from(out)
}

/// One sample of a track run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Size in bytes of its data in the fragment's `mdat`.
    pub size: u32,
    /// A sync sample (an IDR picture; every AAC frame).
    pub sync: bool,
    /// Composition time offset (PTS - DTS) in the track's timescale; 0 for audio.
    pub cts_offset: i32,
}

/// The samples of one track in one fragment, with their data back to back.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
    pub data: &'a [u8],
}

/// The init segment for the given tracks (at least one).
pub fn init_segment(video: Option<&VideoParams>, audio: Option<&AudioParams>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        o.extend_from_slice(&0u32.to_be_bytes());
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            o.extend_from_slice(brand);
        }
    });
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            put32(o, 0); // creation_time
            put32(o, 0); // modification_time
            put32(o, 1_000); // timescale
            put32(o, 0); // duration: unknown (fragmented)
            put32(o, 0x0001_0000); // rate 1.0
            put16(o, 0x0100); // volume 1.0
            o.extend_from_slice(&[0; 10]);
            matrix(o);
            o.extend_from_slice(&[0; 24]); // pre_defined
            put32(o, AUDIO_TRACK_ID + 1); // next_track_ID
        });
        if let Some(v) = video {
            video_trak(o, v);
        }
        if let Some(a) = audio {
            audio_trak(o, a);
        }
        bx(o, b"mvex", |o| {
            let ids = video
                .map(|_| VIDEO_TRACK_ID)
                .into_iter()
                .chain(audio.map(|_| AUDIO_TRACK_ID));
            for id in ids {
                full(o, b"trex", 0, 0, |o| {
                    put32(o, id);
                    put32(o, 1); // default_sample_description_index
                    put32(o, 0); // default_sample_duration
                    put32(o, 0); // default_sample_size
                    put32(o, 0); // default_sample_flags
                });
            }
        });
    });
    out
}

/// One media fragment: `moof` (sequence number `sequence`) and an `mdat` holding each run's
/// data in order.
pub fn fragment(sequence: u32, runs: &[TrackRun<'_>]) -> Vec<u8> {
    let data_len: usize = runs.iter().map(|r| r.data.len()).sum();
    let mut out = Vec::with_capacity(256 + runs.len() * 16 * 64 + data_len);
    // Data offsets depend on the moof size, which does not depend on their values: write
    // zeros, then patch each trun's data_offset once the moof is complete.
    let mut offset_fields = Vec::with_capacity(runs.len());
    bx(&mut out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| put32(o, sequence));
        for run in runs {
            bx(o, b"traf", |o| {
                // default-base-is-moof: data offsets count from the start of this moof.
                full(o, b"tfhd", 0, 0x02_0000, |o| put32(o, run.track_id));
                full(o, b"tfdt", 1, 0, |o| put64(o, run.base_decode_time));
                let video = run.track_id == VIDEO_TRACK_ID;
                // data-offset, sample-duration, sample-size; flags and composition offsets
                // for video only (audio samples are all sync, which the zero default says).
                let flags = if video { 0x0f01 } else { 0x0301 };
                full(o, b"trun", 1, flags, |o| {
                    put32(o, run.samples.len() as u32);
                    offset_fields.push(o.len());
                    put32(o, 0);
                    for s in run.samples {
                        put32(o, s.duration);
                        put32(o, s.size);
                        if video {
                            put32(o, if s.sync { SYNC_SAMPLE } else { NON_SYNC_SAMPLE });
                            o.extend_from_slice(&s.cts_offset.to_be_bytes());
                        }
                    }
                });
            });
        }
    });
    let moof_len = out.len();
    let mut data_offset = moof_len + 8;
    for (field, run) in offset_fields.into_iter().zip(runs) {
        let value = u32::try_from(data_offset).unwrap_or(u32::MAX);
        out[field..field + 4].copy_from_slice(&value.to_be_bytes());
        data_offset += run.data.len();
    }
    bx(&mut out, b"mdat", |o| {
        for run in runs {
            o.extend_from_slice(run.data);
        }
    });
    out
}

fn video_trak(o: &mut Vec<u8>, v: &VideoParams) {
    bx(o, b"trak", |o| {
        tkhd(o, VIDEO_TRACK_ID, 0, v.width, v.height);
        bx(o, b"mdia", |o| {
            mdhd(o, VIDEO_TIMESCALE);
            hdlr(o, b"vide", b"VideoHandler\0");
            bx(o, b"minf", |o| {
                full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                dinf(o);
                stbl(o, |o| {
                    bx(o, b"avc1", |o| {
                        o.extend_from_slice(&[0; 6]);
                        put16(o, 1); // data_reference_index
                        o.extend_from_slice(&[0; 16]); // pre_defined, reserved
                        put16(o, v.width);
                        put16(o, v.height);
                        put32(o, 0x0048_0000); // 72 dpi
                        put32(o, 0x0048_0000);
                        put32(o, 0);
                        put16(o, 1); // frame_count
                        o.extend_from_slice(&[0; 32]); // compressorname
                        put16(o, 0x0018); // depth
                        put16(o, 0xffff); // pre_defined = -1
                        bx(o, b"avcC", |o| o.extend_from_slice(&v.avcc));
                    });
                });
            });
        });
    });
}

fn audio_trak(o: &mut Vec<u8>, a: &AudioParams) {
    bx(o, b"trak", |o| {
        tkhd(o, AUDIO_TRACK_ID, 0x0100, 0, 0);
        bx(o, b"mdia", |o| {
            mdhd(o, a.sample_rate);
            hdlr(o, b"soun", b"SoundHandler\0");
            bx(o, b"minf", |o| {
                full(o, b"smhd", 0, 0, |o| put32(o, 0));
                dinf(o);
                stbl(o, |o| {
                    bx(o, b"mp4a", |o| {
                        o.extend_from_slice(&[0; 6]);
                        put16(o, 1); // data_reference_index
                        o.extend_from_slice(&[0; 8]);
                        put16(o, a.channels);
                        put16(o, 16); // samplesize
                        put32(o, 0); // pre_defined, reserved
                        // 16.16 fixed point; rates above 65535 Hz do not fit and read as 0.
                        put32(
                            o,
                            if a.sample_rate <= 0xffff {
                                a.sample_rate << 16
                            } else {
                                0
                            },
                        );
                        full(o, b"esds", 0, 0, |o| esds(o, &a.asc));
                    });
                });
            });
        });
    });
}

/// ES_Descriptor (ISO/IEC 14496-1 7.2.6.5) carrying the AudioSpecificConfig.
fn esds(o: &mut Vec<u8>, asc: &[u8]) {
    let mut dsi = Vec::new();
    descriptor(&mut dsi, 0x05, asc);
    let mut dcd = vec![0x40, 0x15, 0, 0, 0]; // MPEG-4 audio, audio stream, bufferSizeDB 0
    dcd.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate
    dcd.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate
    dcd.extend_from_slice(&dsi);
    let mut es = vec![0, AUDIO_TRACK_ID as u8, 0]; // ES_ID, flags
    descriptor(&mut es, 0x04, &dcd);
    descriptor(&mut es, 0x06, &[0x02]); // SLConfigDescriptor, predefined MP4
    descriptor(o, 0x03, &es);
}

/// A descriptor with its tag and the size in the 7-bits-per-byte expandable form.
fn descriptor(o: &mut Vec<u8>, tag: u8, body: &[u8]) {
    o.push(tag);
    let len = body.len();
    let mut groups = vec![(len & 0x7f) as u8];
    let mut rest = len >> 7;
    while rest > 0 {
        groups.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    o.extend(groups.iter().rev());
    o.extend_from_slice(body);
}

fn tkhd(o: &mut Vec<u8>, id: u32, volume: u16, width: u16, height: u16) {
    // Flags: track_enabled | track_in_movie.
    full(o, b"tkhd", 0, 3, |o| {
        put32(o, 0); // creation_time
        put32(o, 0); // modification_time
        put32(o, id);
        put32(o, 0);
        put32(o, 0); // duration
        o.extend_from_slice(&[0; 8]);
        put16(o, 0); // layer
        put16(o, 0); // alternate_group
        put16(o, volume);
        put16(o, 0);
        matrix(o);
        put32(o, u32::from(width) << 16);
        put32(o, u32::from(height) << 16);
    });
}

fn mdhd(o: &mut Vec<u8>, timescale: u32) {
    full(o, b"mdhd", 0, 0, |o| {
        put32(o, 0);
        put32(o, 0);
        put32(o, timescale);
        put32(o, 0); // duration
        put16(o, 0x55c4); // language "und"
        put16(o, 0);
    });
}

fn hdlr(o: &mut Vec<u8>, handler: &[u8; 4], name: &[u8]) {
    full(o, b"hdlr", 0, 0, |o| {
        put32(o, 0);
        o.extend_from_slice(handler);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(name);
    });
}

fn dinf(o: &mut Vec<u8>) {
    bx(o, b"dinf", |o| {
        full(o, b"dref", 0, 0, |o| {
            put32(o, 1);
            // Flag 1: the media data is in this file.
            full(o, b"url ", 0, 1, |_| {});
        });
    });
}

/// A sample table with one sample description and no samples (they are in the fragments).
fn stbl(o: &mut Vec<u8>, entry: impl FnOnce(&mut Vec<u8>)) {
    bx(o, b"stbl", |o| {
        full(o, b"stsd", 0, 0, |o| {
            put32(o, 1);
            entry(o);
        });
        full(o, b"stts", 0, 0, |o| put32(o, 0));
        full(o, b"stsc", 0, 0, |o| put32(o, 0));
        full(o, b"stsz", 0, 0, |o| {
            put32(o, 0);
            put32(o, 0);
        });
        full(o, b"stco", 0, 0, |o| put32(o, 0));
    });
}

fn matrix(o: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        put32(o, v);
    }
}

/// Writes a box: size (patched once the body is written), type, body.
fn bx(o: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = o.len();
    put32(o, 0);
    o.extend_from_slice(kind);
    body(o);
    let size = u32::try_from(o.len() - start).unwrap_or(u32::MAX);
    o[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box: a box whose body starts with version and 24-bit flags.
fn full(o: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    bx(o, kind, |o| {
        put32(o, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(o);
    });
}

fn put16(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put64(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

/// A minimal ISO BMFF box reader for tests (here and in the packager's).
#[cfg(test)]
pub(crate) mod read {
    /// A box: its type and body (after the header; for full boxes, version and flags are the
    /// body's first 4 bytes).
    #[derive(Debug, Clone, Copy)]
    pub struct Box<'a> {
        pub kind: [u8; 4],
        pub body: &'a [u8],
    }

    /// The boxes laid end to end in `buf`; panics on a size that runs past the end.
    pub fn boxes(buf: &[u8]) -> Vec<Box<'_>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                size >= 8 && pos + size <= buf.len(),
                "bad box size {size} at {pos}"
            );
            out.push(Box {
                kind: buf[pos + 4..pos + 8].try_into().unwrap(),
                body: &buf[pos + 8..pos + size],
            });
            pos += size;
        }
        out
    }

    /// The first child of `parent` with type `kind` (the children start `skip` bytes into
    /// the body).
    pub fn child<'a>(parent: &'a [u8], skip: usize, kind: &[u8; 4]) -> Box<'a> {
        *boxes(&parent[skip..])
            .iter()
            .find(|b| &b.kind == kind)
            .unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(kind)))
    }

    /// Follows a path of container boxes from `buf`'s top level.
    pub fn path<'a>(buf: &'a [u8], kinds: &[&[u8; 4]]) -> &'a [u8] {
        let mut body = buf;
        for kind in kinds {
            body = child(body, 0, kind).body;
        }
        body
    }

    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    pub fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// A parsed `traf`: track id, `tfdt`, and each sample as (duration, size, flags, cts).
    #[derive(Debug)]
    pub struct Traf {
        pub track_id: u32,
        pub base_decode_time: u64,
        pub data_offset: u32,
        pub samples: Vec<(u32, u32, Option<u32>, Option<i32>)>,
    }

    pub fn traf(body: &[u8]) -> Traf {
        let tfhd = child(body, 0, b"tfhd").body;
        let tfdt = child(body, 0, b"tfdt").body;
        let trun = child(body, 0, b"trun").body;
        let flags = u32_at(trun, 0) & 0xff_ffff;
        assert_eq!(flags & 0x0301, 0x0301, "offset, duration and size present");
        let count = u32_at(trun, 4) as usize;
        let data_offset = u32_at(trun, 8);
        let mut pos = 12;
        let mut samples = Vec::new();
        for _ in 0..count {
            let duration = u32_at(trun, pos);
            let size = u32_at(trun, pos + 4);
            pos += 8;
            let sample_flags = (flags & 0x400 != 0).then(|| {
                pos += 4;
                u32_at(trun, pos - 4)
            });
            let cts = (flags & 0x800 != 0).then(|| {
                pos += 4;
                u32_at(trun, pos - 4) as i32
            });
            samples.push((duration, size, sample_flags, cts));
        }
        assert_eq!(pos, trun.len(), "trun fully read");
        let version = tfdt[0];
        Traf {
            track_id: u32_at(tfhd, 4),
            base_decode_time: if version == 1 {
                u64_at(tfdt, 4)
            } else {
                u64::from(u32_at(tfdt, 4))
            },
            data_offset,
            samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read::*;
    use super::*;
    use crate::avc::tests::HIGH_720P30_AVCC;

    fn video_params() -> VideoParams {
        let cfg = AvcConfig::parse(HIGH_720P30_AVCC).unwrap();
        VideoParams {
            avcc: avcc_record(&cfg, HIGH_720P30_AVCC),
            width: 1280,
            height: 720,
        }
    }

    fn audio_params() -> AudioParams {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        AudioParams::new(&asc, &[0x11, 0x90])
    }

    #[test]
    fn init_segment_declares_both_tracks_with_their_configs() {
        let init = init_segment(Some(&video_params()), Some(&audio_params()));
        let top: Vec<_> = boxes(&init).iter().map(|b| b.kind).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);
        let moov = path(&init, &[b"moov"]);
        let traks: Vec<_> = boxes(moov)
            .into_iter()
            .filter(|b| &b.kind == b"trak")
            .collect();
        assert_eq!(traks.len(), 2);

        let tkhd = child(traks[0].body, 0, b"tkhd").body;
        assert_eq!(u32_at(tkhd, 12), VIDEO_TRACK_ID);
        assert_eq!(u32_at(tkhd, 76) >> 16, 1280, "width");
        assert_eq!(u32_at(tkhd, 80) >> 16, 720, "height");
        let vmdia = child(traks[0].body, 0, b"mdia").body;
        assert_eq!(u32_at(child(vmdia, 0, b"mdhd").body, 12), 90_000);
        assert_eq!(&child(vmdia, 0, b"hdlr").body[8..12], b"vide");
        let stsd = path(vmdia, &[b"minf", b"stbl", b"stsd"]);
        assert_eq!(u32_at(stsd, 4), 1, "one sample entry");
        let avc1 = child(stsd, 8, b"avc1").body;
        assert_eq!(u16::from_be_bytes([avc1[24], avc1[25]]), 1280);
        assert_eq!(u16::from_be_bytes([avc1[26], avc1[27]]), 720);
        // The avcC record follows the 78-byte VisualSampleEntry body.
        assert_eq!(child(avc1, 78, b"avcC").body, HIGH_720P30_AVCC);

        let amdia = child(traks[1].body, 0, b"mdia").body;
        assert_eq!(u32_at(child(amdia, 0, b"mdhd").body, 12), 48_000);
        assert_eq!(&child(amdia, 0, b"hdlr").body[8..12], b"soun");
        let stsd = path(amdia, &[b"minf", b"stbl", b"stsd"]);
        let mp4a = child(stsd, 8, b"mp4a").body;
        assert_eq!(u16::from_be_bytes([mp4a[16], mp4a[17]]), 2, "channels");
        assert_eq!(u32_at(mp4a, 24) >> 16, 48_000);
        let esds = child(mp4a, 28, b"esds").body;
        // The AudioSpecificConfig sits in the DecoderSpecificInfo at the end.
        assert!(
            esds.windows(4).any(|w| w == [0x05, 2, 0x11, 0x90]),
            "{esds:02x?}"
        );

        let mvex = path(moov, &[b"mvex"]);
        let trex: Vec<_> = boxes(mvex).iter().map(|b| u32_at(b.body, 4)).collect();
        assert_eq!(trex, [VIDEO_TRACK_ID, AUDIO_TRACK_ID]);
    }

    #[test]
    fn an_audio_only_init_segment_has_one_track() {
        let init = init_segment(None, Some(&audio_params()));
        let moov = path(&init, &[b"moov"]);
        assert_eq!(boxes(moov).iter().filter(|b| &b.kind == b"trak").count(), 1);
    }

    #[test]
    fn fragment_data_offsets_point_at_each_tracks_samples() {
        let video = [
            Sample {
                duration: 3000,
                size: 5,
                sync: true,
                cts_offset: 6000,
            },
            Sample {
                duration: 3000,
                size: 3,
                sync: false,
                cts_offset: -3000,
            },
        ];
        let audio = [Sample {
            duration: 1024,
            size: 2,
            sync: true,
            cts_offset: 0,
        }];
        let frag = fragment(
            7,
            &[
                TrackRun {
                    track_id: VIDEO_TRACK_ID,
                    base_decode_time: 900_000,
                    samples: &video,
                    data: b"VVVVVvvv",
                },
                TrackRun {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: 1 << 33,
                    samples: &audio,
                    data: b"AA",
                },
            ],
        );
        let top = boxes(&frag);
        assert_eq!(
            top.iter().map(|b| b.kind).collect::<Vec<_>>(),
            [*b"moof", *b"mdat"]
        );
        assert_eq!(top[1].body, b"VVVVVvvvAA");
        let moof = top[0].body;
        assert_eq!(u32_at(child(moof, 0, b"mfhd").body, 4), 7);
        let trafs: Vec<_> = boxes(moof)
            .into_iter()
            .filter(|b| &b.kind == b"traf")
            .map(|b| traf(b.body))
            .collect();
        assert_eq!(trafs[0].track_id, VIDEO_TRACK_ID);
        assert_eq!(trafs[0].base_decode_time, 900_000);
        assert_eq!(
            trafs[0].samples,
            [
                (3000, 5, Some(SYNC_SAMPLE), Some(6000)),
                (3000, 3, Some(NON_SYNC_SAMPLE), Some(-3000))
            ]
        );
        assert_eq!(trafs[1].base_decode_time, 1 << 33);
        assert_eq!(trafs[1].samples, [(1024, 2, None, None)]);
        let v = trafs[0].data_offset as usize;
        let a = trafs[1].data_offset as usize;
        assert_eq!(&frag[v..v + 8], b"VVVVVvvv");
        assert_eq!(&frag[a..a + 2], b"AA");
    }

    #[test]
    fn a_record_with_short_nal_lengths_is_rebuilt_with_four_byte_lengths() {
        let mut short = HIGH_720P30_AVCC.to_vec();
        short[4] = 0xfd; // lengthSizeMinusOne = 1
        let cfg = AvcConfig::parse(&short).unwrap();
        let rebuilt = avcc_record(&cfg, &short);
        let again = AvcConfig::parse(&rebuilt).unwrap();
        assert_eq!(again.nal_length_size, 4);
        assert_eq!(again.sps, cfg.sps);
        assert_eq!(again.pps, cfg.pps);
    }

    #[test]
    fn long_descriptors_use_the_expandable_size_form() {
        let mut out = Vec::new();
        descriptor(&mut out, 0x05, &[0; 200]);
        assert_eq!(&out[..3], &[0x05, 0x81, 0x48]);
        assert_eq!(out.len(), 3 + 200);
    }
}
