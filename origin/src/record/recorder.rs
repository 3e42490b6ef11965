//! One session's recording: FLV parts written tag by tag, rolled over on keyframes.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use media::avc::{AvcConfig, SpsInfo};
use media::flv::{self, AacPacketType, AudioTag, TagKind, VideoCodec, VideoPacketType, VideoTag};
use tracing::{error, warn};

use super::file::{self, Counted, CreateFn};
use super::names;
use super::timeline::{Timeline, TrackKind};
use super::{FinishedRecording, RecordError};

/// Write buffer per part. Each tag is handed over whole; the buffer only batches system calls.
const BUFFER_BYTES: usize = 64 * 1024;

/// A full part grows by at most the size limit or this, whichever is larger, while waiting for
/// a keyframe; past that the next frame starts a new part anyway, so a publisher that stops
/// sending keyframes cannot make an unbounded file.
const MIN_KEYFRAME_WAIT_BYTES: u64 = 64 * 1024 * 1024;

/// Records one publish session to `NAME-EPOCH.flv`, `NAME-EPOCH-1.flv`, ...
///
/// Feed it every audio and video message body exactly as received over RTMP, in arrival
/// order. Sequence headers (AVC decoder configuration, AAC AudioSpecificConfig) are remembered
/// and repeated at the start of every part. Once a part is past the size limit, the next video
/// keyframe (any audio frame for a stream without video) starts a new part: the finished part
/// is returned by the write that caused it, and no frame is lost or written twice.
///
/// After any error, further writes return [`RecordError::Stopped`]: call
/// [`Recorder::abandon`] to keep what was written, and carry on without a recorder.
///
/// All I/O is blocking file I/O with a 64 KiB buffer: writes are cheap, while
/// [`Recorder::finish`] and a rollover end with an `fsync`.
pub struct Recorder {
    dir: PathBuf,
    stream: String,
    epoch: u64,
    max_size: u64,
    hard_cap: u64,
    create: Box<CreateFn>,
    part: Part,
    video_config: Option<Vec<u8>>,
    audio_config: Option<Vec<u8>>,
    video_codec_id: Option<u8>,
    audio_codec_id: Option<u8>,
    /// Picture size and frame rate from the latest AVC decoder configuration.
    video_facts: Option<SpsInfo>,
    saw_video: bool,
    saw_audio: bool,
    health: Health,
    /// Reused tag encoding buffer.
    scratch: Vec<u8>,
}

enum Health {
    Ok,
    /// A write into a fresh part failed right after a rollover; the write returned the
    /// finished part and this error is reported by the next call.
    Deferred(RecordError),
    /// An error was reported; only `abandon` (or `finish`, which salvages) makes sense now.
    Failed(io::Error),
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("stream", &self.stream)
            .field("part", &self.part.path)
            .field("bytes", &self.part.len)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts a recording of `stream` in `dir`, named after `started` (the publish start) as
    /// `NAME-EPOCH.flv`, or the next free `NAME-EPOCH-N.flv` if that name is taken. The file is
    /// created at once (so the name is reserved); the FLV header and metadata follow with the
    /// first frame. A part rolls over on the first keyframe once it holds `max_size_bytes`.
    pub fn create(
        dir: &Path,
        stream: &str,
        started: SystemTime,
        max_size_bytes: u64,
    ) -> Result<Recorder, RecordError> {
        Self::create_with(
            dir,
            stream,
            started,
            max_size_bytes,
            Box::new(file::create_new),
        )
    }

    /// [`Recorder::create`] with the way files are created given (tests use a disk that fills up).
    pub(crate) fn create_with(
        dir: &Path,
        stream: &str,
        started: SystemTime,
        max_size_bytes: u64,
        create: Box<CreateFn>,
    ) -> Result<Recorder, RecordError> {
        names::check_stream_name(stream)?;
        let epoch = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claimed = names::claim(dir, stream, epoch, 0, &*create)?;
        Ok(Recorder {
            dir: dir.to_owned(),
            stream: stream.to_owned(),
            epoch,
            max_size: max_size_bytes,
            hard_cap: max_size_bytes.saturating_add(max_size_bytes.max(MIN_KEYFRAME_WAIT_BYTES)),
            create,
            part: Part::new(claimed),
            video_config: None,
            audio_config: None,
            video_codec_id: None,
            audio_codec_id: None,
            video_facts: None,
            saw_video: false,
            saw_audio: false,
            health: Health::Ok,
            scratch: Vec::with_capacity(BUFFER_BYTES),
        })
    }

