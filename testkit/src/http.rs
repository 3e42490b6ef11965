//! Blocking HTTP helpers for tests (plain `#[test]` functions, no runtime needed).

use std::time::{Duration, Instant};

/// A response's status, headers and body.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

pub fn get(url: &str) -> Fetched {
    request(reqwest::Method::GET, url, None)
}

pub fn request(method: reqwest::Method, url: &str, bearer: Option<&str>) -> Fetched {
    let mut req = client().request(method.clone(), url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let response = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
    Fetched {
        status,
        headers,
        body,
    }
}

/// Polls `url` until `ready` holds for the response, or panics after `limit`.
pub fn wait_until(url: &str, limit: Duration, ready: impl Fn(&Fetched) -> bool) -> Fetched {
    let deadline = Instant::now() + limit;
    loop {
        let fetched = get(url);
        if ready(&fetched) {
            return fetched;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready after {limit:?}: {} {}",
            fetched.status,
            String::from_utf8_lossy(&fetched.body)
                .chars()
                .take(500)
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Value of one metric (first sample whose name matches exactly) from `/metrics` text.
pub fn metric(metrics_text: &str, name: &str) -> Option<f64> {
    metrics_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
}
