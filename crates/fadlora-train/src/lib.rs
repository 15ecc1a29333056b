//! Training and evaluation of fake-audio detectors: a wav2vec2 front end (fully fine-tuned,
//! LoRA-adapted, or frozen under a probe) with a pluggable back end (mean + linear, or
//! AASIST), trained from a validated run TOML on any compiled backend, with EER-based model selection on the dev set, resumable
//! checkpoints, score files and a JSON run record with resource measurements.
//!
//! - [`RunConfig`]: the run TOML (fadlora-run's `config` documents every key; [`config`] adds
//!   the rules that need the model).
//! - [`train()`]: trains or resumes a run; writes into `output_dir`:
//!   `config.toml` (resolved), `progress.json`, `checkpoints/epoch-NNNN/`, `best/`
//!   (`detector.json` + `trainable.safetensors` [+ `base.safetensors`]; LoRA runs also
//!   `adapter/` in PEFT's layout),
//!   `scores/{dev,eval}.txt` and `scores/<name>.txt` per `[[eval_sets]]` entry, `record.json`.
//! - [`checkpoint::load_detector`] + [`scores::score_dataset`]: evaluate a trained detector.
//! - `fadlora_run::scores::evaluate_scores`: EER / min t-DCF of a score file against a protocol.
//! - [`bench::bench_step`]: one-training-step benchmark.
//! - [`backend`]: the `flex` / `cuda` / `wgpu` switch.
//! - [`aasist`]: the `[head] kind = "aasist"` back end, SSL_Anti-spoofing's AASIST (checked
//!   against a PyTorch version of it, `fixtures/aasist/`); checkpoints keep its BatchNorm
//!   running statistics beside the trainable parameters.

pub mod aasist;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod detect;
pub mod detector;
mod error;
pub mod infer;
mod lora_hookup;
pub mod measure;
pub mod scores;
pub mod sls;
pub mod train;

pub use backend::{run_on, BackendEnv, BackendJob, Compiled};
pub use config::{load_run_config, parse_run_config};
pub use detector::{Detector, DetectorConfig};
pub use error::TrainError;
pub use fadlora_run::{BackendKind, HeadKind, RunConfig, RunRecord};
pub use train::{train, TrainOptions, TrainOutcome};
