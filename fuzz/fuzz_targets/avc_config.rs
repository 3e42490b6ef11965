//! AVCDecoderConfigurationRecord, SPS parsing and AVCC -> Annex B conversion on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::avc::{self, AvcConfig, SpsInfo};

fuzz_target!(|data: &[u8]| {
    let cfg = AvcConfig::parse(data).ok();
    if let Some(cfg) = &cfg {
        assert!(!cfg.sps.is_empty());
        assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
        let _ = cfg.codec_string();
        if let Ok(info) = cfg.sps_info() {
            let _ = info.codec_string();
            if let Some(fps) = info.frame_rate {
                assert!(fps.is_finite() && fps > 0.0);
            }
        }
    }
    let _ = SpsInfo::parse(data);

    // The input as an access unit, with every length size, with and without parameters.
    for size in [0u8, 1, 2, 3, 4, 5] {
        for keyframe in [false, true] {
            let mut out = vec![0xaa];
            match avc::avcc_to_annexb(data, size, &mut out, cfg.as_ref(), keyframe) {
                Ok(info) => {
                    assert!(out.len() > 1);
                    assert!(info.nal_count >= 1);
                }
                Err(_) => assert_eq!(out, [0xaa], "output untouched on error"),
            }
        }
    }
});
