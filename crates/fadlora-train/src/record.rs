//! The run record (`record.json`): the one machine-readable result of a run, which the sweep
//! and the report read without loading a network.

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::detector::ParamCounts;
use crate::measure::{PeakMemory, TimeStats};

/// Bumped when a field changes meaning.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub record_version: u32,
    pub name: Option<String>,
    /// `lora` or `full`.
    pub mode: String,
    pub backend: String,
    pub device: String,
    pub git_commit: Option<String>,
    /// The fully resolved run configuration (every default filled in).
    pub config: RunConfig,
    pub params: ParamCounts,
    pub memory: PeakMemory,
    /// Optimizer steps after `train.timing_warmup_steps`: forward + backward + optimizer,
    /// without data loading; over every invocation of a resumed run.
    pub step_time: Option<TimeStats>,
    /// Training utterances per second of epoch wall time (data loading included).
    pub train_utt_per_s: f64,
    /// Scoring throughput on the dev set (data loading included), at the selected epoch.
    pub eval_utt_per_s: f64,
    pub epochs: Vec<EpochLog>,
    pub steps: u64,
    /// 1-based epoch of the selected checkpoint.
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub dev: SplitResult,
    pub eval: Option<SplitResult>,
    /// Total wall time of all invocations (seconds).
    pub wall_seconds: f64,
}

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps completed at the end of the epoch.
    pub steps: u64,
    /// Mean class-weighted loss of the training forward passes.
    pub train_loss: f64,
    /// Train EER in eval mode, when `train.score_train` is set.
    pub train_eer_percent: Option<f64>,
    pub dev_loss: f64,
    pub dev_eer_percent: f64,
    pub lr: f64,
    pub wall_seconds: f64,
    pub improved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    pub split: String,
    pub n_bonafide: usize,
    pub n_spoof: usize,
    pub eer_percent: f64,
    pub threshold: f64,
    pub loss: f64,
    /// Min t-DCF (ASVspoof 2019 cost model), when `data.asv_scores` gives the organisers' ASV
    /// scores (eval split only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tdcf: Option<f64>,
    /// Relative to the output folder.
    pub scores_file: String,
}
