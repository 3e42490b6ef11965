//! Reading a recording file back after a crash: how much of it is valid FLV, where its
//! metadata values sit, and how long it plays. Streams the file in chunks, so memory stays
//! bounded by the largest tag rather than the file size.

use std::io::{self, Read, Seek, SeekFrom};

use media::flv::{
    self, AacPacketType, AudioTag, FlvError, TagKind, TagReader, VideoPacketType, VideoTag,
};

use super::timeline::{Timeline, TrackKind};

/// Bytes read per step.
const CHUNK: usize = 1024 * 1024;

/// What a scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Length of the valid prefix: the file header and every complete, valid tag. Zero for a
    /// file cut inside its own header.
    pub valid_len: u64,
    /// Length of the whole file.
    pub file_len: u64,
    /// Why the scan stopped before the end, when that was bytes that are not FLV rather than a
    /// torn final tag.
    pub garbage: Option<FlvError>,
    /// Playing time of the valid prefix.
    pub timeline: Timeline,
    /// File offset of the first `onMetaData`'s `duration` value, if it has one.
    pub duration_at: Option<u64>,
    /// File offset of the first `onMetaData`'s `filesize` value, if it has one.
    pub filesize_at: Option<u64>,
}

#[derive(Debug)]
pub(crate) enum ScanError {
    /// The file does not start like an FLV file.
    NotFlv(FlvError),
    Io(io::Error),
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// Scans `file` from its start.
pub(crate) fn scan(file: &mut (impl Read + Seek)) -> Result<Scan, ScanError> {
    let file_len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut eof = fill(file, &mut buf)?;
    let mut scan = Scan {
        valid_len: 0,
        file_len,
        garbage: None,
        timeline: Timeline::default(),
        duration_at: None,
        filesize_at: None,
    };
    let header = match flv::parse_file_header(&buf) {
        Ok(header) => header,
        // Cut inside the header (a crash right after the file was created): nothing in it.
        Err(FlvError::Truncated { .. }) if b"FLV".starts_with(&buf[..buf.len().min(3)]) => {
            return Ok(scan);
        }
        Err(e) => return Err(ScanError::NotFlv(e)),
    };
    buf.drain(..header.first_tag_offset);
    // File offset of buf[0].
    let mut at = header.first_tag_offset as u64;
    let mut first_tag = true;
    loop {
        let mut reader = TagReader::new(&buf);
        for item in reader.by_ref() {
            match item {
                Ok(tag) => {
                    let tag_at = at + tag.offset as u64;
                    if first_tag && tag.kind == TagKind::Script {
                        let body_at = tag_at + flv::TAG_HEADER_LEN as u64;
                        scan.duration_at =
                            number_offset(tag.body, "duration").map(|o| body_at + o as u64);
                        scan.filesize_at =
                            number_offset(tag.body, "filesize").map(|o| body_at + o as u64);
                    }
                    first_tag = false;
                    note(&mut scan.timeline, tag.kind, tag.timestamp_ms, tag.body);
                }
                Err(e) => scan.garbage = Some(e),
            }
        }
        let used = reader.valid_len();
        at += used as u64;
        if scan.garbage.is_some() || eof {
            scan.valid_len = at;
            return Ok(scan);
        }
        buf.drain(..used);
        eof = fill(file, &mut buf)?;
    }
}

/// Appends up to [`CHUNK`] bytes; true at the end of the file.
fn fill(file: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let before = buf.len();
    file.take(CHUNK as u64).read_to_end(buf)?;
    Ok(buf.len() - before < CHUNK)
}

fn note(timeline: &mut Timeline, kind: TagKind, ts_ms: u32, body: &[u8]) {
    let track = match kind {
        TagKind::Video => VideoTag::parse(body)
            .is_ok_and(|t| t.packet_type == VideoPacketType::Nalu)
            .then_some(TrackKind::Video),
        TagKind::Audio => AudioTag::parse(body)
            .is_ok_and(|t| t.packet_type == AacPacketType::Raw)
            .then_some(TrackKind::Audio),
        TagKind::Script => None,
    };
    if let Some(track) = track {
        timeline.note(track, ts_ms);
    }
}

/// Offset within an `onMetaData` body of the 8-byte number stored under `key`: an AMF0
/// property is the key's 16-bit length, the key, the number marker 0x00, then the value.
pub(super) fn number_offset(body: &[u8], key: &str) -> Option<usize> {
    let len = u16::try_from(key.len()).ok()?.to_be_bytes();
    let mut pattern = Vec::with_capacity(key.len() + 3);
    pattern.extend_from_slice(&len);
    pattern.extend_from_slice(key.as_bytes());
    pattern.push(0x00);
    let at = body.windows(pattern.len()).position(|w| w == pattern)? + pattern.len();
    (at + 8 <= body.len()).then_some(at)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use super::*;

    fn sample() -> Vec<u8> {
        let mut f = flv::file_header(true, true).to_vec();
        f.extend(
            flv::encode_metadata(&[("duration", 0.0), ("filesize", 0.0)])
                .unwrap()
                .tag,
        );
        f.extend(flv::encode_tag(TagKind::Video, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap());
        f.extend(flv::encode_tag(TagKind::Video, 0, &[0x17, 1, 0, 0, 0, 9, 9]).unwrap());
        f.extend(flv::encode_tag(TagKind::Audio, 10, &[0xaf, 1, 5]).unwrap());
        f.extend(flv::encode_tag(TagKind::Video, 40, &[0x27, 1, 0, 0, 0, 8]).unwrap());
        f
    }

    #[test]
    fn a_whole_file_scans_to_its_end_with_metadata_slots_and_duration() {
        let f = sample();
        let s = scan(&mut Cursor::new(&f)).unwrap();
        assert_eq!(s.valid_len, f.len() as u64);
        assert!(s.garbage.is_none());
        let d = s.duration_at.unwrap() as usize;
        assert_eq!(&f[d - 9..d - 1], b"duration");
        let z = s.filesize_at.unwrap() as usize;
        assert_eq!(&f[z - 9..z - 1], b"filesize");
        // Video frames at 0 and 40: ends at 80; the sequence header does not count.
        assert_eq!(s.timeline.duration(), Duration::from_millis(80));
    }

    #[test]
    fn every_cut_scans_to_the_last_complete_tag() {
        let f = sample();
        for cut in 0..f.len() {
            let s = scan(&mut Cursor::new(&f[..cut])).unwrap();
            let expected = flv::last_complete_tag_end(&f[..cut]).unwrap() as u64;
            assert_eq!(s.valid_len, expected, "cut {cut}");
            assert!(s.garbage.is_none(), "cut {cut}");
        }
    }

    #[test]
    fn garbage_stops_the_scan_and_is_reported() {
        let mut f = sample();
        let good = f.len();
        f.extend_from_slice(&[0; 40]);
        let s = scan(&mut Cursor::new(&f)).unwrap();
        assert_eq!(s.valid_len, good as u64);
        assert!(matches!(
            s.garbage,
            Some(FlvError::UnknownTagType { tag_type: 0, .. })
        ));
    }

    #[test]
    fn files_longer_than_a_chunk_are_scanned_across_chunks() {
        let mut f = sample();
        let body: Vec<u8> = [0x27, 1, 0, 0, 0]
            .into_iter()
            .chain(std::iter::repeat_n(7, 300_000))
            .collect();
        for i in 0..10 {
            f.extend(flv::encode_tag(TagKind::Video, 80 + i * 40, &body).unwrap());
        }
        let s = scan(&mut Cursor::new(&f)).unwrap();
        assert!(f.len() > 2 * CHUNK);
        assert_eq!(s.valid_len, f.len() as u64);
        assert_eq!(
            s.timeline.duration(),
            Duration::from_millis(80 + 9 * 40 + 40)
        );
    }

    #[test]
    fn a_file_that_is_not_flv_is_refused() {
        assert!(matches!(
            scan(&mut Cursor::new(b"MZ\x90\0 not a video")),
            Err(ScanError::NotFlv(_))
        ));
        assert!(matches!(
            scan(&mut Cursor::new(b"FLV\x01\x05\0\0")),
            Ok(Scan { valid_len: 0, .. })
        ));
        assert!(matches!(
            scan(&mut Cursor::new(b"")),
            Ok(Scan { valid_len: 0, .. })
        ));
    }
}
