//! The model of the world the policies are tried against: instances, workers, the queue's
//! counters and the spot market. Every default is explained on its field.

use serde::{Deserialize, Serialize};

use super::SimError;

/// The `[model]` section of a simulation file. Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Model {
    /// Seeds every random draw (boot delays, counter lags, spot interruptions, which instance
    /// a scale-in terminates): the same seed gives the same run.
    pub seed: u64,
    /// Fastest boot: from the fleet launching an instance to its worker taking a message
    /// (spot request fulfilment, boot, user-data installing the release, the unit starting).
    /// 90 s is a quick Spot Fleet launch of a prepared AMI.
    pub boot_min_secs: u64,
    /// Slowest boot, drawn uniformly between the two. 180 s covers a slow spot fulfilment
    /// and a package install from user-data.
    pub boot_max_secs: u64,
    /// Transcode speed of one job alone on an instance, in seconds of video per second, for
    /// the whole default ladder. The README's benchmark measures 1.15x realtime for a 4-rung
    /// 1080p ladder on a 2-core machine (100 s of CPU for 60 s of video); a c5.2xlarge-class
    /// worker (4 cores, 8 threads) does not scale linearly (one decoder, x264's frame
    /// threads) and the default ladder has two more rungs, so 1.5x, not 2.3x.
    pub speed: f64,
    /// Wall seconds a job spends outside the transcode: downloading the recording and
    /// uploading the ladder (a 45-minute 6 Mbit/s recording is 2 GB; the ladder about 3 GB;
    /// S3 in region moves 100-200 MB/s).
    pub job_overhead_secs: u64,
    /// Jobs a worker runs at once (`[worker] concurrency`). Jobs on one instance share its
    /// speed equally: a transcode already keeps every core busy.
    pub slots: u32,
    /// Spot interruptions per instance-hour. 0.05 is pessimistic on purpose (the Spot
    /// Advisor's best bucket is under 5 % a month), so that a day sees a few and the
    /// hand-back path is exercised.
    pub spot_interruptions_per_hour: f64,
    /// The interruption notice: the worker hands its jobs back at once (visibility 0) and
    /// takes no more; the instance is billed until it is terminated this much later.
    pub spot_notice_secs: u64,
    /// A worker that had no job this long exits and powers the instance off (terminating
    /// it) when the candidate's workers do that (`idle_shutdown`). It must outlast the
    /// policy's scale-in stabilisation window plus a scaler period and the counter lag
    /// (300 + 60 + 60 s with the defaults), or the fleet replaces a worker that left
    /// while the target still counted it, and the replacement boots only to idle.
    pub idle_shutdown_secs: u64,
    /// How often the scaler runs (the loop's default, and the EventBridge schedule's).
    pub scaler_period_secs: u64,
    /// SQS's Approximate* counters are eventually consistent, up to about a minute behind:
    /// each run reads each counter as it was a uniformly drawn 0..=this many seconds ago.
    pub counter_lag_secs: u64,
    /// A job killed with its instance (scale-in that terminates) is invisible this long
    /// before another worker can take it: the worker's heartbeat visibility
    /// (`[worker] visibility_secs`). The reference architecture's 7200 s without heartbeat
    /// made each kill cost up to two hours.
    pub visibility_secs: u64,
    /// The time series is sampled this often for the chart.
    pub sample_secs: u64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            seed: 1,
            boot_min_secs: 90,
            boot_max_secs: 180,
            speed: 1.5,
            job_overhead_secs: 30,
            slots: 1,
            spot_interruptions_per_hour: 0.05,
            spot_notice_secs: 120,
            idle_shutdown_secs: 600,
            scaler_period_secs: 60,
            counter_lag_secs: 60,
            visibility_secs: 120,
            sample_secs: 60,
        }
    }
}

impl Model {
    /// Rejects what serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |message: String| Err(SimError::Model(message));
        if self.boot_min_secs > self.boot_max_secs {
            return bad(format!(
                "boot_min_secs ({}) is greater than boot_max_secs ({})",
                self.boot_min_secs, self.boot_max_secs
            ));
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad(format!(
                "speed ({}) must be a positive number (seconds of video per second)",
                self.speed
            ));
        }
        if self.slots == 0 {
            return bad("slots must be at least 1".to_owned());
        }
        if !(self.spot_interruptions_per_hour.is_finite()
            && self.spot_interruptions_per_hour >= 0.0)
        {
            return bad(format!(
                "spot_interruptions_per_hour ({}) must be 0 or more",
                self.spot_interruptions_per_hour
            ));
        }
        if self.scaler_period_secs == 0 {
            return bad("scaler_period_secs must be at least 1".to_owned());
        }
        if self.sample_secs == 0 {
            return bad("sample_secs must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Wall seconds of one job of `duration` seconds of video alone on an instance.
    pub fn job_secs(&self, duration: u64) -> u64 {
        self.job_overhead_secs + (duration as f64 / self.speed).ceil() as u64
    }
}
