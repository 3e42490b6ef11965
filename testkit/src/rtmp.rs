//! A scriptable RTMP publisher for tests: the OBS command sequence (releaseStream, FCPublish,
//! createStream, publish), chunk-size changes, and media with any timestamps or bytes,
//! including the broken ones real encoders send.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
pub use rml_amf0::Amf0Value;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::time::RtmpTimestamp;

pub struct RawPublisher {
    socket: TcpStream,
    serializer: ChunkSerializer,
    deserializer: ChunkDeserializer,
    stream_id: u32,
    transaction: f64,
    /// Bytes that arrived after the handshake and were not processed yet.
    pending: Vec<u8>,
}

/// What the server answered to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Result(Vec<Amf0Value>),
    Error(String),
    Status {
        level: String,
        code: String,
        description: String,
    },
}

impl Reply {
    /// The server accepted the publish (`NetStream.Publish.Start`).
    pub fn is_started(&self) -> bool {
        matches!(self, Reply::Status { code, .. } if code == "NetStream.Publish.Start")
    }
}

impl RawPublisher {
    /// Connects to `live` and publishes `name` the way OBS does; returns the server's answer.
    pub fn publish(addr: SocketAddr, name: &str) -> anyhow::Result<(RawPublisher, Reply)> {
        let mut publisher = RawPublisher::connect(addr, "live")?;
        let reply = publisher.obs_publish(name)?;
        Ok((publisher, reply))
    }

    /// Publishes `name`, failing unless the server accepts.
    pub fn publish_started(addr: SocketAddr, name: &str) -> anyhow::Result<RawPublisher> {
        let (publisher, reply) = Self::publish(addr, name)?;
        if !reply.is_started() {
            bail!("publish of {name} refused: {reply:?}");
        }
        Ok(publisher)
    }

    /// Sends clip tags in order, timestamps shifted by `offset_ms` (clamped at 0).
    pub fn send_tags(&mut self, tags: &[crate::clip::Tag], offset_ms: i64) -> anyhow::Result<()> {
        for (kind, ts, body) in tags {
            let ts = (i64::from(*ts) + offset_ms).max(0) as u32;
            match kind {
                media::flv::TagKind::Video => self.send_video(ts, body)?,
                media::flv::TagKind::Audio => self.send_audio(ts, body)?,
                media::flv::TagKind::Script => {}
            }
        }
        Ok(())
    }

