//! AudioSpecificConfig parsing and ADTS header writing on arbitrary bytes and lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::aac::{self, AudioSpecificConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(asc) = AudioSpecificConfig::parse(data) else {
        return;
    };
    assert!(asc.sample_rate > 0);
    let _ = asc.codec_string();
    let _ = asc.channels();
    let _ = asc.frame_duration_90k();
    // Frame lengths from the input itself, plus the edges.
    let from_input = data.iter().fold(0usize, |acc, &b| acc.rotate_left(8) ^ usize::from(b));
    for len in [0, 1, 8184, 8185, from_input, usize::MAX - 3, usize::MAX] {
        if let Ok(h) = asc.adts_header(len) {
            assert_eq!(h[0], 0xff);
            let frame = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            assert_eq!(frame, len + aac::ADTS_HEADER_LEN);
        }
    }
});
