//! Publishes the player (`player/index.html`, `player/player.js`, `player/hls.min.js`, from the
//! `web` crate) to the egress bucket, so every ladder there plays at
//! `player/index.html?url=../STEM/master.m3u8` from the same origin, CDN included. Each file
//! carries the MD5 of its content in metadata; a file already there with the same digest is
//! left alone, so a fleet of workers starting together rewrites nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use cloud::{ObjectStore, PutOptions, StoreError};
use md5::{Digest, Md5};

/// Where in the egress bucket the player lives.
pub const PREFIX: &str = "player/";
const DIGEST_KEY: &str = "player-md5";

/// Writes the player files that are missing or differ; returns how many were written.
pub async fn publish(egress: &dyn ObjectStore) -> Result<usize, StoreError> {
    let mut written = 0;
    for (name, body, content_type) in web::player_files() {
        let key = format!("{PREFIX}{name}");
        let digest = Md5::digest(body)
            .iter()
            .fold(String::with_capacity(32), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
        if let Some(existing) = egress.head(&key).await?
            && existing.metadata.get(DIGEST_KEY) == Some(&digest)
        {
            continue;
        }
        let options = PutOptions {
            content_type: Some(content_type.to_owned()),
            // A new release reaches viewers within minutes.
            cache_control: Some("public, max-age=300".to_owned()),
            metadata: BTreeMap::from([(DIGEST_KEY.to_owned(), digest)]),
        };
        egress
            .put_bytes(&key, Bytes::from_static(body), &options)
            .await?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_the_player_once_and_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = cloud::LocalStore::new(dir.path(), "egress");
        assert_eq!(publish(&store).await.unwrap(), 3);
        let page = std::fs::read_to_string(dir.path().join("player/index.html")).unwrap();
        assert_eq!(page, web::PLAYER_HTML);
        assert_eq!(
            publish(&store).await.unwrap(),
            0,
            "unchanged files are not rewritten"
        );
        // A stale copy (an older release) is replaced.
        store
            .put_bytes(
                "player/player.js",
                Bytes::from_static(b"old"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(publish(&store).await.unwrap(), 1);
        let script = std::fs::read_to_string(dir.path().join("player/player.js")).unwrap();
        assert_eq!(script, web::PLAYER_JS);
    }
}
