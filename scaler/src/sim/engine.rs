//! The simulation proper: one-second steps over a trace for one candidate.
//!
//! Each second, in this order: running jobs advance (and complete); spot notices hand jobs
//! back and noticed instances go; arrivals and messages whose visibility ran out become
//! visible; the counters are recorded; on a scaler period the policy runs on lagged
//! counters; the fleet launches (or, when it terminates on scale-in, terminates) towards the
//! target; booted workers come up; free slots take visible messages, oldest first; idle
//! workers power off; the time series is sampled.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::SimError;
use super::candidate::{Candidate, ScaleIn};
use super::model::Model;
use super::outcome::{Attempt, Ended, InstanceRecord, JobRecord, Left, Outcome, Sample};
use super::trace::Trace;
use crate::policy::{History, Observation, decide};

/// Runs `candidate` over `trace` in `model`. Deterministic: the model's seed fixes every
/// random draw.
pub fn simulate(trace: &Trace, model: &Model, candidate: &Candidate) -> Result<Outcome, SimError> {
    model.validate()?;
    candidate.validate()?;
    let mut sim = Sim::new(trace, model, candidate);
    sim.run();
    Ok(sim.finish())
}

/// Where a job's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    /// Not on the queue yet.
    Pending,
    /// Visible since then (the queue hands out the oldest first).
    Visible(u64),
    /// Received by a worker.
    Taken,
    /// Invisible until then: its worker was killed.
    Hidden(u64),
    Deleted,
}

/// A job on a worker.
#[derive(Debug)]
struct Running {
    job: usize,
    start: u64,
    /// Download and upload, in wall seconds: not slowed by other jobs.
    overhead_left: u64,
    /// Seconds of video still to transcode.
    video_left: f64,
}

#[derive(Debug)]
struct Instance {
    launched: u64,
    ready_at: u64,
    ready: bool,
    /// When the spot market sends its interruption notice, if it does before the run ends.
    notice_at: Option<u64>,
    draining: bool,
    jobs: Vec<Running>,
    idle_since: u64,
    gone: Option<(u64, Left)>,
}

impl Instance {
    fn alive(&self) -> bool {
        self.gone.is_none()
    }

    fn up(&self) -> bool {
        self.ready && self.alive()
    }
}

struct Sim<'a> {
    model: &'a Model,
    candidate: &'a Candidate,
    slots: usize,
    start: u64,
    limit: u64,
    recordings: Vec<(u64, u64)>,
    messages: Vec<Message>,
    attempts: Vec<Vec<Attempt>>,
    next_arrival: usize,
    done: usize,
    instances: Vec<Instance>,
    target: u32,
    history: History,
    target_changes: u32,
    /// (visible, in flight) as recorded at each second since `start`, for lagged reads.
    counters: Vec<(u64, u64)>,
    samples: Vec<Sample>,
    boot_rng: ChaCha8Rng,
    lag_rng: ChaCha8Rng,
    spot_rng: ChaCha8Rng,
    pick_rng: ChaCha8Rng,
    end: u64,
    settled: bool,
}

/// One independent stream of the seed per kind of draw, so that (for instance) an extra
/// boot in one candidate does not shift the counter lags it sees.
fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

