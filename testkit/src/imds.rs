//! A fake EC2 instance metadata service (IMDSv2) on loopback, for the worker's spot notices
//! and its instance id.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The token the fake metadata service hands out.
pub const IMDS_TOKEN: &str = "fake-imds-token-5c1e";
pub const INSTANCE_ACTION: &str = "/latest/meta-data/spot/instance-action";
pub const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";
pub const NOTICE_TIME: &str = "2026-11-21T12:34:56Z";
pub const INSTANCE_ID: &str = "/latest/meta-data/instance-id";

/// One request the fake metadata service answered.
#[derive(Debug, Clone)]
pub struct ImdsRequest {
    pub method: String,
    pub path: String,
    /// `X-aws-ec2-metadata-token`.
    pub token: Option<String>,
    /// `X-aws-ec2-metadata-token-ttl-seconds`.
    pub ttl: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct ImdsState {
    instance_id: Mutex<Option<String>>,
    interruption: AtomicBool,
    rebalance: AtomicBool,
    stop: AtomicBool,
    requests: Mutex<Vec<ImdsRequest>>,
}

/// A fake EC2 instance metadata service (IMDSv2) on loopback: a session token for a PUT with a
/// TTL header, 401 for a GET without that token, and 404 for the spot notices until the test
/// raises them.
pub struct FakeImds {
    pub addr: SocketAddr,
    state: Arc<ImdsState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeImds {
    pub fn start() -> FakeImds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ImdsState::default());
        let thread = {
            let state = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if state.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        // A client that hangs up mid-request is not the test's concern.
                        let _ = answer_imds(stream, &state);
                    }
                }
            })
        };
        FakeImds {
            addr,
            state,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `instance-id` (404 until set).
    pub fn set_instance_id(&self, id: &str) {
        *self.state.instance_id.lock().unwrap() = Some(id.to_owned());
    }

    pub fn raise_interruption(&self) {
        self.state.interruption.store(true, Ordering::SeqCst);
    }

    pub fn raise_rebalance(&self) {
        self.state.rebalance.store(true, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// `[worker.spot]` pointing at this service, polled every second.
    pub fn spot_config(&self) -> String {
        format!(
            "[worker.spot]\nenabled = true\nmetadata_url = \"{}\"\npoll_secs = 1\n",
            self.url()
        )
    }

    /// Checks the IMDSv2 handshake: a token fetched with a TTL, every GET carrying it.
    pub fn assert_token_used(&self) {
        let requests = self.requests();
        assert!(
            requests.iter().any(|r| r.method == "PUT"
                && r.path == "/latest/api/token"
                && r.ttl.as_deref().is_some_and(|t| t.parse::<u64>().is_ok())
                && r.status == 200),
            "no token fetched with a TTL: {requests:#?}"
        );
        let gets: Vec<&ImdsRequest> = requests.iter().filter(|r| r.method == "GET").collect();
        assert!(!gets.is_empty(), "no metadata polled: {requests:#?}");
        for get in gets {
            assert_eq!(
                get.token.as_deref(),
                Some(IMDS_TOKEN),
                "GET without the session token: {get:?}"
            );
        }
    }

    /// GETs of `path` answered with `status`.
    pub fn count(&self, path: &str, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path && r.status == status)
            .count()
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer_imds(mut stream: TcpStream, state: &ImdsState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut token, mut ttl) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "x-aws-ec2-metadata-token" => token = Some(value.trim().to_owned()),
                "x-aws-ec2-metadata-token-ttl-seconds" => ttl = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let notice = format!(r#"{{"action":"terminate","time":"{NOTICE_TIME}"}}"#);
    let rebalance = format!(r#"{{"noticeTime":"{NOTICE_TIME}"}}"#);
    let (status, body) = match (method.as_str(), path.as_str()) {
        ("PUT", "/latest/api/token") if ttl.is_some() => (200, IMDS_TOKEN.to_owned()),
        ("PUT", _) => (400, String::new()),
        ("GET", _) if token.as_deref() != Some(IMDS_TOKEN) => (401, String::new()),
        ("GET", INSTANCE_ACTION) if state.interruption.load(Ordering::SeqCst) => (200, notice),
        ("GET", REBALANCE) if state.rebalance.load(Ordering::SeqCst) => (200, rebalance),
        ("GET", INSTANCE_ID) => match state.instance_id.lock().unwrap().clone() {
            Some(id) => (200, id),
            None => (404, "Not Found".to_owned()),
        },
        _ => (404, "Not Found".to_owned()),
    };
    state.requests.lock().unwrap().push(ImdsRequest {
        method,
        path,
        token,
        ttl,
        status,
    });
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
