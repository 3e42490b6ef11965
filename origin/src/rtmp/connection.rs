//! One RTMP connection: handshake, the rml_rtmp server session, and the publish it carries.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Origin;
use crate::auth::{Decision, PublishRequest, split_stream_key, validate_stream_name};
use crate::config::HlsFormat;
use crate::publication::{MediaError, Publication};
use crate::streams::Packaging;

/// Largest read per syscall; RTMP chunks are reassembled by the session.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("client closed the connection during the handshake")]
    ClosedInHandshake,
    #[error("invalid RTMP handshake: {0}")]
    Handshake(String),
    #[error("RTMP protocol error: {0}")]
    Protocol(String),
    #[error("no audio or video for {0:?}; disconnecting idle publisher")]
    Idle(Duration),
    #[error("no publish within {0:?} of connecting")]
    NoPublish(Duration),
    #[error("client did not read our responses within {0:?}")]
    WriteStalled(Duration),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Media(#[from] MediaError),
}

pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    origin: &Origin,
    shutdown: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    let span = info_span!("rtmp", %peer);
    let mut conn = Connection {
        origin,
        peer,
        socket,
        publication: None,
        app: None,
        closing: None,
        last_media: Instant::now(),
        kick: CancellationToken::new(),
    };
    let result = conn.run(shutdown).instrument(span.clone()).await;
    if let Some(publication) = conn.publication.take() {
        publication.finish(origin).instrument(span.clone()).await;
    }
    let _enter = span.enter();
    match result {
        Ok(()) => debug!("RTMP connection closed."),
        // TCP health checks (load balancers, monitoring) connect and close without a word.
        Err(ConnError::ClosedInHandshake) => {
            debug!("RTMP client closed the connection during the handshake.")
        }
        Err(ConnError::Io(error)) if is_disconnect(&error) => {
            debug!(%error, "RTMP client disconnected.")
        }
        Err(error @ (ConnError::Refused(_) | ConnError::Media(_))) => {
            warn!(%error, "RTMP connection closed.")
        }
        Err(error) => info!(%error, "RTMP connection closed."),
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    )
}

struct Connection<'a> {
    origin: &'a Origin,
    peer: SocketAddr,
    socket: TcpStream,
    publication: Option<Publication>,
    app: Option<String>,
    /// Set when the connection must close once the responses already queued are sent (a
    /// refused connect or publish: the client gets its error status first).
    closing: Option<ConnError>,
    /// Last audio or video from the publisher: pings and acks do not keep a publish alive.
    last_media: Instant,
    /// Cancelled when the operator drops the stream; a token nobody cancels before a publish.
    kick: CancellationToken,
}