impl<'a> Sim<'a> {
    fn new(trace: &Trace, model: &'a Model, candidate: &'a Candidate) -> Sim<'a> {
        let recordings: Vec<(u64, u64)> = trace
            .recordings
            .iter()
            .map(|r| (r.arrival, r.duration))
            .collect();
        let start = trace.first_arrival();
        // Long enough for one instance to do every job after the last arrival, and then
        // some: a run that gets here has a policy (or workers) that will not finish.
        let serial: u64 = recordings.iter().map(|&(_, d)| model.job_secs(d)).sum();
        let limit = trace.last_arrival() + serial + 6 * 3600;
        let mut sim = Sim {
            model,
            candidate,
            slots: candidate.slots.unwrap_or(model.slots) as usize,
            start,
            limit,
            messages: vec![Message::Pending; recordings.len()],
            attempts: vec![Vec::new(); recordings.len()],
            recordings,
            next_arrival: 0,
            done: 0,
            instances: Vec::new(),
            target: candidate.policy.min,
            history: History::default(),
            target_changes: 0,
            counters: Vec::new(),
            samples: Vec::new(),
            boot_rng: stream(model.seed, 1),
            lag_rng: stream(model.seed, 2),
            spot_rng: stream(model.seed, 3),
            pick_rng: stream(model.seed, 4),
            end: start,
            settled: false,
        };
        // The floor was up before the first recording (it is billed from then on).
        for _ in 0..candidate.policy.min {
            sim.launch(start, 0);
        }
        sim
    }

    fn launch(&mut self, now: u64, boot: u64) {
        let rate_per_sec = self.model.spot_interruptions_per_hour / 3600.0;
        let notice_at = (rate_per_sec > 0.0).then(|| {
            // Exponential time to interruption: a constant rate per instance-hour.
            let u: f64 = self.spot_rng.random();
            let secs = -(1.0 - u).ln() / rate_per_sec;
            now.saturating_add(secs as u64)
        });
        self.instances.push(Instance {
            launched: now,
            ready_at: now + boot,
            ready: false,
            notice_at,
            draining: false,
            jobs: Vec::new(),
            idle_since: now,
            gone: None,
        });
    }

    fn run(&mut self) {
        let mut t = self.start;
        loop {
            if t > self.start {
                self.advance_jobs(t);
            }
            self.spot(t);
            self.arrivals(t);
            self.counters.push(self.count());
            if t.is_multiple_of(self.model.scaler_period_secs) {
                self.scale(t);
            }
            self.reconcile(t);
            self.boot(t);
            self.assign(t);
            self.idle_shutdown(t);
            let sampled = (t - self.start).is_multiple_of(self.model.sample_secs);
            if sampled {
                self.sample(t);
            }
            let finished = self.is_settled();
            if finished || t >= self.limit {
                self.settled = finished;
                self.end = t;
                if !sampled {
                    self.sample(t);
                }
                return;
            }
            t += 1;
        }
    }

    /// Every job is done and the fleet is back at the policy's floor, all of it up.
    fn is_settled(&self) -> bool {
        if self.done < self.recordings.len() || self.target != self.candidate.policy.min {
            return false;
        }
        let alive: Vec<&Instance> = self.instances.iter().filter(|i| i.alive()).collect();
        alive.len() == self.target as usize && alive.iter().all(|i| i.ready)
    }

    /// The second before `t` of work on every running job.
    fn advance_jobs(&mut self, t: u64) {
        let speed = self.model.speed;
        for (index, instance) in self.instances.iter_mut().enumerate() {
            if !instance.up() || instance.jobs.is_empty() {
                continue;
            }
            let transcoding = instance
                .jobs
                .iter()
                .filter(|j| j.overhead_left == 0)
                .count();
            for job in &mut instance.jobs {
                if job.overhead_left > 0 {
                    job.overhead_left -= 1;
                } else {
                    job.video_left -= speed / transcoding as f64;
                }
            }
            let (finished, running): (Vec<Running>, Vec<Running>) = instance
                .jobs
                .drain(..)
                .partition(|j| j.overhead_left == 0 && j.video_left <= 1e-6);
            instance.jobs = running;
            for job in finished {
                self.messages[job.job] = Message::Deleted;
                self.done += 1;
                self.attempts[job.job].push(Attempt {
                    instance: index,
                    start: job.start,
                    end: t,
                    ended: Ended::Completed,
                });
            }
            if instance.jobs.is_empty() {
                instance.idle_since = t;
            }
        }
    }

    /// Interruption notices (jobs handed back at once, visibility 0) and the terminations
    /// that follow them.
    fn spot(&mut self, t: u64) {
        let notice_secs = self.model.spot_notice_secs;
        for (index, instance) in self.instances.iter_mut().enumerate() {
            if !instance.alive() {
                continue;
            }
            if instance.notice_at == Some(t) {
                instance.draining = true;
                for job in instance.jobs.drain(..) {
                    self.messages[job.job] = Message::Visible(t);
                    self.attempts[job.job].push(Attempt {
                        instance: index,
                        start: job.start,
                        end: t,
                        ended: Ended::Interrupted,
                    });
                }
            }
            if instance.draining && instance.notice_at.is_some_and(|n| t >= n + notice_secs) {
                instance.gone = Some((t, Left::Spot));
            }
        }
    }

    fn arrivals(&mut self, t: u64) {
        while self
            .recordings
            .get(self.next_arrival)
            .is_some_and(|&(arrival, _)| arrival <= t)
        {
            self.messages[self.next_arrival] = Message::Visible(t);
            self.next_arrival += 1;
        }
        for message in &mut self.messages {
            if let Message::Hidden(until) = *message
                && until <= t
            {
                *message = Message::Visible(t);
            }
        }
    }

    /// (visible, not visible), as SQS counts them.
    fn count(&self) -> (u64, u64) {
        let mut visible = 0;
        let mut in_flight = 0;
        for message in &self.messages {
            match message {
                Message::Visible(_) => visible += 1,
                Message::Taken | Message::Hidden(_) => in_flight += 1,
                Message::Pending | Message::Deleted => {}
            }
        }
        (visible, in_flight)
    }

    /// One scaler run: the real policy on counters read with SQS's lag.
    fn scale(&mut self, t: u64) {
        let lag = self.model.counter_lag_secs;
        let mut read = |pick: fn(&(u64, u64)) -> u64| {
            let ago = self.lag_rng.random_range(0..=lag);
            let at = t.saturating_sub(ago).max(self.start) - self.start;
            pick(&self.counters[at as usize])
        };
        let visible = read(|c| c.0);
        let in_flight = read(|c| c.1);
        let busy = self
            .instances
            .iter()
            .filter(|i| i.up() && !i.jobs.is_empty())
            .count() as u32;
        let observation = Observation {
            now: t,
            visible,
            in_flight,
            delayed: 0,
            target: self.target,
            fulfilled: self.instances.iter().filter(|i| i.alive()).count() as u32,
            busy: self.candidate.reports_busy.then_some(busy),
        };
        let decision = decide(&self.candidate.policy, &observation, &self.history);
        if decision.desired != self.target {
            self.target_changes += 1;
        }
        self.target = decision.desired;
        self.history = decision.history;
    }

    /// The fleet moves towards its target: launches while it has fewer instances; with
    /// `ScaleIn::Terminate`, terminates random ones while it has more.
    fn reconcile(&mut self, t: u64) {
        let alive: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].alive())
            .collect();
        let target = self.target as usize;
        if alive.len() < target {
            for _ in alive.len()..target {
                let boot = self
                    .boot_rng
                    .random_range(self.model.boot_min_secs..=self.model.boot_max_secs);
                self.launch(t, boot);
            }
        } else if alive.len() > target && self.candidate.scale_in == ScaleIn::Terminate {
            let mut candidates = alive;
            for _ in target..candidates.len() {
                let pick = self.pick_rng.random_range(0..candidates.len());
                let index = candidates.swap_remove(pick);
                self.terminate(index, t);
            }
        }
    }

    fn terminate(&mut self, index: usize, t: u64) {
        let hidden_until = t + self.model.visibility_secs;
        let instance = &mut self.instances[index];
        instance.gone = Some((t, Left::ScaleIn));
        for job in instance.jobs.drain(..) {
            self.messages[job.job] = Message::Hidden(hidden_until);
            self.attempts[job.job].push(Attempt {
                instance: index,
                start: job.start,
                end: t,
                ended: Ended::KilledByScaleIn,
            });
        }
    }

    fn boot(&mut self, t: u64) {
        for instance in &mut self.instances {
            if instance.alive() && !instance.ready && instance.ready_at <= t {
                instance.ready = true;
                instance.idle_since = t;
            }
        }
    }

    /// Free slots take visible messages, the longest visible first.
    fn assign(&mut self, t: u64) {
        let free = |i: &Instance| i.up() && !i.draining && i.jobs.len() < self.slots;
        if !self.instances.iter().any(free) {
            return;
        }
        let mut queue: Vec<(u64, usize)> = self
            .messages
            .iter()
            .enumerate()
            .filter_map(|(job, m)| match m {
                Message::Visible(since) => Some((*since, job)),
                _ => None,
            })
            .collect();
        if queue.is_empty() {
            return;
        }
        queue.sort_unstable();
        let mut queue = queue.into_iter().map(|(_, job)| job);
        for instance in &mut self.instances {
            while free(instance) {
                let Some(job) = queue.next() else {
                    return;
                };
                self.messages[job] = Message::Taken;
                instance.jobs.push(Running {
                    job,
                    start: t,
                    overhead_left: self.model.job_overhead_secs,
                    video_left: self.recordings[job].1 as f64,
                });
            }
        }
    }

    fn idle_shutdown(&mut self, t: u64) {
        let Some(after) = self
            .candidate
            .idle_shutdown_after(self.model.idle_shutdown_secs)
        else {
            return;
        };
        for instance in &mut self.instances {
            if instance.up()
                && !instance.draining
                && instance.jobs.is_empty()
                && t - instance.idle_since >= after
            {
                instance.gone = Some((t, Left::Idle));
            }
        }
    }

    fn sample(&mut self, t: u64) {
        let (visible, in_flight) = self.count();
        let alive = || self.instances.iter().filter(|i| i.alive());
        self.samples.push(Sample {
            t,
            visible,
            in_flight,
            target: self.target,
            instances: alive().count() as u32,
            running: alive().filter(|i| i.ready).count() as u32,
            busy: alive().filter(|i| !i.jobs.is_empty()).count() as u32,
        });
    }

    fn finish(self) -> Outcome {
        let end = self.end;
        let mut attempts = self.attempts;
        // Jobs still on a worker at the limit.
        for (index, instance) in self.instances.iter().enumerate() {
            if instance.alive() {
                for job in &instance.jobs {
                    attempts[job.job].push(Attempt {
                        instance: index,
                        start: job.start,
                        end,
                        ended: Ended::Unfinished,
                    });
                }
            }
        }
        let jobs = self
            .recordings
            .iter()
            .zip(attempts)
            .map(|(&(arrival, duration), attempts)| JobRecord {
                arrival,
                duration,
                attempts,
            })
            .collect();
        let instances = self
            .instances
            .iter()
            .map(|i| {
                let (gone, left) = i.gone.unwrap_or((end, Left::Running));
                InstanceRecord {
                    launched: i.launched,
                    ready_at: i.ready_at,
                    gone,
                    left,
                }
            })
            .collect();
        Outcome {
            candidate: self.candidate.name.clone(),
            start: self.start,
            end,
            settled: self.settled,
            target_changes: self.target_changes,
            floor: self.candidate.policy.min,
            jobs,
            instances,
            samples: self.samples,
        }
    }
}