    /// The file currently written.
    /// True once the current part is past the size limit: the next keyframe (or audio frame
    /// without video) rolls over, which ends with an `fsync` of the finished part.
    pub fn rollover_due(&self) -> bool {
        self.part.len >= self.max_size
    }

    pub fn path(&self) -> &Path {
        &self.part.path
    }

    /// Records a video message body (`ts_ms`: its RTMP timestamp). Returns the previous part
    /// when this keyframe started a new one.
    pub fn write_video(
        &mut self,
        ts_ms: u32,
        body: &[u8],
    ) -> Result<Option<FinishedRecording>, RecordError> {
        self.check_health()?;
        self.saw_video = true;
        let tag = VideoTag::parse(body).ok();
        if let Some(&first) = body.first()
            && first & 0x80 == 0
        {
            self.video_codec_id = Some(first & 0x0f);
        }
        match tag.map(|t| t.packet_type) {
            Some(VideoPacketType::SequenceHeader) => {
                self.video_config = Some(body.to_vec());
                // Only for the metadata: a configuration that does not parse is recorded anyway.
                self.video_facts = tag
                    .filter(|t| t.codec == VideoCodec::Avc)
                    .and_then(|t| AvcConfig::parse(t.payload).ok())
                    .and_then(|config| config.sps_info().ok());
                self.write_config(TagKind::Video, ts_ms, body)
            }
            packet => {
                let keyframe = tag.is_some_and(|t| t.is_keyframe());
                let timed = (packet == Some(VideoPacketType::Nalu)).then_some(TrackKind::Video);
                self.write_frame(TagKind::Video, ts_ms, body, keyframe, timed)
            }
        }
    }

    /// Records an audio message body. Returns the previous part when this frame started a new
    /// one (only for streams without video).
    pub fn write_audio(
        &mut self,
        ts_ms: u32,
        body: &[u8],
    ) -> Result<Option<FinishedRecording>, RecordError> {
        self.check_health()?;
        self.saw_audio = true;
        let tag = AudioTag::parse(body).ok();
        if let Some(&first) = body.first()
            && first >> 4 != 9
        {
            self.audio_codec_id = Some(first >> 4);
        }
        match tag.map(|t| t.packet_type) {
            Some(AacPacketType::SequenceHeader) => {
                self.audio_config = Some(body.to_vec());
                self.write_config(TagKind::Audio, ts_ms, body)
            }
            packet => {
                let boundary = !self.saw_video;
                let timed = (packet == Some(AacPacketType::Raw)).then_some(TrackKind::Audio);
                self.write_frame(TagKind::Audio, ts_ms, body, boundary, timed)
            }
        }
    }

    /// Finalises the current part: flushes, writes the real `duration` and `filesize` into its
    /// metadata and syncs it to disk.
    ///
    /// Errors: [`RecordError::Empty`] when no frame was ever written (the empty file is
    /// removed); [`RecordError::Finalise`] when the disk failed, carrying whatever could be
    /// kept (see [`RecordError::into_salvaged`]).
    pub fn finish(mut self) -> Result<FinishedRecording, RecordError> {
        let source = match std::mem::replace(&mut self.health, Health::Ok) {
            Health::Ok => None,
            Health::Deferred(e) => Some(io::Error::other(e.to_string())),
            Health::Failed(e) => Some(e),
        };
        let path = self.part.path.clone();
        if !self.part.started() {
            self.part.discard();
            return match source {
                Some(source) => Err(RecordError::Finalise {
                    path,
                    source,
                    salvaged: None,
                }),
                None => Err(RecordError::Empty { path }),
            };
        }
        let source = match source {
            Some(source) => source,
            None => match self.part.finalise(&self.stream) {
                Ok(done) => return Ok(done),
                Err(source) => source,
            },
        };
        let salvaged = self.part.salvage(&self.stream).map(Box::new);
        Err(RecordError::Finalise {
            path,
            source,
            salvaged,
        })
    }

