//! The scaler: sizes the worker fleet from the queue. This crate holds the pure policy; the
//! fleet backends, the cron and Lambda runners and the simulator build on it.
#![forbid(unsafe_code)]

pub mod policy;
pub mod sim;

pub use policy::{Decision, History, Observation, PolicyConfig, Rule, decide};
