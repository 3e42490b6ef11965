//! The claim a job holds on its egress prefix `STEM/` while it makes and publishes a ladder.
//!
//! Duplicate deliveries of one event can reach two workers at the same moment. Two encodes of
//! one source differ (x264's rate control with frame threads and a VBV is not deterministic),
//! so two jobs publishing under the same names leave a mix of both: I-frame byte ranges of one
//! encode pointing into the other's segments, BANDWIDTH measured from other files. The claim
//! lets one of them publish while the other waits for that ladder and skips.
//!
//! The claim is the object `STEM/.claim`, naming its job and when it lapses; the job renews it
//! while it runs and deletes it when it ends, and a job that died leaves a claim that lapses
//! after its lease. S3 offers no compare-and-swap that every compatible store has, so two jobs
//! that find no claim at the same moment both write one and both transcode; before publishing,
//! each reads the claim again, and only the job named by the last write publishes (S3 reads
//! see the latest write).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloud::{ObjectStore, PutOptions, StoreError};

/// Metadata naming the job that holds the claim.
const JOB: &str = "job";
/// Metadata: when the claim lapses, in milliseconds since the Unix epoch.
const LAPSES_AT: &str = "lapses-at-ms";

/// The key of the claim on `stem`.
pub fn key(stem: &str) -> String {
    format!("{stem}/.claim")
}

/// Who holds the claim on a stem, as one job sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// No claim, or one that lapsed.
    Nobody,
    /// The job asking.
    Us,
    /// Another job, which renewed it within its lease.
    Other,
}

/// Who holds the claim on `stem`, as `job` sees it.
pub async fn holder(egress: &dyn ObjectStore, stem: &str, job: &str) -> Result<Holder, StoreError> {
    let Some(claim) = egress.head(&key(stem)).await? else {
        return Ok(Holder::Nobody);
    };
    let lapses_at = claim
        .metadata
        .get(LAPSES_AT)
        .and_then(|v| v.parse::<u128>().ok())
        .unwrap_or(0);
    Ok(if lapses_at <= now_ms() {
        Holder::Nobody
    } else if claim.metadata.get(JOB).is_some_and(|j| j == job) {
        Holder::Us
    } else {
        Holder::Other
    })
}

/// Writes (or renews) `job`'s claim on `stem`, valid for `lease` from now.
pub async fn write(
    egress: &dyn ObjectStore,
    stem: &str,
    job: &str,
    lease: Duration,
) -> Result<(), StoreError> {
    let lapses_at = now_ms() + lease.as_millis();
    let opts = PutOptions {
        metadata: BTreeMap::from([
            (JOB.to_owned(), job.to_owned()),
            (LAPSES_AT.to_owned(), lapses_at.to_string()),
        ]),
        ..PutOptions::default()
    };
    egress
        .put_bytes(&key(stem), bytes::Bytes::new(), &opts)
        .await
        .map(|_| ())
}

/// Deletes `job`'s claim on `stem`; another job's claim stays.
pub async fn release(egress: &dyn ObjectStore, stem: &str, job: &str) -> Result<(), StoreError> {
    if holder(egress, stem, job).await? == Holder::Us {
        egress.delete(&key(stem)).await?;
    }
    Ok(())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_writer_holds_the_claim_until_it_lapses_or_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let egress = cloud::LocalStore::new(dir.path(), "egress");
        let lease = Duration::from_secs(60);
        assert_eq!(holder(&egress, "a/b", "one").await.unwrap(), Holder::Nobody);
        write(&egress, "a/b", "one", lease).await.unwrap();
        write(&egress, "a/b", "two", lease).await.unwrap();
        assert_eq!(holder(&egress, "a/b", "two").await.unwrap(), Holder::Us);
        assert_eq!(holder(&egress, "a/b", "one").await.unwrap(), Holder::Other);

        release(&egress, "a/b", "one").await.unwrap();
        assert_eq!(holder(&egress, "a/b", "two").await.unwrap(), Holder::Us);
        release(&egress, "a/b", "two").await.unwrap();
        assert_eq!(egress.head(&key("a/b")).await.unwrap(), None);

        write(&egress, "a/b", "one", Duration::ZERO).await.unwrap();
        assert_eq!(holder(&egress, "a/b", "two").await.unwrap(), Holder::Nobody);
        assert_eq!(holder(&egress, "a/b", "one").await.unwrap(), Holder::Nobody);
    }
}