    /// Gives up after an error: keeps what reached the disk, cut at the last complete tag,
    /// with its metadata patched, and returns it for upload. `None` (and the file removed)
    /// when no frame made it to disk. Never fails; problems are logged, and a file that could
    /// not be repaired stays in the recording folder for [`super::recover`] at the next start.
    pub fn abandon(self) -> Option<FinishedRecording> {
        self.part.salvage(&self.stream)
    }

    fn check_health(&mut self) -> Result<(), RecordError> {
        match std::mem::replace(&mut self.health, Health::Ok) {
            Health::Ok => Ok(()),
            Health::Deferred(e) => {
                self.health = Health::Failed(io::Error::other(e.to_string()));
                Err(e)
            }
            Health::Failed(e) => {
                let path = self.part.path.clone();
                self.health = Health::Failed(e);
                Err(RecordError::Stopped { path })
            }
        }
    }

    /// Turns a write error into the recorder's failed state and the error to report.
    fn fail(&mut self, error: RecordError) -> RecordError {
        let copy = match &error {
            RecordError::Write { source, .. } | RecordError::Create { source, .. } => {
                io::Error::new(source.kind(), source.to_string())
            }
            other => io::Error::other(other.to_string()),
        };
        self.health = Health::Failed(copy);
        error
    }

    /// A sequence header: remembered for later parts, and written in place if the part has
    /// begun (otherwise it goes into the part's preamble).
    fn write_config(
        &mut self,
        kind: TagKind,
        ts_ms: u32,
        body: &[u8],
    ) -> Result<Option<FinishedRecording>, RecordError> {
        if self.part.started() {
            let ts = self.part.relative(ts_ms);
            self.part
                .write_tag(&mut self.scratch, kind, ts, body, None)
                .map_err(|e| self.fail(e))?;
        }
        Ok(None)
    }

