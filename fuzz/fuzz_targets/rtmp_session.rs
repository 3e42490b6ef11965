//! Arbitrary bytes from an RTMP client, processed as the origin does: the server handshake,
//! then the rml_rtmp server session (chunk reassembly, chunk-size changes, commands), then
//! every published audio/video message through the FLV tag parsers and the live segmenter,
//! with the live playlist rendered after each segment.
//!
//! Input: the first byte splits the rest into a handshake part and a session part, so the
//! fuzzer can reach the session without solving the handshake; the session part is fed in
//! reads of varying size to exercise chunk reassembly across reads.
//!
//! rml_rtmp 0.8 panics on some malformed messages (AMF0 command and data decoding, chunk
//! headers that shrink a message); the origin contains those panics to the one connection
//! with `catch_unwind`, and so does this target. Any panic in our own code still crashes.
#![no_main]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use media::flv::{AudioTag, VideoTag};
use media::hls::{LiveSegmenter, SegmenterConfig};
use media::playlist::LiveWindow;
use rml_rtmp::handshake::{Handshake, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};

static QUIET_PANICS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts from its panic hook; contained rml_rtmp panics must not. Panics
    // that escape this closure still abort (libfuzzer-sys checks after the call).
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let (handshake_bytes, session_bytes) = rest.split_at(split);

    let mut handshake = Handshake::new(PeerType::Server);
    let _ = catch_unwind(AssertUnwindSafe(|| handshake.process_bytes(handshake_bytes)));

    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else { return };
    let mut segmenter = LiveSegmenter::new(SegmenterConfig {
        target_duration: Duration::from_millis(200),
        max_fragment: Duration::from_millis(600),
        window: 3,
        max_segment_bytes: 64 * 1024,
        ..SegmenterConfig::default()
    });
    let mut window = LiveWindow::new(3, 1);
    let mut input = session_bytes;
    let mut read = 1usize;
    while !input.is_empty() {
        // Reads of 1, 2, 4 ... 4096 bytes, as a socket might deliver them.
        let take = read.min(input.len());
        let (chunk, next) = input.split_at(take);
        input = next;
        read = if read >= 4096 { 1 } else { read * 2 };
        // A panic or an error closes the connection in the origin.
        let Ok(Ok(results)) = catch_unwind(AssertUnwindSafe(|| session.handle_input(chunk))) else { return };
        let mut pending: Vec<ServerSessionResult> = results;
        while let Some(result) = pending.pop() {
            let ServerSessionResult::RaisedEvent(event) = result else { continue };
            let segments = match event {
                ServerSessionEvent::ConnectionRequested { request_id, .. }
                | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                    if let Ok(more) = session.accept_request(request_id) {
                        pending.extend(more);
                    }
                    continue;
                }
                ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => match VideoTag::parse(&data) {
                    Ok(tag) => segmenter.push_video_tag(timestamp.value, &tag).unwrap_or_default(),
                    Err(_) => continue,
                },
                ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => match AudioTag::parse(&data) {
                    Ok(tag) => segmenter.push_audio_tag(timestamp.value, &tag).unwrap_or_default(),
                    Err(_) => continue,
                },
                ServerSessionEvent::PublishStreamFinished { .. } => segmenter.finish(),
                _ => continue,
            };
            for segment in segments {
                assert_eq!(segment.data.len() % 188, 0, "a segment is whole TS packets");
                window.push(segment.to_ref(format!("{}.ts", segment.sequence)));
                let playlist = window.render(false);
                assert!(playlist.starts_with("#EXTM3U\n"));
            }
        }
    }
    for segment in segmenter.finish() {
        assert_eq!(segment.data.len() % 188, 0, "a segment is whole TS packets");
    }
});
