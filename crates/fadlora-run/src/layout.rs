//! Where things are in a run folder and in a sweep's results folder.
//!
//! ```text
//! results/<experiment>/          a sweep's results folder (fadlora-sweep)
//!   plan.json                    the runs of the current experiment TOML (rewritten by every sweep)
//!   summary.csv                  one row per finished run of the plan
//!   .sweep.lock                  held while a sweep runs on this machine
//!   slurm/                       `fadlora sweep --slurm`: one sbatch script per submission,
//!     submissions.json           which run each array task of each job trains
//!     logs/<job>_<task>.out      what SLURM itself printed for a task
//!   <run-id>/                    one run folder (below)
//!     run.toml                   the resolved run configuration the sweep gave `fadlora train`
//!     train.log                  what `fadlora train` printed, over every invocation
//!     slurm.exit                 `<job>_<task> <exit code>` of the last SLURM task that ended
//!   report/                      written by `fadlora report`
//!
//! <run folder>/                  fadlora-train
//!   .train.lock                  held by the trainer at work here (see `lock`)
//!   config.toml                  the resolved configuration (a resumed run must match it)
//!   progress.json                epochs checkpointed so far: what a resume continues from
//!   checkpoints/epoch-NNNN/      trainable.safetensors, optimizer.mpk, detector.json
//!   best/                        the selected epoch: trainable.safetensors, detector.json,
//!                                base.safetensors (random front ends), adapter/ (LoRA, PEFT layout)
//!   scores/                      `utt_id score` files of the selected checkpoint
//!   record.json                  written last: the run is finished exactly when it exists
//! ```
//!
//! Every file here is written with [`crate::write_atomic`], so a kill leaves either the old
//! file or the new one.

use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const PROGRESS_FILE: &str = "progress.json";
pub const RECORD_FILE: &str = "record.json";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const BEST_DIR: &str = "best";
pub const SCORES_DIR: &str = "scores";
/// `best/adapter/`: the selected LoRA adapters in PEFT's layout (`adapter_config.json` +
/// `adapter_model.safetensors`).
pub const ADAPTER_DIR: &str = "adapter";

/// In a checkpoint folder: the parameters that train.
pub const TRAINABLE_FILE: &str = "trainable.safetensors";
/// In `best/`: the frozen front end, when no file on disk holds it (a random initialisation).
pub const BASE_FILE: &str = "base.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.mpk";
/// How to rebuild the detector a checkpoint belongs to.
pub const DETECTOR_FILE: &str = "detector.json";

pub const PLAN_FILE: &str = "plan.json";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const RUN_CONFIG_FILE: &str = "run.toml";
pub const LOG_FILE: &str = "train.log";
pub const LOCK_FILE: &str = ".sweep.lock";
pub const REPORT_DIR: &str = "report";
/// In a run folder: names the trainer working there (`crate::lock`).
pub const RUN_LOCK_FILE: &str = ".train.lock";
pub const SLURM_DIR: &str = "slurm";
pub const SLURM_SUBMISSIONS_FILE: &str = "submissions.json";
pub const SLURM_LOGS_DIR: &str = "logs";
/// In a run folder: the exit status of the last SLURM task that trained it and ended normally.
pub const SLURM_EXIT_FILE: &str = "slurm.exit";
/// In a model folder that `fadlora pretrain` exported: a copy of the pretraining run's record,
/// from which `fadlora report` says how the checkpoint was made.
pub const PRETRAINING_RECORD_FILE: &str = "pretraining_record.json";

/// `checkpoints/epoch-NNNN` (1-based epoch) of the run folder `out`.
pub fn epoch_dir(out: &Path, epoch: usize) -> PathBuf {
    out.join(CHECKPOINTS_DIR).join(format!("epoch-{epoch:04}"))
}