impl Connection<'_> {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), ConnError> {
        let config = &self.origin.config;
        let leftover = tokio::time::timeout(config.handshake_timeout, self.handshake())
            .await
            .map_err(|_| ConnError::HandshakeTimeout(config.handshake_timeout))??;

        let mut session_config = ServerSessionConfig::new();
        session_config.chunk_size = 4096;
        let (mut session, initial) =
            ServerSession::new(session_config).map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.handle_results(&mut session, initial).await?;
        if !leftover.is_empty() {
            self.handle_input(&mut session, &leftover).await?;
        }

        // Until it publishes, a client has the handshake timeout to connect and publish; a
        // publisher is idle when no audio or video arrives for the idle timeout.
        let connected_at = Instant::now();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let (deadline, limit) = if self.publication.is_some() {
                (
                    self.last_media + config.idle_timeout,
                    ConnError::Idle(config.idle_timeout),
                )
            } else {
                (
                    connected_at + config.handshake_timeout,
                    ConnError::NoPublish(config.handshake_timeout),
                )
            };
            let read = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.kick.cancelled() => return Err(ConnError::Refused("stream dropped by the operator".into())),
                read = tokio::time::timeout_at(deadline.into(), self.socket.read(&mut buf)) => read,
            };
            let n = read.map_err(|_| limit)??;
            if n == 0 {
                return Ok(());
            }
            self.handle_input(&mut session, &buf[..n]).await?;
        }
    }

    async fn handshake(&mut self) -> Result<Vec<u8>, ConnError> {
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = [0u8; 4096];
        loop {
            let n = self.socket.read(&mut buf).await?;
            if n == 0 {
                return Err(ConnError::ClosedInHandshake);
            }
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handshake.process_bytes(&buf[..n])
            }))
            .map_err(|_| {
                ConnError::Handshake("malformed handshake (the parser panicked)".into())
            })?;
            match step.map_err(|e| ConnError::Handshake(e.to_string()))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    async fn handle_input(
        &mut self,
        session: &mut ServerSession,
        bytes: &[u8],
    ) -> Result<(), ConnError> {
        if let Some(p) = &self.publication {
            p.stream
                .bytes_in
                .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.origin.metrics.bytes_in.inc_by(bytes.len() as u64);
        }
        // rml_rtmp panics on some malformed messages (a one-value @setDataFrame, a chunk
        // header that shrinks a message mid-way); a panic must cost this connection only.
        let results =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)))
                .map_err(|_| {
                    ConnError::Protocol(
                        "malformed RTMP message (the session parser panicked)".into(),
                    )
                })?
                .map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.handle_results(session, results).await
    }

    /// Sends responses in order and reacts to events. Events may produce more results
    /// (accepting a request), which are handled in turn.
    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), ConnError> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.write(&packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => {
                    // Packets must leave in the order the session serialised them (chunk
                    // headers are compressed against the previous one): responses to this
                    // event were serialised after everything already queued.
                    let more = self.handle_event(session, event).await?;
                    queue.extend(more);
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    debug!(type_id = payload.type_id, "Ignored an RTMP message type.");
                }
            }
        }
        match self.closing.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn handle_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, ConnError> {
        let protocol =
            |e: rml_rtmp::sessions::ServerSessionError| ConnError::Protocol(e.to_string());
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if self.origin.config.application(&app_name).is_none() {
                    self.closing = Some(ConnError::Refused(format!(
                        "connect to application {app_name:?} refused; publish to rtmp://HOST/APP/NAME with APP one of {:?}",
                        self.origin.config.application_names()
                    )));
                    return session
                        .reject_request(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        )
                        .map_err(protocol);
                }
                self.app = Some(app_name);
                session.accept_request(request_id).map_err(protocol)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => match self.start_publish(&app_name, &stream_key).await {
                Ok(publication) => {
                    self.kick = publication.stream.kick.clone();
                    self.publication = Some(publication);
                    self.last_media = Instant::now();
                    session.accept_request(request_id).map_err(protocol)
                }
                Err((code, reason)) => {
                    self.origin.metrics.publishes_rejected.inc();
                    self.closing = Some(ConnError::Refused(format!("publish refused: {reason}")));
                    session
                        .reject_request(request_id, code, &reason)
                        .map_err(protocol)
                }
            },
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.closing = Some(ConnError::Refused(
                    "RTMP play is not served; use HLS".into(),
                ));
                session
                    .reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "this origin serves HLS over HTTP, not RTMP play",
                    )
                    .map_err(protocol)
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.last_media = Instant::now();
                if let Some(p) = &mut self.publication {
                    p.on_video(self.origin, timestamp.value, data)?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.last_media = Instant::now();
                if let Some(p) = &mut self.publication {
                    p.on_audio(self.origin, timestamp.value, data)?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(publication) = self.publication.take() {
                    publication.finish(self.origin).await;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                debug!(encoder = ?metadata.encoder, width = ?metadata.video_width, "Stream metadata received.");
                Ok(Vec::new())
            }
            ServerSessionEvent::ClientChunkSizeChanged { new_chunk_size } => {
                debug!(new_chunk_size, "Client chunk size changed.");
                Ok(Vec::new())
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                // releaseStream, FCPublish and FCUnpublish from OBS-style clients need no answer.
                debug!(%command_name, "Ignored an AMF0 command.");
                Ok(Vec::new())
            }
            other => {
                debug!(event = ?other, "Ignored an RTMP session event.");
                Ok(Vec::new())
            }
        }
    }

    /// Validates, authorises and claims the stream name. Errors carry the NetStream status
    /// code and the reason sent to the client.
    async fn start_publish(
        &self,
        app: &str,
        raw_key: &str,
    ) -> Result<Publication, (&'static str, String)> {
        if self.publication.is_some() {
            return Err((
                "NetStream.Publish.BadName",
                "this connection already publishes a stream".into(),
            ));
        }
        let (name, args) = split_stream_key(raw_key);
        validate_stream_name(&name).map_err(|e| ("NetStream.Publish.BadName", e))?;
        let request = PublishRequest {
            app: app.to_string(),
            name,
            args,
            addr: self.peer,
        };
        let name = match self.origin.authorizer.authorize(&request).await {
            Decision::Allow => request.name,
            Decision::AllowAs(new_name) => {
                info!(from = %request.name, to = %new_name, "Publish renamed by on_publish.");
                new_name
            }
            Decision::Deny(reason) => {
                warn!(stream = %request.name, %reason, "Publish unauthorized.");
                return Err(("NetStream.Publish.Unauthorized", reason));
            }
        };
        let Some(application) = self.origin.config.application(app) else {
            return Err((
                "NetStream.Publish.BadName",
                format!("unknown application {app:?}"),
            ));
        };
        let packaging = match application.hls {
            HlsFormat::Ts => Packaging::Ts,
            HlsFormat::LlHls => Packaging::LlHls(media::llhls::WindowConfig {
                window: self.origin.config.hls.window,
                part_target: application.part_target,
                segment_target: application.segment_target,
            }),
        };
        let stream = self.origin.streams.claim(&name, packaging).map_err(|e| {
            warn!(stream = %name, "Publish refused: the stream is already live.");
            ("NetStream.Publish.BadName", e.to_string())
        })?;
        info!(stream = %name, app, hls = application.hls.label(), "Publish started.");
        Ok(Publication::new(self.origin, stream, &application))
    }

    /// Writes with a deadline so a client that stops reading cannot pin the task forever.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let limit = self.origin.config.idle_timeout;
        tokio::time::timeout(limit, self.socket.write_all(bytes))
            .await
            .map_err(|_| ConnError::WriteStalled(limit))??;
        Ok(())
    }
}
