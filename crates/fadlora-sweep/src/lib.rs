//! Ablation sweeps: an experiment TOML (a base run plus sweep axes) expands into a grid of runs
//! with stable IDs; the runner trains each in its own `fadlora train` process, skips finished
//! runs, resumes interrupted ones and never leaves a half-written record.
//!
//! - [`Experiment`]: the experiment TOML (`experiments/README.md` documents every key),
//!   validated with `file:line: key` errors.
//! - [`Plan`] (fadlora-run): its runs; `fadlora_run::layout` shows the results folder.
//! - [`run_sweep`]: runs a plan on this machine, reporting each start, finish and failure as
//!   it happens.
//! - [`slurm::submit`]: submits the plan's unfinished runs to SLURM as one job array instead.
//! - [`status::run_statuses`]: what each run is doing, from the results folder and the
//!   scheduler.

mod error;
pub mod experiment;
pub mod runner;
pub mod slurm;
pub mod status;

pub use error::SweepError;
pub use experiment::Experiment;
pub use fadlora_run::{Mode, Plan, PlannedRun, RunAxes, RunState};
pub use runner::{run_sweep, SweepEvent, SweepOptions, SweepOutcome};
