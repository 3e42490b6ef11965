//! Fleet backends: read a fleet's capacity and set its target.
//!
//! - [`SpotFleet`]: an EC2 Spot Fleet request of type `maintain`. Every change is sent with
//!   `ExcessCapacityTerminationPolicy=noTermination`: lowering the target never terminates an
//!   instance, so a running job is never killed. Idle workers leave by themselves (the
//!   worker's `idle_shutdown_secs`), and the fleet does not replace them while it runs more
//!   instances than its target.
//! - [`AutoScalingGroup`]: SetDesiredCapacity. Busy workers protect themselves from scale-in
//!   (`SetInstanceProtection`), so the group only ever removes idle instances; the number of
//!   protected in-service instances is reported as the busy workers.

use async_trait::async_trait;
use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    BatchState, ExcessCapacityTerminationPolicy, FleetType, SpotFleetRequestConfig,
};

/// What a fleet reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCapacity {
    /// The target (desired) capacity last asked for.
    pub target: u32,
    /// Instances running (fulfilled capacity, or in-service instances).
    pub fulfilled: u32,
    /// Instances running a job, when the backend can tell.
    pub busy: Option<u32>,
    /// The most the fleet itself accepts (an Auto Scaling group's MaxSize), if any.
    pub max: Option<u32>,
    /// The fewest the fleet itself keeps (an Auto Scaling group's MinSize), if any.
    pub min: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The API did not answer, or answered with a server error: try again later.
    #[error("{op} for {fleet} failed: {message}")]
    Unreachable {
        op: &'static str,
        fleet: String,
        message: String,
    },
    #[error("{what} {fleet} not found: check scaler.fleet and the region")]
    NotFound { what: &'static str, fleet: String },
    /// A fleet the scaler must not drive.
    #[error("{fleet} cannot be scaled: {message}")]
    Unsuitable { fleet: String, message: String },
    /// The API refused the call (permissions, validation).
    #[error("{op} for {fleet} was refused: {message}")]
    Rejected {
        op: &'static str,
        fleet: String,
        message: String,
    },
}

/// A fleet the scaler can size.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// For log lines: `spot fleet sfr-…` or `auto scaling group NAME`.
    fn describe(&self) -> String;
    async fn capacity(&self) -> Result<FleetCapacity, FleetError>;
    async fn set_target(&self, desired: u32) -> Result<(), FleetError>;
}

fn sdk_error<E>(err: SdkError<E>, op: &'static str, fleet: &str) -> FleetError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or_default();
            if code.contains("NotFound") {
                FleetError::NotFound {
                    what: op_target(op),
                    fleet: fleet.to_owned(),
                }
            } else if status >= 500 || code.contains("Throttl") || code == "RequestLimitExceeded" {
                FleetError::Unreachable {
                    op,
                    fleet: fleet.to_owned(),
                    message: detail,
                }
            } else {
                FleetError::Rejected {
                    op,
                    fleet: fleet.to_owned(),
                    message: detail,
                }
            }
        }
        _ => FleetError::Unreachable {
            op,
            fleet: fleet.to_owned(),
            message: detail,
        },
    }
}

fn op_target(op: &str) -> &'static str {
    if op.contains("SpotFleet") {
        "spot fleet request"
    } else {
        "auto scaling group"
    }
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// An EC2 Spot Fleet request (`sfr-…`) of type `maintain`.
pub struct SpotFleet {
    client: aws_sdk_ec2::Client,
    id: String,
}

impl SpotFleet {
    pub fn new(client: aws_sdk_ec2::Client, id: impl Into<String>) -> SpotFleet {
        SpotFleet {
            client,
            id: id.into(),
        }
    }
}

#[async_trait]
impl Fleet for SpotFleet {
    fn describe(&self) -> String {
        format!("spot fleet {}", self.id)
    }

    async fn capacity(&self) -> Result<FleetCapacity, FleetError> {
        const OP: &str = "DescribeSpotFleetRequests";
        let out = self
            .client
            .describe_spot_fleet_requests()
            .spot_fleet_request_ids(&self.id)
            .send()
            .await
            .map_err(|err| sdk_error(err, OP, &self.id))?;
        let request = out
            .spot_fleet_request_configs()
            .iter()
            .find(|c| c.spot_fleet_request_id() == Some(self.id.as_str()))
            .ok_or_else(|| FleetError::NotFound {
                what: "spot fleet request",
                fleet: self.id.clone(),
            })?;
        spot_fleet_capacity(&self.id, request)
    }

    async fn set_target(&self, desired: u32) -> Result<(), FleetError> {
        const OP: &str = "ModifySpotFleetRequest";
        let desired = i32::try_from(desired).unwrap_or(i32::MAX);
        let out = self
            .client
            .modify_spot_fleet_request()
            .spot_fleet_request_id(&self.id)
            .target_capacity(desired)
            .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
            .send()
            .await
            .map_err(|err| sdk_error(err, OP, &self.id))?;
        if out.r#return() == Some(false) {
            return Err(FleetError::Rejected {
                op: OP,
                fleet: self.id.clone(),
                message: "the request was not modified (Return=false)".to_owned(),
            });
        }
        Ok(())
    }
}

