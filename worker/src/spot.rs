//! Spot interruption notices from the EC2 instance metadata service (IMDSv2): a session token
//! (PUT `/latest/api/token`), then `spot/instance-action` (404 while there is none) and the
//! rebalance recommendation, every few seconds.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::{RebalanceAction, SpotConfig};
use crate::consumer::Control;
use crate::status::{Phase, Status};

const TOKEN_TTL_SECS: u64 = 21_600;
const INSTANCE_ACTION: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `spot/instance-action` answered: the instance is about to be stopped or terminated.
    Interruption(String),
    /// A rebalance recommendation: interruption risk is elevated.
    Rebalance(String),
}

pub(crate) struct Metadata {
    client: reqwest::Client,
    base: String,
    token: Option<(String, Instant)>,
}

impl Metadata {
    /// A client of the metadata service at `base` (`http://169.254.169.254` on EC2).
    pub(crate) fn new(base: &str) -> Result<Metadata, reqwest::Error> {
        Ok(Metadata {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    async fn token(&mut self) -> Result<String, reqwest::Error> {
        if let Some((token, at)) = &self.token
            && at.elapsed() < Duration::from_secs(TOKEN_TTL_SECS - 60)
        {
            return Ok(token.clone());
        }
        let token = self
            .client
            .put(format!("{}/latest/api/token", self.base))
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL_SECS.to_string(),
            )
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        self.token = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// The body at `path`, `None` on 404.
    pub(crate) async fn get(&mut self, path: &str) -> Result<Option<String>, reqwest::Error> {
        let token = self.token().await?;
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-aws-ec2-metadata-token", token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            // The token expired or the service restarted: fetch a new one next time.
            self.token = None;
        }
        Ok(Some(response.error_for_status()?.text().await?))
    }

    async fn poll(&mut self) -> Result<Option<Notice>, reqwest::Error> {
        if let Some(body) = self.get(INSTANCE_ACTION).await? {
            return Ok(Some(Notice::Interruption(body)));
        }
        Ok(self.get(REBALANCE).await?.map(Notice::Rebalance))
    }
}

/// Polls until a notice arrives or `control` stops, and acts on the notice: an interruption
/// (or a rebalance configured as one) interrupts, a rebalance configured to drain drains.
pub async fn watch(config: SpotConfig, control: Control, status: Status) {
    let mut metadata = match Metadata::new(&config.metadata_url) {
        Ok(metadata) => metadata,
        Err(err) => {
            warn!(%err, "Cannot build the metadata client; spot notices are not watched.");
            return;
        }
    };
    let every = Duration::from_secs(config.poll_secs.max(1));
    let mut reported_error = false;
    let mut rebalance_seen = false;
    info!(url = %metadata.base, every = ?every, "Watching for spot interruption notices.");
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = control.interrupt.cancelled() => return,
        }
        match metadata.poll().await {
            Ok(None) => reported_error = false,
            Ok(Some(Notice::Interruption(body))) => {
                warn!(notice = %body.trim(), "Spot interruption notice: cancelling jobs, handing their messages back, exiting.");
                status.set_phase(Phase::Interrupted);
                control.interrupt.cancel();
                return;
            }
            Ok(Some(Notice::Rebalance(body))) if !rebalance_seen => {
                rebalance_seen = true;
                match config.rebalance {
                    RebalanceAction::Interrupt => {
                        warn!(notice = %body.trim(), "Rebalance recommendation: treating it as an interruption.");
                        status.set_phase(Phase::Interrupted);
                        control.interrupt.cancel();
                        return;
                    }
                    RebalanceAction::Drain => {
                        warn!(notice = %body.trim(), "Rebalance recommendation: finishing running jobs, taking no more, then exiting.");
                        status.set_phase(Phase::Draining);
                        control.drain.cancel();
                    }
                    RebalanceAction::Ignore => {
                        info!(notice = %body.trim(), "Rebalance recommendation ignored (spot.rebalance = \"ignore\").");
                    }
                }
            }
            Ok(Some(Notice::Rebalance(_))) => {}
            Err(err) => {
                if !reported_error {
                    warn!(%err, "Instance metadata unreachable; still polling.");
                    reported_error = true;
                }
            }
        }
    }
}