    /// TCP connect, RTMP handshake and `connect(app)`; fails if the server rejects it.
    pub fn connect(addr: SocketAddr, app: &str) -> anyhow::Result<RawPublisher> {
        let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        socket.set_nodelay(true)?;
        let mut handshake = Handshake::new(PeerType::Client);
        socket.write_all(&handshake.generate_outbound_p0_and_p1()?)?;
        let mut buf = [0u8; 8192];
        let pending = loop {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                bail!("server closed the connection during the handshake");
            }
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes)?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes)?;
                    break remaining_bytes;
                }
            }
        };
        let mut me = RawPublisher {
            socket,
            serializer: ChunkSerializer::new(),
            deserializer: ChunkDeserializer::new(),
            stream_id: 0,
            transaction: 1.0,
            pending,
        };
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String(app.to_string()));
        props.insert(
            "type".to_string(),
            Amf0Value::Utf8String("nonprivate".into()),
        );
        props.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String(format!("rtmp://{addr}/{app}")),
        );
        let tx = me.command("connect", Amf0Value::Object(props), vec![], 0)?;
        match me.wait_reply(tx)? {
            Reply::Result(_) => Ok(me),
            other => bail!("connect refused: {other:?}"),
        }
    }

    /// The OBS sequence: releaseStream, FCPublish, createStream, publish. Returns the
    /// server's answer to publish (`NetStream.Publish.Start` on success).
    pub fn obs_publish(&mut self, name: &str) -> anyhow::Result<Reply> {
        let name_arg = || vec![Amf0Value::Utf8String(name.to_string())];
        self.command("releaseStream", Amf0Value::Null, name_arg(), 0)?;
        self.command("FCPublish", Amf0Value::Null, name_arg(), 0)?;
        let tx = self.command("createStream", Amf0Value::Null, vec![], 0)?;
        let stream_id = match self.wait_reply(tx)? {
            Reply::Result(values) => values.iter().find_map(|v| match v {
                Amf0Value::Number(n) => Some(*n as u32),
                _ => None,
            }),
            other => bail!("createStream refused: {other:?}"),
        }
        .context("createStream result without a stream id")?;
        self.stream_id = stream_id;
        let args = vec![
            Amf0Value::Utf8String(name.to_string()),
            Amf0Value::Utf8String("live".into()),
        ];
        self.command("publish", Amf0Value::Null, args, stream_id)?;
        self.wait_status()
    }

    /// Tells the server our chunks are `size` bytes from now on.
    pub fn set_chunk_size(&mut self, size: u32) -> anyhow::Result<()> {
        let packet = self
            .serializer
            .set_max_chunk_size(size, RtmpTimestamp::new(0))?;
        self.socket.write_all(&packet.bytes)?;
        Ok(())
    }

    pub fn send_video(&mut self, timestamp_ms: u32, body: &[u8]) -> anyhow::Result<()> {
        self.send(
            RtmpMessage::VideoData {
                data: Bytes::copy_from_slice(body),
            },
            timestamp_ms,
        )
    }

    pub fn send_audio(&mut self, timestamp_ms: u32, body: &[u8]) -> anyhow::Result<()> {
        self.send(
            RtmpMessage::AudioData {
                data: Bytes::copy_from_slice(body),
            },
            timestamp_ms,
        )
    }

    /// The serialized chunks of a video message, for tests that send part of one and vanish.
    pub fn video_chunks(&mut self, timestamp_ms: u32, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let payload = RtmpMessage::VideoData {
            data: Bytes::copy_from_slice(body),
        }
        .into_message_payload(RtmpTimestamp::new(timestamp_ms), self.stream_id)?;
        Ok(self.serializer.serialize(&payload, false, false)?.bytes)
    }

    /// An AMF0 data message (`@setDataFrame`, `onMetaData`...) on the publishing stream.
    pub fn send_data(&mut self, values: Vec<Amf0Value>) -> anyhow::Result<()> {
        self.send(RtmpMessage::Amf0Data { values }, 0)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.socket.write_all(bytes)?;
        Ok(())
    }

    /// FCUnpublish and deleteStream, as OBS does when it stops.
    pub fn unpublish(&mut self, name: &str) -> anyhow::Result<()> {
        self.command(
            "FCUnpublish",
            Amf0Value::Null,
            vec![Amf0Value::Utf8String(name.to_string())],
            0,
        )?;
        self.command(
            "deleteStream",
            Amf0Value::Null,
            vec![Amf0Value::Number(self.stream_id as f64)],
            0,
        )?;
        Ok(())
    }

    /// True when the server has closed the connection (reads EOF or reset within `within`).
    pub fn is_closed_by_server(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let _ = self
                .socket
                .set_read_timeout(Some(Duration::from_millis(200)));
            match self.socket.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    pub fn into_socket(self) -> TcpStream {
        self.socket
    }

    fn send(&mut self, message: RtmpMessage, timestamp_ms: u32) -> anyhow::Result<()> {
        let payload =
            message.into_message_payload(RtmpTimestamp::new(timestamp_ms), self.stream_id)?;
        let packet = self.serializer.serialize(&payload, false, false)?;
        self.socket.write_all(&packet.bytes)?;
        Ok(())
    }

    fn command(
        &mut self,
        name: &str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> anyhow::Result<f64> {
        let tx = self.transaction;
        self.transaction += 1.0;
        let message = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: tx,
            command_object: object,
            additional_arguments: args,
        };
        let payload = message.into_message_payload(RtmpTimestamp::new(0), stream_id)?;
        let packet = self.serializer.serialize(&payload, true, false)?;
        self.socket.write_all(&packet.bytes)?;
        Ok(tx)
    }

    fn next_message(&mut self) -> anyhow::Result<RtmpMessage> {
        let mut buf = [0u8; 8192];
        loop {
            let input = std::mem::take(&mut self.pending);
            if let Some(payload) = self.deserializer.get_next_message(&input)? {
                let message = payload.to_rtmp_message()?;
                if let RtmpMessage::SetChunkSize { size } = message {
                    self.deserializer.set_max_chunk_size(size as usize)?;
                }
                return Ok(message);
            }
            let n = self
                .socket
                .read(&mut buf)
                .context("waiting for the server")?;
            if n == 0 {
                bail!("server closed the connection");
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    fn wait_reply(&mut self, tx: f64) -> anyhow::Result<Reply> {
        loop {
            if let RtmpMessage::Amf0Command {
                command_name,
                transaction_id,
                additional_arguments,
                ..
            } = self.next_message()?
            {
                match command_name.as_str() {
                    "_result" if transaction_id == tx => {
                        return Ok(Reply::Result(additional_arguments));
                    }
                    "_error" if transaction_id == tx => {
                        return Ok(Reply::Error(format!("{additional_arguments:?}")));
                    }
                    "onStatus" => return Ok(status(&additional_arguments)),
                    _ => {}
                }
            }
        }
    }

    fn wait_status(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let RtmpMessage::Amf0Command {
                command_name,
                additional_arguments,
                ..
            } = self.next_message()?
                && (command_name == "onStatus" || command_name == "_error")
            {
                return Ok(status(&additional_arguments));
            }
        }
    }
}

fn status(args: &[Amf0Value]) -> Reply {
    let field = |name: &str| {
        args.iter()
            .find_map(|v| match v {
                Amf0Value::Object(map) => map.get(name).cloned(),
                _ => None,
            })
            .and_then(|v| v.get_string())
            .unwrap_or_default()
    };
    Reply::Status {
        level: field("level"),
        code: field("code"),
        description: field("description"),
    }
}
