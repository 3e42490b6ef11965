//! Pure media formats used by the origin and the worker: FLV tags (read and write), AVC decoder
//! configuration and SPS facts, AAC AudioSpecificConfig and ADTS, an MPEG-TS muxer, HLS
//! playlists, the live HLS segmenter, a CMAF (fMP4) writer and the low-latency HLS packager.
//! No I/O, no clocks: bytes in, bytes out.
#![forbid(unsafe_code)]

pub mod aac;
pub mod avc;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod llhls;
pub mod playlist;
pub mod timeline;
pub mod ts;
pub mod vod;