    /// A coded frame (or anything not a sequence header). `boundary`: a new part may start
    /// here. `timed`: the frame counts towards the playing time.
    fn write_frame(
        &mut self,
        kind: TagKind,
        ts_ms: u32,
        body: &[u8],
        boundary: bool,
        timed: Option<TrackKind>,
    ) -> Result<Option<FinishedRecording>, RecordError> {
        let mut finished = None;
        if self.part.started() {
            let full = self.part.len >= self.max_size && boundary;
            let overgrown = self.part.len >= self.hard_cap;
            if full || overgrown {
                if !full {
                    warn!(
                        file = %self.part.path.display(),
                        bytes = self.part.len,
                        "No keyframe arrived long after the recording part was full; starting the next part without one."
                    );
                }
                finished = Some(self.roll_over().map_err(|e| self.fail(e))?);
            }
        }
        let written = self.start_part_if_needed(ts_ms).and_then(|()| {
            let ts = self.part.relative(ts_ms);
            self.part
                .write_tag(&mut self.scratch, kind, ts, body, timed)
        });
        match written {
            Ok(()) => Ok(finished),
            Err(e) if finished.is_some() => {
                // The finished part must reach the caller; the error follows on the next call.
                self.health = Health::Deferred(e);
                Ok(finished)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Opens the next part, then finalises the current one and returns it. On failure the
    /// current part stays current (so `abandon` keeps it) and no new file is left behind.
    fn roll_over(&mut self) -> Result<FinishedRecording, RecordError> {
        let claimed = names::claim(
            &self.dir,
            &self.stream,
            self.epoch,
            self.part.suffix + 1,
            &*self.create,
        )?;
        let next = Part::new(claimed);
        if let Err(source) = self.part.finalise(&self.stream) {
            next.discard();
            return Err(RecordError::Write {
                path: self.part.path.clone(),
                source,
            });
        }
        let done = std::mem::replace(&mut self.part, next);
        Ok(done.into_finished(&self.stream))
    }

    /// Writes the FLV header, `onMetaData` and the known sequence headers when the part has
    /// none yet; `ts_ms` (the first frame's timestamp) becomes the part's time zero.
    fn start_part_if_needed(&mut self, ts_ms: u32) -> Result<(), RecordError> {
        if self.part.started() {
            return Ok(());
        }
        let has_video = self.saw_video || self.video_config.is_some();
        let has_audio = self.saw_audio || self.audio_config.is_some();
        let mut fields: Vec<(&str, f64)> = vec![("duration", 0.0), ("filesize", 0.0)];
        if let Some(id) = self.video_codec_id.filter(|_| has_video) {
            fields.push(("videocodecid", f64::from(id)));
        }
        if let Some(facts) = self.video_facts.as_ref().filter(|_| has_video) {
            fields.push(("width", f64::from(facts.width)));
            fields.push(("height", f64::from(facts.height)));
            if let Some(fps) = facts.frame_rate {
                fields.push(("framerate", fps));
            }
        }
        if let Some(id) = self.audio_codec_id.filter(|_| has_audio) {
            fields.push(("audiocodecid", f64::from(id)));
        }
        self.part.begin(
            ts_ms,
            &flv::file_header(has_audio, has_video),
            &fields,
            [
                self.video_config.as_deref().map(|c| (TagKind::Video, c)),
                self.audio_config.as_deref().map(|c| (TagKind::Audio, c)),
            ],
            &mut self.scratch,
        )
    }
}

/// Where the patchable metadata values sit in a part file.
#[derive(Debug, Clone, Copy)]
struct Slots {
    duration: u64,
    filesize: u64,
}

/// One recording file being written.
struct Part {
    path: PathBuf,
    file_name: String,
    suffix: u32,
    out: BufWriter<Counted>,
    /// Bytes handed to `out`, always a whole number of tags: the file's length once flushed.
    len: u64,
    /// Set once the preamble (header, metadata, sequence headers) has been handed over.
    slots: Option<Slots>,
    /// RTMP timestamp of the part's first frame: time zero of the part.
    base_ts: u32,
    timeline: Timeline,
    /// Ends of tags handed to `out` but maybe still in its buffer, each with the timeline up to
    /// that tag. Bounded by the buffer size.
    unsettled: VecDeque<(u64, Timeline)>,
    /// The last tag end known to be in the file, and the timeline up to it.
    settled: Option<(u64, Timeline)>,
}

impl Part {
    fn new(claimed: names::Claimed<Box<dyn file::RecordFile>>) -> Self {
        Part {
            path: claimed.path,
            file_name: claimed.file_name,
            suffix: claimed.suffix,
            out: BufWriter::with_capacity(BUFFER_BYTES, Counted::new(claimed.file)),
            len: 0,
            slots: None,
            base_ts: 0,
            timeline: Timeline::default(),
            unsettled: VecDeque::new(),
            settled: None,
        }
    }

    fn started(&self) -> bool {
        self.slots.is_some()
    }

    /// `ts_ms` relative to the part's time zero. A frame stamped slightly before it (audio
    /// arriving just after the keyframe that opened the part) is clamped to zero; RTMP's
    /// 32-bit wrap-around is handled by wrapping arithmetic.
    fn relative(&self, ts_ms: u32) -> u32 {
        u32::try_from(ts_ms.wrapping_sub(self.base_ts) as i32).unwrap_or(0)
    }

    fn begin(
        &mut self,
        base_ts: u32,
        header: &[u8],
        fields: &[(&str, f64)],
        configs: [Option<(TagKind, &[u8])>; 2],
        scratch: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let meta =
            flv::encode_metadata(fields).map_err(|e| self.write_error(io::Error::other(e)))?;
        let (Some(duration), Some(filesize)) = (meta.duration_offset(), meta.filesize_offset())
        else {
            let missing = io::Error::other("onMetaData was encoded without duration or filesize");
            return Err(self.write_error(missing));
        };
        let at = header.len() as u64;
        self.base_ts = base_ts;
        self.slots = Some(Slots {
            duration: at + duration as u64,
            filesize: at + filesize as u64,
        });
        self.write_bytes(header)?;
        self.write_bytes(&meta.tag)?;
        for (kind, config) in configs.into_iter().flatten() {
            self.write_tag(scratch, kind, 0, config, None)?;
        }
        Ok(())
    }

    /// Hands one whole tag to the writer and notes its end.
    fn write_tag(
        &mut self,
        scratch: &mut Vec<u8>,
        kind: TagKind,
        ts_ms: u32,
        body: &[u8],
        timed: Option<TrackKind>,
    ) -> Result<(), RecordError> {
        scratch.clear();
        if let Err(e) = flv::write_tag(scratch, kind, ts_ms, body) {
            // Cannot happen with RTMP input (message lengths are 24-bit too); skip, don't stop.
            warn!(file = %self.path.display(), error = %e, "Skipped a media tag too large for FLV.");
            return Ok(());
        }
        self.write_bytes(scratch)?;
        if let Some(track) = timed {
            self.timeline.note(track, ts_ms);
        }
        self.unsettled.push_back((self.len, self.timeline));
        self.settle();
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.out.write_all(bytes).map_err(|e| self.write_error(e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn write_error(&self, source: io::Error) -> RecordError {
        RecordError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Moves tag ends the file already holds from `unsettled` to `settled`.
    fn settle(&mut self) {
        let accepted = self.out.get_ref().accepted();
        while let Some(&(end, timeline)) = self.unsettled.front() {
            if end > accepted {
                break;
            }
            self.settled = Some((end, timeline));
            self.unsettled.pop_front();
        }
    }

    /// Flushes, patches `duration` and `filesize`, syncs. The part stays usable for salvage if
    /// this fails.
    fn finalise(&mut self, stream: &str) -> io::Result<FinishedRecording> {
        self.out.flush()?;
        self.settle();
        let file = self.out.get_mut();
        if let Some(slots) = self.slots {
            file.patch_f64(slots.duration, self.timeline.duration().as_secs_f64())?;
            file.patch_f64(slots.filesize, self.len as f64)?;
        }
        file.sync_all()?;
        Ok(self.finished(stream, self.timeline, self.len))
    }

    fn finished(&self, stream: &str, timeline: Timeline, size: u64) -> FinishedRecording {
        FinishedRecording {
            path: self.path.clone(),
            file_name: self.file_name.clone(),
            stream: stream.to_owned(),
            duration: timeline.duration(),
            size,
        }
    }

    /// After a successful [`Part::finalise`].
    fn into_finished(self, stream: &str) -> FinishedRecording {
        self.finished(stream, self.timeline, self.len)
    }

    /// Removes a part file that holds nothing worth keeping.
    fn discard(self) {
        let (file, _) = self.out.into_parts();
        drop(file);
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(file = %self.path.display(), error = %e, "Could not remove an empty recording file.");
        }
    }

    /// Keeps what reached the disk: cut at the last complete tag, metadata patched, synced.
    fn salvage(mut self, stream: &str) -> Option<FinishedRecording> {
        // Whatever complete tags the disk still takes are worth having; errors are expected.
        let _ = self.out.flush();
        self.settle();
        let usable = self.settled.filter(|(_, timeline)| timeline.has_frames());
        let Some((end, timeline)) = usable else {
            self.discard();
            return None;
        };
        let path = self.path.clone();
        let slots = self.slots;
        let finished = self.finished(stream, timeline, end);
        // Never flush again: the buffer may hold the torn remainder of a tag.
        let (mut file, _) = self.out.into_parts();
        let mut size = file.accepted();
        if size > end {
            match file.truncate(end) {
                Ok(()) => size = end,
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "Could not cut the recording at its last complete tag.")
                }
            }
        }
        if let Some(slots) = slots.filter(|s| s.duration.max(s.filesize) + 8 <= end) {
            let patched = file
                .patch_f64(slots.duration, timeline.duration().as_secs_f64())
                .and_then(|()| file.patch_f64(slots.filesize, size as f64));
            if let Err(e) = patched {
                warn!(file = %path.display(), error = %e, "Could not write the duration into the recording's metadata.");
            }
        }
        if let Err(e) = file.sync_all() {
            error!(file = %path.display(), error = %e, "Could not sync the salvaged recording to disk.");
        }
        Some(FinishedRecording { size, ..finished })
    }
}
