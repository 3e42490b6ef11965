//! Publish authorisation: stream keys from config and an nginx-rtmp compatible `on_publish`
//! HTTP callback. A publish is allowed when a configured key matches or the callback answers
//! 2xx; with both configured, either suffices for keys, and the callback has the last word
//! when no key matched.

use std::net::SocketAddr;

use crate::config::PublishConfig;

/// A publish request as the RTMP session saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub app: String,
    /// Stream name without the query string.
    pub name: String,
    /// Query arguments from `NAME?key=SECRET&...`, in order.
    pub args: Vec<(String, String)>,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The callback redirected (3xx) to another stream name.
    AllowAs(String),
    Deny(String),
}

/// Splits `NAME?a=b&c=d` into the name and its URL-decoded query arguments.
pub fn split_stream_key(raw: &str) -> (String, Vec<(String, String)>) {
    let (name, query) = raw.split_once('?').unwrap_or((raw, ""));
    let args = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (name.to_string(), args)
}

/// Stream names are limited to a charset that cannot form a path: ASCII letters, digits,
/// `_` and `-`, 1 to 64 characters. The name becomes a file name and a URL path segment.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "stream name must be 1 to 64 characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "stream name {name:?} contains {c:?}; allowed: A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Authorizer {
    config: PublishConfig,
    http: reqwest::Client,
}

impl Authorizer {
    pub fn new(config: PublishConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.on_publish_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with a timeout and no redirects always builds");
        Self { config, http }
    }

    /// Decides on a publish. Never fails: errors reaching the callback deny.
    pub async fn authorize(&self, req: &PublishRequest) -> Decision {
        if !self.config.is_configured() {
            return Decision::Allow;
        }
        let key = req
            .args
            .iter()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.as_str());
        if let Some(key) = key {
            let global = self.config.keys.iter().any(|k| constant_time_eq(k, key));
            let per_name = self
                .config
                .stream_keys
                .get(&req.name)
                .is_some_and(|k| constant_time_eq(k, key));
            if global || per_name {
                return Decision::Allow;
            }
        }
        match &self.config.on_publish {
            Some(url) => self.callback(url, req).await,
            None if key.is_some() => Decision::Deny("stream key does not match".into()),
            None => {
                Decision::Deny("no stream key given (add ?key=SECRET to the stream name)".into())
            }
        }
    }

    async fn callback(&self, url: &str, req: &PublishRequest) -> Decision {
        let mut form = vec![
            ("call".to_string(), "publish".to_string()),
            ("app".to_string(), req.app.clone()),
            ("name".to_string(), req.name.clone()),
            ("addr".to_string(), req.addr.ip().to_string()),
        ];
        // Query arguments cannot override the fields the origin vouches for.
        const RESERVED: [&str; 4] = ["call", "app", "name", "addr"];
        form.extend(
            req.args
                .iter()
                .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                .cloned(),
        );
        let response = match self.http.post(url).form(&form).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Decision::Deny(format!("on_publish callback {url} timed out"));
            }
            Err(e) => return Decision::Deny(format!("on_publish callback {url} failed: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            Decision::Allow
        } else if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            match location {
                Some(new_name) => match validate_stream_name(new_name) {
                    Ok(()) => Decision::AllowAs(new_name.to_string()),
                    Err(e) => {
                        Decision::Deny(format!("on_publish redirect to an invalid name: {e}"))
                    }
                },
                None => Decision::Deny(format!(
                    "on_publish callback answered {status} without Location"
                )),
            }
        } else {
            Decision::Deny(format!("on_publish callback answered {status}"))
        }
    }
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_split_from_the_stream_name_and_decoded() {
        let (name, args) = split_stream_key("cam1?key=s%3Dcret&x=a+b");
        assert_eq!(name, "cam1");
        assert_eq!(
            args,
            vec![("key".into(), "s=cret".into()), ("x".into(), "a b".into())]
        );
    }

    #[test]
    fn names_that_could_form_a_path_are_refused() {
        for bad in [
            "../etc",
            "a/b",
            "a\\b",
            "",
            ".hidden",
            "a b",
            "x.m3u8",
            &"a".repeat(65),
        ] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["cam1", "Stage_2", "talk-2026"] {
            assert!(validate_stream_name(good).is_ok(), "{good:?} was refused");
        }
    }

    fn request(name: &str, key: Option<&str>) -> PublishRequest {
        PublishRequest {
            app: "live".into(),
            name: name.into(),
            args: key
                .map(|k| vec![("key".to_string(), k.to_string())])
                .unwrap_or_default(),
            addr: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn keys_allow_their_streams_and_nothing_else() {
        let mut cfg = PublishConfig {
            keys: vec!["global".into()],
            ..Default::default()
        };
        cfg.stream_keys.insert("cam1".into(), "only-cam1".into());
        let auth = Authorizer::new(cfg);
        assert_eq!(
            auth.authorize(&request("any", Some("global"))).await,
            Decision::Allow
        );
        assert_eq!(
            auth.authorize(&request("cam1", Some("only-cam1"))).await,
            Decision::Allow
        );
        assert!(matches!(
            auth.authorize(&request("cam2", Some("only-cam1"))).await,
            Decision::Deny(_)
        ));
        assert!(matches!(
            auth.authorize(&request("cam1", Some("wrong"))).await,
            Decision::Deny(_)
        ));
        assert!(matches!(
            auth.authorize(&request("cam1", None)).await,
            Decision::Deny(_)
        ));
    }
}
