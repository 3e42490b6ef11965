//! Where the policy's [`History`] is kept between runs: a cron job and a Lambda remember
//! nothing, so the stabilisation window lives in a small JSON document in a file or in S3.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use crate::config::StateLocation;
use crate::policy::History;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the scaler state {location}: {message}")]
    Read { location: String, message: String },
    #[error("cannot write the scaler state {location}: {message}")]
    Write { location: String, message: String },
}

/// What [`StateStore::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The history of the last run.
    Found(History),
    /// No state yet: the first run.
    Missing,
    /// A document that does not parse (edited by hand, truncated): replaced by the next save.
    /// The policy then treats the stabilisation window as unseen, which only delays a
    /// scale-in.
    Unreadable(String),
}

impl Loaded {
    pub fn history(&self) -> History {
        match self {
            Loaded::Found(history) => history.clone(),
            Loaded::Missing | Loaded::Unreadable(_) => History::default(),
        }
    }
}

pub enum StateStore {
    File(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        key: String,
    },
}

impl StateStore {
    /// `client` is only used for an `s3://` location.
    pub fn new(location: StateLocation, client: Option<aws_sdk_s3::Client>) -> StateStore {
        match (location, client) {
            (StateLocation::S3 { bucket, key }, Some(client)) => StateStore::S3 {
                client,
                bucket,
                key,
            },
            (StateLocation::S3 { .. }, None) => {
                panic!("an s3:// scaler state needs an S3 client")
            }
            (StateLocation::File(path), _) => StateStore::File(path),
        }
    }

    pub fn location(&self) -> String {
        match self {
            StateStore::File(path) => path.display().to_string(),
            StateStore::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    pub async fn load(&self) -> Result<Loaded, StateError> {
        let read_error = |message: String| StateError::Read {
            location: self.location(),
            message,
        };
        let bytes = match self {
            StateStore::File(path) => match tokio::fs::read(path).await {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Loaded::Missing);
                }
                Err(err) => return Err(read_error(err.to_string())),
            },
            StateStore::S3 {
                client,
                bucket,
                key,
            } => match client.get_object().bucket(bucket).key(key).send().await {
                Ok(out) => out
                    .body
                    .collect()
                    .await
                    .map_err(|err| read_error(err.to_string()))?
                    .to_vec(),
                Err(err) if is_no_such_key(&err) => return Ok(Loaded::Missing),
                Err(err) => return Err(read_error(DisplayErrorContext(&err).to_string())),
            },
        };
        Ok(match serde_json::from_slice::<History>(&bytes) {
            Ok(history) => Loaded::Found(history),
            Err(err) => Loaded::Unreadable(err.to_string()),
        })
    }

    pub async fn save(&self, history: &History) -> Result<(), StateError> {
        let body = serde_json::to_vec_pretty(history).expect("a History always serialises");
        let write_error = |message: String| StateError::Write {
            location: self.location(),
            message,
        };
        match self {
            StateStore::File(path) => write_atomically(path, &body)
                .await
                .map_err(|err| write_error(err.to_string())),
            StateStore::S3 {
                client,
                bucket,
                key,
            } => client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|err| write_error(DisplayErrorContext(&err).to_string())),
        }
    }
}

fn is_no_such_key<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(service) if service.err().code() == Some("NoSuchKey"))
}

/// Write to a temporary file beside `path`, then rename: a crash leaves the old state or the
/// new one, never half of one.
async fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, body).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_state_round_trips_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::File(dir.path().join("scaler/state.json"));
        assert_eq!(store.load().await.unwrap(), Loaded::Missing);
        let history = History {
            last_change: Some(60),
            recommendations: vec![(60, 3), (120, 2)],
            since: Some(0),
            last_run: Some(120),
            visible: Vec::new(),
        };
        store.save(&history).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Loaded::Found(history));

        std::fs::write(dir.path().join("scaler/state.json"), b"{\"last_change\": ").unwrap();
        let Loaded::Unreadable(reason) = store.load().await.unwrap() else {
            panic!("a truncated document must be reported unreadable");
        };
        assert!(reason.contains("EOF"), "{reason}");
    }

    #[tokio::test]
    async fn an_unreadable_location_is_an_error_not_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        std::fs::create_dir(dir.path().join("state.json")).unwrap();
        let store = StateStore::File(dir.path().join("state.json"));
        let err = store.load().await.unwrap_err();
        assert!(
            err.to_string().contains("cannot read the scaler state"),
            "{err}"
        );
    }
}
