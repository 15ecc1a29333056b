//! Self-supervised pretraining of the wav2vec2 front end, so that LoRA has learned features to
//! adapt: HuBERT's first iteration. Targets are k-means clusters of MFCC frames of the
//! pretraining audio ([`targets`], computed here in Rust with `fadlora-ssl`); spans of frames
//! are masked with transformers' semantics (`mask_time_prob`, `mask_time_length`, the learned
//! `masked_spec_embed`), and a classifier on the encoder output must name the cluster of each
//! masked frame ([`fadlora_model::pretraining`]).
//!
//! - [`PretrainConfig`]: the TOML (`fadlora pretrain --config`).
//! - [`pretrain()`]: trains or resumes a run folder with the trainer's machinery (run lock,
//!   atomic files, seeded and exactly resumable, progress bar) and ends with the network in
//!   Hugging Face layout (`model/`) and a `record.json`.

pub mod config;
mod error;
pub mod pretrain;
pub mod targets;

pub use config::PretrainConfig;
pub use error::PretrainError;
pub use pretrain::{pretrain, PretrainOptions, PretrainOutcome, PretrainRecord};
