//! FLV file reading and tag body parsing on arbitrary bytes, plus a write/read round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::flv::{self, AudioTag, TagKind, VideoTag};

fuzz_target!(|data: &[u8]| {
    // Whole-file paths: never panic, valid prefix within bounds and consistent.
    let prefix = flv::playable_prefix_len(data);
    assert!(prefix <= data.len());
    if let Ok(end) = flv::last_complete_tag_end(data) {
        assert_eq!(end, prefix);
    }
    if let Ok(file) = flv::parse_file(data) {
        assert_eq!(file.valid_len, prefix);
        for tag in &file.tags {
            parse_body(tag.kind, tag.body);
        }
    }
    // Tag-stream path (buffer starting at a tag header).
    if let Ok((tags, used)) = flv::parse_tags(data) {
        assert!(used <= data.len());
        for tag in &tags {
            parse_body(tag.kind, tag.body);
        }
    }
    // The input as a bare RTMP message body.
    let _ = VideoTag::parse(data);
    let _ = AudioTag::parse(data);

    // Round trip: any body written as a tag reads back identically.
    let ts = data
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mut file = flv::file_header(true, true).to_vec();
    file.extend(flv::encode_tag(TagKind::Video, ts, data).expect("small body"));
    let parsed = flv::parse_file(&file).expect("own output parses");
    assert_eq!(parsed.tags.len(), 1);
    assert_eq!(parsed.tags[0].timestamp_ms, ts);
    assert_eq!(parsed.tags[0].body, data);
    assert_eq!(parsed.valid_len, file.len());
});

fn parse_body(kind: TagKind, body: &[u8]) {
    match kind {
        TagKind::Video => {
            if let Ok(v) = VideoTag::parse(body) {
                assert!(v.payload.len() < body.len());
            }
        }
        TagKind::Audio => {
            if let Ok(a) = AudioTag::parse(body) {
                assert!(a.payload.len() < body.len());
            }
        }
        TagKind::Script => {}
    }
}
