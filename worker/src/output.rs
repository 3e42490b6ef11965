//! Publishing a finished ladder to the egress bucket under `STEM/`, master playlist last, so a
//! reader never finds a master playlist that points at missing files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use cloud::{ObjectStore, PutOptions, StoreError};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::transcode::{Ladder, MASTER_PLAYLIST};

/// Metadata key on the master playlist naming the eTag of the source it was made from.
pub const SOURCE_ETAG: &str = "source-etag";
/// Uploads in flight at once.
const PARALLEL_UPLOADS: usize = 4;

/// The egress prefix of a source: its key without the matched suffix (case kept: lower-casing,
/// as the reference scripts did, makes `A.flv` and `a.flv` overwrite each other).
pub fn stem_of(key: &str, suffixes: &[String]) -> String {
    let lower = key.to_ascii_lowercase();
    suffixes
        .iter()
        .filter(|s| lower.ends_with(&s.to_ascii_lowercase()))
        .map(|s| s.len())
        .max()
        .map_or_else(|| key.to_owned(), |len| key[..key.len() - len].to_owned())
}

/// Content-Type and Cache-Control of an output file. Segments never change for a given source;
/// playlists may be rewritten when the source is replaced, so they are cached briefly.
pub fn put_options(path: &str) -> PutOptions {
    let (content_type, cache_control) = if path.ends_with(".m3u8") {
        ("application/vnd.apple.mpegurl", "public, max-age=60")
    } else if path.ends_with(".ts") {
        ("video/mp2t", "public, max-age=86400")
    } else if path.ends_with(".json") {
        ("application/json", "public, max-age=60")
    } else {
        ("application/octet-stream", "public, max-age=60")
    };
    PutOptions {
        content_type: Some(content_type.to_owned()),
        cache_control: Some(cache_control.to_owned()),
        ..PutOptions::default()
    }
}

/// Normalises an eTag for comparison (S3 quotes it, events do not).
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// True when `STEM/master.m3u8` exists and was made from the source with `etag`.
pub async fn already_published(
    egress: &dyn ObjectStore,
    stem: &str,
    etag: &str,
) -> Result<bool, StoreError> {
    let master = format!("{stem}/{MASTER_PLAYLIST}");
    Ok(egress.head(&master).await?.is_some_and(|info| {
        info.metadata
            .get(SOURCE_ETAG)
            .is_some_and(|e| bare_etag(e) == bare_etag(etag) && !etag.is_empty())
    }))
}

