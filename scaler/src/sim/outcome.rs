//! What one simulated run produced: every job's attempts, every instance's life, the time
//! series, and the summary figures computed from them.

const DAY: u64 = 24 * 3600;

/// How an attempt at a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Transcoded and published; the message was deleted.
    Completed,
    /// Its instance was terminated by a scale-in; the message came back after the
    /// visibility timeout.
    KilledByScaleIn,
    /// A spot interruption notice: the worker handed the message back at once.
    Interrupted,
    /// Still running when the run stopped (only when it hit its time limit).
    Unfinished,
}

/// One receive of a job's message by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Index into [`Outcome::instances`].
    pub instance: usize,
    pub start: u64,
    pub end: u64,
    pub ended: Ended,
}

/// One recording of the trace and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub arrival: u64,
    pub duration: u64,
    /// In order; at most the last one is [`Ended::Completed`].
    pub attempts: Vec<Attempt>,
}

impl JobRecord {
    /// Seconds from arrival to the first start, if it started.
    pub fn wait(&self) -> Option<u64> {
        self.attempts.first().map(|a| a.start - self.arrival)
    }

    /// When it was completed, if it was.
    pub fn completed(&self) -> Option<u64> {
        self.attempts
            .iter()
            .find(|a| a.ended == Ended::Completed)
            .map(|a| a.end)
    }
}

/// Why an instance left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Its worker was idle for `idle_shutdown_secs` and powered it off.
    Idle,
    /// Terminated by a scale-in.
    ScaleIn,
    /// Reclaimed by the spot market after the notice.
    Spot,
    /// Still there when the run ended (billed until then).
    Running,
}

/// One instance, from the launch request to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Billing starts here (the launch request, boot included).
    pub launched: u64,
    /// When its worker could take a first message.
    pub ready_at: u64,
    /// Billing ends here.
    pub gone: u64,
    pub left: Left,
}

/// The fleet and the queue at one instant (true values, not the lagging counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub t: u64,
    /// Messages waiting for a worker.
    pub visible: u64,
    /// Messages being worked on, or invisible after their worker was killed.
    pub in_flight: u64,
    /// The fleet's target capacity.
    pub target: u32,
    /// Instances launched and not yet gone (booting ones included).
    pub instances: u32,
    /// Instances whose worker is up.
    pub running: u32,
    /// Workers with at least one job.
    pub busy: u32,
}

/// One candidate's run over one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub candidate: String,
    /// The first arrival: the run and the billing start here.
    pub start: u64,
    /// When the run stopped: the fleet settled at its floor after the last job, or the limit.
    pub end: u64,
    /// False when the run hit its time limit before every job was done and the fleet had
    /// settled (a policy that never scales to the work, or workers that never leave).
    pub settled: bool,
    /// Times the policy changed the target.
    pub target_changes: u32,
    /// The policy's `min`: the instances the fleet keeps outside the run as well.
    pub floor: u32,
    pub jobs: Vec<JobRecord>,
    pub instances: Vec<InstanceRecord>,
    /// Every `sample_secs` from `start`, and at `end`.
    pub samples: Vec<Sample>,
}

/// The figures the table shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub jobs: usize,
    /// Jobs that never started (only when the run hit its limit).
    pub never_started: usize,
    pub p50_wait: Option<u64>,
    pub p95_wait: Option<u64>,
    pub max_wait: Option<u64>,
    /// Arrival to completion (the ladder published), 95th percentile.
    pub p95_done: Option<u64>,
    /// From the first arrival until the fleet is back at its floor after the last job.
    pub instance_hours: f64,
    /// A whole day of it: `instance_hours` plus the floor's instances for the rest of 24
    /// hours (a `min = 1` fleet pays 24 instance-hours a day before any work).
    pub day_instance_hours: f64,
    pub killed_by_scale_in: usize,
    pub interrupted_by_spot: usize,
    pub last_completion: Option<u64>,
    pub launches: usize,
    pub target_changes: u32,
    pub settled: bool,
}

impl Outcome {
    /// Instance-seconds billed: each instance from its launch to its end.
    pub fn instance_secs(&self) -> u64 {
        self.instances.iter().map(|i| i.gone - i.launched).sum()
    }

    fn attempts_ended(&self, ended: Ended) -> usize {
        self.jobs
            .iter()
            .flat_map(|j| &j.attempts)
            .filter(|a| a.ended == ended)
            .count()
    }

    pub fn summary(&self) -> Summary {
        let mut waits: Vec<u64> = self.jobs.iter().filter_map(JobRecord::wait).collect();
        waits.sort_unstable();
        let mut turnarounds: Vec<u64> = self
            .jobs
            .iter()
            .filter_map(|j| j.completed().map(|c| c - j.arrival))
            .collect();
        turnarounds.sort_unstable();
        Summary {
            jobs: self.jobs.len(),
            never_started: self.jobs.len() - waits.len(),
            p50_wait: percentile(&waits, 50),
            p95_wait: percentile(&waits, 95),
            max_wait: waits.last().copied(),
            p95_done: percentile(&turnarounds, 95),
            instance_hours: self.instance_secs() as f64 / 3600.0,
            day_instance_hours: (self.instance_secs()
                + u64::from(self.floor) * DAY.saturating_sub(self.end - self.start))
                as f64
                / 3600.0,
            killed_by_scale_in: self.attempts_ended(Ended::KilledByScaleIn),
            interrupted_by_spot: self.attempts_ended(Ended::Interrupted),
            last_completion: self.jobs.iter().filter_map(JobRecord::completed).max(),
            launches: self.instances.len(),
            target_changes: self.target_changes,
            settled: self.settled,
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` % of the
/// values at or below it. None for no values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 95), Some(95));
        assert_eq!(percentile(&hundred, 100), Some(100));
        // 20 values: the 95th percentile is the 19th, not the maximum.
        let twenty: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 95), Some(19));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
