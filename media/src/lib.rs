//! Pure media formats used by the origin and the worker: FLV tags (read and write), AVC decoder
//! configuration and SPS facts, AAC AudioSpecificConfig and ADTS, an MPEG-TS muxer, HLS
//! playlists, and the live HLS segmenter. No I/O, no clocks: bytes in, bytes out.
#![forbid(unsafe_code)]

pub mod aac;
pub mod avc;
pub mod flv;
pub mod hls;
pub mod playlist;
pub mod ts;
pub mod vod;