/// Uploads every file of `ladder` from `out_dir` to `STEM/`, then the master playlist with the
/// source's eTag, then removes segments a previous, longer ladder left behind. A master
/// playlist made from another version of the source is deleted first, so no reader follows it
/// into files being replaced.
pub async fn publish(
    egress: Arc<dyn ObjectStore>,
    stem: &str,
    out_dir: &Path,
    ladder: &Ladder,
    source_etag: &str,
) -> Result<(), StoreError> {
    let master_key = format!("{stem}/{MASTER_PLAYLIST}");
    if let Some(old) = egress.head(&master_key).await? {
        let same = old
            .metadata
            .get(SOURCE_ETAG)
            .is_some_and(|e| bare_etag(e) == bare_etag(source_etag));
        if !same {
            info!(key = %master_key, "Replacing a ladder made from another version of the source; its master playlist goes first.");
            with_retry(|| egress.delete(&master_key), "DeleteObject").await?;
        }
    }

    let mut files: Vec<String> = Vec::new();
    for r in &ladder.renditions {
        files.extend(r.segments.iter().cloned());
        files.push(r.playlist.clone());
        files.extend(r.iframe_playlist.iter().cloned());
    }
    // Cubemap masters and the projection sidecar point into the renditions: after them.
    let extra: Vec<String> = ladder.extra_files.clone();
    let mut uploads = JoinSet::new();
    let mut pending = files.into_iter();
    let mut failure = None;
    loop {
        while uploads.len() < PARALLEL_UPLOADS {
            let Some(file) = pending.next() else { break };
            let egress = egress.clone();
            let key = format!("{stem}/{file}");
            let path = out_dir.join(&file);
            uploads.spawn(async move {
                let opts = put_options(&file);
                with_retry(|| egress.put_file(&key, &path, &opts), "PutObject").await
            });
        }
        match uploads.join_next().await {
            None => break,
            Some(Ok(Ok(_))) => {}
            Some(Ok(Err(err))) => {
                failure.get_or_insert(err);
                // Stop starting uploads; let the ones in flight end.
                pending = Vec::new().into_iter();
            }
            Some(Err(join)) => {
                failure.get_or_insert(StoreError::Rejected {
                    op: "PutObject",
                    key: stem.to_owned(),
                    message: format!("upload task failed: {join}"),
                });
                pending = Vec::new().into_iter();
            }
        }
    }
    if let Some(err) = failure {
        return Err(err);
    }
    for file in &extra {
        let key = format!("{stem}/{file}");
        let path = out_dir.join(file);
        let opts = put_options(file);
        with_retry(|| egress.put_file(&key, &path, &opts), "PutObject").await?;
    }

    let mut opts = put_options(MASTER_PLAYLIST);
    opts.metadata = BTreeMap::from([(SOURCE_ETAG.to_owned(), bare_etag(source_etag).to_owned())]);
    let master = bytes::Bytes::from(ladder.master.clone());
    with_retry(
        || egress.put_bytes(&master_key, master.clone(), &opts),
        "PutObject",
    )
    .await?;

    for r in &ladder.renditions {
        remove_stale_segments(egress.as_ref(), stem, &r.name, r.segments.len()).await;
    }
    // A source replaced by a flat one (or a cubemap layout dropped from the config) leaves
    // no cubemap master or sidecar behind that would send a player to the old projection.
    for file in crate::transcode::TOP_LEVEL_EXTRAS {
        if !ladder.extra_files.iter().any(|f| f == file) {
            let key = format!("{stem}/{file}");
            if let Ok(Some(_)) = egress.head(&key).await
                && let Err(err) = egress.delete(&key).await
            {
                warn!(%key, %err, "Cannot delete a file the previous ladder left.");
            }
        }
    }
    Ok(())
}

/// Deletes `STEM/NAME/NNNNN.ts` objects numbered `count` and above (left by an earlier, longer
/// ladder of this key). Only names the worker itself writes are touched: `STEM/NAME/` may also
/// hold another source's outputs (key `STEM/NAME/x.flv`).
async fn remove_stale_segments(egress: &dyn ObjectStore, stem: &str, name: &str, count: usize) {
    let prefix = format!("{stem}/{name}/");
    let listed = match egress.list(&prefix).await {
        Ok(listed) => listed,
        Err(err) => {
            warn!(%prefix, %err, "Cannot list old segments; leaving them.");
            return;
        }
    };
    for object in listed {
        let rest = &object.key[prefix.len()..];
        let stale = rest
            .strip_suffix(".ts")
            .filter(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= count);
        if stale && let Err(err) = egress.delete(&object.key).await {
            warn!(key = %object.key, %err, "Cannot delete a stale segment.");
        }
    }
}

/// A few quick retries for transient store errors within a job; longer outages fail the job,
/// whose message then comes back later.
async fn with_retry<T, F, Fut>(op: F, what: &'static str) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    op.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(4),
    )
    .when(StoreError::is_transient)
    .notify(|err, after| warn!(%err, ?after, op = what, "Object store call failed; retrying."))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suffixes() -> Vec<String> {
        vec![".flv".into(), ".mp4".into()]
    }

    #[test]
    fn stem_drops_the_suffix_and_keeps_the_rest() {
        assert_eq!(stem_of("live/Talk-1.FLV", &suffixes()), "live/Talk-1");
        assert_eq!(stem_of("a b+ü/x.mp4", &suffixes()), "a b+ü/x");
        assert_eq!(stem_of("no-suffix", &suffixes()), "no-suffix");
    }

    #[test]
    fn content_types_and_cache_control_follow_the_extension() {
        let playlist = put_options("720p/index.m3u8");
        assert_eq!(
            playlist.content_type.as_deref(),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(
            playlist.cache_control.as_deref(),
            Some("public, max-age=60")
        );
        let segment = put_options("720p/00001.ts");
        assert_eq!(segment.content_type.as_deref(), Some("video/mp2t"));
        assert_eq!(
            segment.cache_control.as_deref(),
            Some("public, max-age=86400")
        );
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert_eq!(bare_etag("\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
    }
}
