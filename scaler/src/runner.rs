//! One scaler run: read the queue's counters (GetQueueAttributes, not CloudWatch) and the
//! fleet, decide, change the fleet's target if needed, keep the history. The cron runner
//! (`--once`), the loop and the Lambda handler all call [`Scaler::run_once`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use cloud::{Queue, QueueError, SqsQueue};
use serde::Serialize;

use crate::config::{BackendKind, ScalerConfig, StateLocation};
use crate::fleet::{AutoScalingGroup, Fleet, FleetError, SpotFleet};
use crate::policy::{ConfigError, Decision, Observation, PolicyConfig, Secs, decide};
use crate::state::{Loaded, StateError, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the queue's counters: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What one run saw and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub fleet: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub target: u32,
    pub fulfilled: u32,
    pub busy: Option<u32>,
    pub desired: u32,
    pub reason: String,
    /// The fleet's target was changed.
    pub changed: bool,
    pub dry_run: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match (self.changed, self.dry_run) {
            (_, true) if self.desired != self.target => "would set",
            (true, _) => "set",
            _ => "keep",
        };
        let busy = self.busy.map(|b| format!(", {b} busy")).unwrap_or_default();
        write!(
            f,
            "{}: {} visible, {} in flight, {} delayed; target {}, {} running{busy}: {verb} {} ({})",
            self.fleet,
            self.visible,
            self.in_flight,
            self.delayed,
            self.target,
            self.fulfilled,
            self.desired,
            self.reason
        )
    }
}

pub struct Scaler {
    policy: PolicyConfig,
    queue: Arc<dyn Queue>,
    fleet: Box<dyn Fleet>,
    state: StateStore,
}

impl Scaler {
    pub fn new(
        policy: PolicyConfig,
        queue: Arc<dyn Queue>,
        fleet: Box<dyn Fleet>,
        state: StateStore,
    ) -> Scaler {
        Scaler {
            policy,
            queue,
            fleet,
            state,
        }
    }

    /// A scaler on AWS (or any compatible endpoint in `sdk`): the SQS queue at `queue_url`,
    /// the configured fleet, the history at `scaler.state` or else at `default_state`.
    pub fn from_config(
        config: &ScalerConfig,
        queue_url: &str,
        sdk: &SdkConfig,
        default_state: &Path,
    ) -> Result<Scaler, ScalerError> {
        config.validate()?;
        let (kind, id) = config.fleet()?;
        let fleet: Box<dyn Fleet> = match kind {
            BackendKind::SpotFleet => Box::new(SpotFleet::new(aws_sdk_ec2::Client::new(sdk), id)),
            BackendKind::AutoScalingGroup => Box::new(AutoScalingGroup::new(
                aws_sdk_autoscaling::Client::new(sdk),
                id,
            )),
        };
        let location = match &config.state {
            Some(text) => StateLocation::parse(text)?,
            None => StateLocation::File(default_state.to_owned()),
        };
        let s3 =
            matches!(location, StateLocation::S3 { .. }).then(|| cloud::aws::s3_client(sdk, false));
        let queue = Arc::new(SqsQueue::new(cloud::aws::sqs_client(sdk), queue_url));
        Ok(Scaler::new(
            config.policy.clone(),
            queue,
            fleet,
            StateStore::new(location, s3),
        ))
    }

    pub fn fleet(&self) -> String {
        self.fleet.describe()
    }

    /// One run at `now`. With `dry_run`, nothing changes: neither the fleet nor the stored
    /// history. Any failure to read the queue, the fleet or the history changes nothing.
    pub async fn run_once(&self, now: Secs, dry_run: bool) -> Result<Report, ScalerError> {
        let depth = self.queue.depth().await?;
        let capacity = self.fleet.capacity().await?;
        let loaded = self.state.load().await?;
        if let Loaded::Unreadable(reason) = &loaded {
            tracing::warn!(
                state = %self.state.location(),
                %reason,
                "the scaler state does not parse; starting a new history (no scale-in until \
                 a whole stabilisation window has been seen)"
            );
        }
        let observation = Observation {
            now,
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            target: capacity.target,
            fulfilled: capacity.fulfilled,
            busy: capacity.busy,
        };
        let Decision {
            desired,
            reason,
            history,
        } = decide(&self.policy, &observation, &loaded.history());
        // The fleet's own bounds win (an Auto Scaling group refuses a desired capacity
        // outside MinSize..=MaxSize).
        let bounded = desired
            .min(capacity.max.unwrap_or(u32::MAX))
            .max(capacity.min.unwrap_or(0));
        let reason = if bounded == desired {
            reason
        } else {
            format!("{reason}; {bounded} within the fleet's own limits")
        };
        let change = bounded != capacity.target;
        if !dry_run {
            if change {
                self.fleet.set_target(bounded).await?;
            }
            self.state.save(&history).await?;
        }
        Ok(Report {
            fleet: self.fleet.describe(),
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            target: capacity.target,
            fulfilled: capacity.fulfilled,
            busy: capacity.busy,
            desired: bounded,
            reason,
            changed: change && !dry_run,
            dry_run,
        })
    }

    /// Runs every `period` until `shutdown` resolves. A failed run is logged and the next one
    /// goes ahead: a queue or API that is down for a while must not stop the scaler.
    pub async fn run_loop(
        &self,
        period: Duration,
        dry_run: bool,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            match self.run_once(unix_now(), dry_run).await {
                Ok(report) if report.changed => tracing::info!(
                    desired = report.desired,
                    previous = report.target,
                    "{report}"
                ),
                Ok(report) => tracing::debug!("{report}"),
                Err(err) => tracing::error!(
                    fleet = %self.fleet.describe(),
                    "scaler run failed, nothing changed: {err}"
                ),
            }
        }
    }
}

pub fn unix_now() -> Secs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
