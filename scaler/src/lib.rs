//! The scaler: sizes the worker fleet from the queue. The pure [`policy`]; the fleet backends
//! ([`fleet`]: EC2 Spot Fleet, Auto Scaling group); the [`runner`] behind `spherecast scaler`
//! (cron or loop) and the [`lambda`] handler; the history kept between runs ([`state`]); and
//! the [`sim`]ulator that compares policies on recorded traces.
#![forbid(unsafe_code)]

pub mod config;
pub mod fleet;
pub mod lambda;
pub mod policy;
pub mod runner;
pub mod sim;
pub mod state;

pub use config::{BackendKind, ScalerConfig, StateLocation};
pub use policy::{Decision, History, Observation, PolicyConfig, Rule, decide};
pub use runner::{Report, Scaler, ScalerError};