/// The capacity of a described Spot Fleet request, or why the scaler must not drive it: a
/// request that is not active, or whose type is not `maintain`.
pub fn spot_fleet_capacity(
    id: &str,
    request: &SpotFleetRequestConfig,
) -> Result<FleetCapacity, FleetError> {
    let unsuitable = |message: String| FleetError::Unsuitable {
        fleet: id.to_owned(),
        message,
    };
    match request.spot_fleet_request_state() {
        Some(BatchState::Active | BatchState::Modifying) => {}
        Some(state) => {
            return Err(unsuitable(format!(
                "the request is {}, not active",
                state.as_str()
            )));
        }
        None => return Err(unsuitable("the request reports no state".to_owned())),
    }
    let config = request
        .spot_fleet_request_config()
        .ok_or_else(|| unsuitable("the request has no configuration".to_owned()))?;
    match config.r#type() {
        // `maintain` is the default type when none is given.
        Some(FleetType::Maintain) | None => {}
        Some(other) => {
            return Err(unsuitable(format!(
                "its type is {:?}, not \"maintain\": such a request neither replaces \
                 instances nor follows a new target",
                other.as_str()
            )));
        }
    }
    let target = count(i64::from(config.target_capacity().unwrap_or(0)));
    // Fulfilled capacity is in capacity units, fractional with weighted instance types.
    let fulfilled = config.fulfilled_capacity().unwrap_or(0.0).floor() as i64;
    Ok(FleetCapacity {
        target,
        fulfilled: count(fulfilled),
        busy: None,
        max: None,
        min: None,
    })
}

/// An EC2 Auto Scaling group.
pub struct AutoScalingGroup {
    client: aws_sdk_autoscaling::Client,
    name: String,
}

impl AutoScalingGroup {
    pub fn new(client: aws_sdk_autoscaling::Client, name: impl Into<String>) -> AutoScalingGroup {
        AutoScalingGroup {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl Fleet for AutoScalingGroup {
    fn describe(&self) -> String {
        format!("auto scaling group {}", self.name)
    }

    async fn capacity(&self) -> Result<FleetCapacity, FleetError> {
        const OP: &str = "DescribeAutoScalingGroups";
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.name)
            .send()
            .await
            .map_err(|err| sdk_error(err, OP, &self.name))?;
        let group = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.name.as_str()))
            .ok_or_else(|| FleetError::NotFound {
                what: "auto scaling group",
                fleet: self.name.clone(),
            })?;
        let in_service: Vec<_> = group
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
            .collect();
        let busy = in_service
            .iter()
            .filter(|i| i.protected_from_scale_in() == Some(true))
            .count();
        Ok(FleetCapacity {
            target: count(i64::from(group.desired_capacity().unwrap_or(0))),
            fulfilled: count(in_service.len() as i64),
            busy: Some(count(busy as i64)),
            max: group.max_size().map(|m| count(i64::from(m))),
            min: group.min_size().map(|m| count(i64::from(m))),
        })
    }

    async fn set_target(&self, desired: u32) -> Result<(), FleetError> {
        const OP: &str = "SetDesiredCapacity";
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(&self.name)
            .desired_capacity(i32::try_from(desired).unwrap_or(i32::MAX))
            // The policy has its own stabilisation; the group's cooldown would only delay a
            // scale-out.
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|err| sdk_error(err, OP, &self.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::SpotFleetRequestConfigData;

    fn request(state: BatchState, kind: Option<FleetType>) -> SpotFleetRequestConfig {
        let mut data = SpotFleetRequestConfigData::builder()
            .target_capacity(4)
            .fulfilled_capacity(2.5)
            .iam_fleet_role("arn:aws:iam::123456789012:role/fleet");
        if let Some(kind) = kind {
            data = data.r#type(kind);
        }
        SpotFleetRequestConfig::builder()
            .spot_fleet_request_id("sfr-1")
            .spot_fleet_request_state(state)
            .spot_fleet_request_config(data.build())
            .build()
    }

    #[test]
    fn an_active_maintain_request_reports_its_capacity() {
        for kind in [Some(FleetType::Maintain), None] {
            let capacity =
                spot_fleet_capacity("sfr-1", &request(BatchState::Active, kind)).unwrap();
            assert_eq!((capacity.target, capacity.fulfilled), (4, 2));
            assert_eq!(capacity.busy, None);
        }
    }

    #[test]
    fn a_one_off_or_cancelled_request_is_refused_with_the_reason() {
        let err = spot_fleet_capacity(
            "sfr-1",
            &request(BatchState::Active, Some(FleetType::Request)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not \"maintain\""), "{err}");
        assert!(err.contains("sfr-1"), "{err}");
        let err = spot_fleet_capacity("sfr-1", &request(BatchState::CancelledRunning, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cancelled_running, not active"), "{err}");
    }
}
