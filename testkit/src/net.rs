//! Loopback ports for servers started by tests.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1. Another process may take it before the
/// caller binds it; servers started on it report the bind error.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("nothing listening on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` distinct free loopback addresses: all are held open together while choosing, so the
/// kernel cannot hand out the same port twice.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr"))
        .collect()
}

/// `n` clients that connect to `addr` and vanish, in the three ways players do: close at
/// once, close halfway through sending `request`, or send all of `request` and close
/// without reading the answer. Eight threads, one connection each at a time, so the number
/// open at once stays small. Returns how many connected.
pub fn connect_and_vanish(addr: SocketAddr, n: usize, request: &[u8]) -> usize {
    use std::io::Write;
    let threads = 8;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut connected = 0;
                    for i in (t..n).step_by(threads) {
                        let Ok(mut stream) =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        else {
                            continue;
                        };
                        connected += 1;
                        let _ = match i % 3 {
                            0 => Ok(()),
                            1 => stream.write_all(&request[..request.len() / 2]),
                            _ => stream.write_all(request),
                        };
                        drop(stream);
                    }
                    connected
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a vanishing client thread panicked"))
            .sum()
    })
}
