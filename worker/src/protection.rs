//! Scale-in protection in an EC2 Auto Scaling group: a worker protects its own instance while
//! it runs a job and lifts the protection when it is idle, so the group only ever removes idle
//! workers when the scaler lowers its desired capacity (the scaler counts protected instances
//! as busy and never goes below them).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_autoscaling::error::DisplayErrorContext;
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::spot::Metadata;

/// Sets this worker's protection from scale-in.
#[async_trait]
pub trait ScaleInProtection: Send + Sync + std::fmt::Debug {
    /// For log lines.
    fn describe(&self) -> String;
    async fn set(&self, protected: bool) -> anyhow::Result<()>;
}

/// This instance in its Auto Scaling group.
#[derive(Debug)]
pub struct AutoScalingProtection {
    client: aws_sdk_autoscaling::Client,
    instance_id: String,
    group: String,
}

impl AutoScalingProtection {
    pub fn new(
        client: aws_sdk_autoscaling::Client,
        instance_id: impl Into<String>,
        group: impl Into<String>,
    ) -> AutoScalingProtection {
        AutoScalingProtection {
            client,
            instance_id: instance_id.into(),
            group: group.into(),
        }
    }

    /// Finds this instance (`instance-id` from the metadata service at `metadata_url`) and its
    /// group (DescribeAutoScalingInstances). An instance outside any group is an error: the
    /// setting asks for something that cannot be done.
    pub async fn discover(
        client: aws_sdk_autoscaling::Client,
        metadata_url: &str,
    ) -> anyhow::Result<AutoScalingProtection> {
        let mut metadata = Metadata::new(metadata_url)?;
        let instance_id = metadata
            .get("/latest/meta-data/instance-id")
            .await
            .map_err(|err| {
                anyhow::anyhow!("cannot read the instance id from {metadata_url}: {err}")
            })?
            .ok_or_else(|| anyhow::anyhow!("{metadata_url} has no instance-id"))?;
        let instance_id = instance_id.trim().to_owned();
        let out = client
            .describe_auto_scaling_instances()
            .instance_ids(&instance_id)
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "DescribeAutoScalingInstances for {instance_id} failed: {}",
                    DisplayErrorContext(&err)
                )
            })?;
        let group = out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id.as_str()))
            .and_then(|i| i.auto_scaling_group_name())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "instance {instance_id} is not in an Auto Scaling group: turn \
                     worker.scale_in_protection off"
                )
            })?
            .to_owned();
        Ok(AutoScalingProtection::new(client, instance_id, group))
    }
}

#[async_trait]
impl ScaleInProtection for AutoScalingProtection {
    fn describe(&self) -> String {
        format!("{} in auto scaling group {}", self.instance_id, self.group)
    }

    async fn set(&self, protected: bool) -> anyhow::Result<()> {
        self.client
            .set_instance_protection()
            .auto_scaling_group_name(&self.group)
            .instance_ids(&self.instance_id)
            .protected_from_scale_in(protected)
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!("SetInstanceProtection: {}", DisplayErrorContext(&err))
            })?;
        Ok(())
    }
}

/// Keeps the protection in step with `busy` until `stop`, then lifts it: a worker that exits
/// (interrupted, drained) must not keep its instance from being scaled in.
pub(crate) async fn follow(
    protection: Arc<dyn ScaleInProtection>,
    mut busy: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let mut applied: Option<bool> = None;
    loop {
        let wanted = *busy.borrow_and_update();
        if applied != Some(wanted) {
            applied = apply(protection.as_ref(), wanted, &stop).await.or(applied);
        }
        tokio::select! {
            changed = busy.changed() => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
    if applied != Some(false) {
        // One last try on the way out, not cancellable by `stop`.
        apply(protection.as_ref(), false, &CancellationToken::new()).await;
    }
}

/// Sets the protection, retrying a failing API for a while; `None` when it did not succeed.
async fn apply(
    protection: &dyn ScaleInProtection,
    protected: bool,
    stop: &CancellationToken,
) -> Option<bool> {
    let attempt = || protection.set(protected);
    let retried = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(5),
        )
        .notify(|err, after| {
            warn!(%err, retry_in = ?after, "Scale-in protection not set yet; retrying.");
        });
    tokio::select! {
        result = retried => match result {
            Ok(()) => {
                info!(instance = %protection.describe(), protected, "Scale-in protection set.");
                Some(protected)
            }
            Err(err) => {
                warn!(instance = %protection.describe(), protected, %err, "Cannot set scale-in protection; trying again at the next change.");
                None
            }
        },
        () = stop.cancelled() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Records every call; fails the first `failures` of them.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<bool>>,
        failures: AtomicU32,
    }

    #[async_trait]
    impl ScaleInProtection for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        async fn set(&self, protected: bool) -> anyhow::Result<()> {
            self.calls.lock().unwrap().push(protected);
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                anyhow::bail!("throttled");
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn protection_follows_busy_retries_and_is_lifted_on_the_way_out() {
        let recorder = Arc::new(Recorder::default());
        let (tx, rx) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(recorder.clone(), rx, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The API fails once when the job starts.
        recorder.failures.store(1, Ordering::SeqCst);
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Idle at start (false), then busy: the first `true` failed and was retried.
        assert_eq!(*recorder.calls.lock().unwrap(), vec![false, true, true]);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(
            *recorder.calls.lock().unwrap(),
            vec![false, true, true, false]
        );
    }
}
