//! The scaler as an AWS Lambda function: an EventBridge schedule (for example `rate(1
//! minute)`) invokes it; each invocation is one [`Scaler::run_once`].
//!
//! The configuration is the usual TOML document, passed whole in the environment variable
//! [`CONFIG_VARIABLE`]; only `[queue] url`, `[aws]` and `[scaler]` are read. A Lambda keeps
//! nothing between invocations that it can rely on, so `scaler.state` must be an
//! `s3://BUCKET/KEY` object.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use serde::Deserialize;

use crate::config::{ScalerConfig, StateLocation};
use crate::policy::ConfigError;
use crate::runner::{Report, Scaler, ScalerError, unix_now};

/// Holds the TOML configuration document.
pub const CONFIG_VARIABLE: &str = "SPHERECAST_CONFIG_TOML";

/// The parts of the configuration document the Lambda reads. Other sections (origin,
/// worker…) may be present: the same document can serve every service.
#[derive(Debug, Clone, Deserialize)]
pub struct LambdaSettings {
    pub queue: QueueSection,
    #[serde(default)]
    pub aws: AwsSection,
    pub scaler: ScalerConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueSection {
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AwsSection {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

impl LambdaSettings {
    pub fn parse(text: &str) -> Result<LambdaSettings, ConfigError> {
        let settings: LambdaSettings = toml::from_str(text)
            .map_err(|err| ConfigError(format!("{CONFIG_VARIABLE} is not valid: {err}")))?;
        settings.scaler.validate()?;
        settings.scaler.fleet()?;
        match settings.scaler.state.as_deref().map(StateLocation::parse) {
            Some(Ok(StateLocation::S3 { .. })) => {}
            Some(Err(err)) => return Err(err),
            _ => {
                return Err(ConfigError(
                    "scaler.state must be s3://BUCKET/KEY in a Lambda: its files do not \
                     outlive the invocation, and the stabilisation window must"
                        .to_owned(),
                ));
            }
        }
        Ok(settings)
    }
}

/// One scheduled invocation. The event's own time is the clock (the schedule's tick), so a
/// retried invocation decides as the original would have.
pub async fn handle(
    scaler: &Scaler,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Report, ScalerError> {
    let now = event
        .payload
        .time
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .unwrap_or_else(unix_now);
    tracing::debug!(
        request_id = %event.context.request_id,
        detail_type = %event.payload.detail_type,
        source = %event.payload.source,
        "scaler invoked"
    );
    let report = scaler.run_once(now, false).await?;
    tracing::info!(
        desired = report.desired,
        previous = report.target,
        changed = report.changed,
        "{report}"
    );
    Ok(report)
}
