//! The pretraining TOML (`fadlora pretrain --config`).
//!
//! ```toml
//! name = "tiny_hubert"
//! backend = "flex"                       # flex (default) | cuda | wgpu
//! seed = 0
//! output_dir = "../../results/pretrain/tiny_hubert"
//!
//! [data]
//! manifest = "../../datasets/pretrain/pretrain.csv"   # a fadlora CSV list (path,label,...,split)
//! train_split = "train"                  # default
//! valid_split = "dev"                    # default; the list's `valid` rows read as dev
//! crop_samples = 32000                   # training and validation windows (2 s)
//!
//! [model]                                # as in a run TOML: preset, config or checkpoint
//! preset = "tiny"
//!
//! [targets]                              # HuBERT's first iteration: k-means of MFCC frames
//! clusters = 100
//! fit_frames = 100000                    # frames k-means is fitted on (a random subset)
//! max_iterations = 50
//!
//! [mask]                                 # transformers' names and semantics
//! mask_time_prob = 0.65
//! mask_time_length = 10
//! mask_time_min_masks = 2
//!
//! [optim]                                # as in a run TOML (AdamW, warmup + cosine, ...)
//! lr = 5e-4
//!
//! [train]
//! batch_size = 8
//! max_steps = 4000
//! eval_every = 250                       # validation and a checkpoint every N steps
//! export = "f16"                         # f32 | f16: how model/model.safetensors is stored
//! ```
//!
//! Relative paths are relative to the TOML's folder.

use std::path::{Path, PathBuf};

use fadlora_run::config::{located, parse_toml, ModelSection, OptimSection};
use fadlora_run::{BackendKind, RunError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "flex")]
    pub backend: BackendKind,
    #[serde(default)]
    pub seed: u64,
    pub output_dir: PathBuf,
    pub data: PretrainData,
    pub model: ModelSection,
    #[serde(default)]
    pub targets: TargetsSection,
    #[serde(default)]
    pub mask: MaskSection,
    #[serde(default)]
    pub optim: OptimSection,
    pub train: PretrainTrain,
}

fn flex() -> BackendKind {
    BackendKind::Flex
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainData {
    /// A CSV list (`path,label[,speaker,system,split]`), e.g. what
    /// `cargo xtask dataset build -- --pretrain` writes; labels are ignored.
    pub manifest: PathBuf,
    #[serde(default = "train_split")]
    pub train_split: String,
    #[serde(default = "valid_split")]
    pub valid_split: String,
    #[serde(default = "crop_samples")]
    pub crop_samples: usize,
}

fn train_split() -> String {
    "train".into()
}
fn valid_split() -> String {
    "dev".into()
}
fn crop_samples() -> usize {
    32_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetsSection {
    pub clusters: usize,
    pub fit_frames: usize,
    pub max_iterations: usize,
}

impl Default for TargetsSection {
    /// HuBERT's first iteration: 100 clusters.
    fn default() -> Self {
        TargetsSection {
            clusters: 100,
            fit_frames: 100_000,
            max_iterations: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskSection {
    pub mask_time_prob: f64,
    pub mask_time_length: usize,
    pub mask_time_min_masks: usize,
}

impl Default for MaskSection {
    /// wav2vec 2.0's pretraining masks (p = 0.65, spans of 10) with transformers' minimum of 2.
    fn default() -> Self {
        MaskSection {
            mask_time_prob: 0.65,
            mask_time_length: 10,
            mask_time_min_masks: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportPrecision {
    F32,
    /// Half the size (the shipped checkpoint is stored so); loaders widen it.
    #[default]
    F16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainTrain {
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    pub max_steps: u64,
    #[serde(default = "eval_every")]
    pub eval_every: u64,
    #[serde(default = "batch_size")]
    pub valid_batch_size: usize,
    /// Steps left out of the step-time statistics (allocation and autotune warm-up).
    #[serde(default = "warmup")]
    pub timing_warmup_steps: u64,
    #[serde(default)]
    pub export: ExportPrecision,
}

fn batch_size() -> usize {
    8
}
fn eval_every() -> u64 {
    250
}
fn warmup() -> u64 {
    3
}

impl PretrainConfig {
    /// Reads and validates a pretraining TOML; relative paths are resolved against its folder.
    /// Errors name the file, line and dotted key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, RunError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
        let mut config = Self::parse(&text, path)?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    /// Parses and validates TOML text (paths as written).
    pub fn parse(text: &str, path: &Path) -> Result<Self, RunError> {
        let config: PretrainConfig = parse_toml(text, path)?;
        if let Err((key, message)) = config.check() {
            return Err(located(text, path, key, message));
        }
        Ok(config)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        let fail = |key, message: &str| Err((key, message.to_string()));
        if self.output_dir.as_os_str().is_empty() {
            return fail("output_dir", "is required");
        }
        if self.data.crop_samples < 400 {
            return fail("data.crop_samples", "must be at least 400 (25 ms)");
        }
        if self.targets.clusters < 2 {
            return fail("targets.clusters", "must be at least 2");
        }
        if self.targets.fit_frames < self.targets.clusters {
            return fail("targets.fit_frames", "must be at least `clusters`");
        }
        if self.targets.max_iterations == 0 {
            return fail("targets.max_iterations", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.mask.mask_time_prob) || self.mask.mask_time_prob == 0.0 {
            return fail(
                "mask.mask_time_prob",
                "must be in (0, 1]: nothing masked, nothing to predict",
            );
        }
        if self.mask.mask_time_length == 0 {
            return fail("mask.mask_time_length", "must be at least 1");
        }
        if self.train.batch_size == 0 {
            return fail("train.batch_size", "must be at least 1");
        }
        if self.train.valid_batch_size == 0 {
            return fail("train.valid_batch_size", "must be at least 1");
        }
        if self.train.max_steps == 0 {
            return fail("train.max_steps", "must be at least 1");
        }
        if self.train.eval_every == 0 {
            return fail("train.eval_every", "must be at least 1");
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return fail("optim.lr", "must be positive");
        }
        if self.optim.grad_accumulation != 1 {
            return fail("optim.grad_accumulation", "is not supported by pretraining");
        }
        if self.optim.grad_clip_norm.is_some() {
            return fail(
                "optim.grad_clip_norm",
                "is not supported by pretraining yet",
            );
        }
        if self.model.checkpoint.is_some() {
            return fail(
                "model.checkpoint",
                "pretraining starts from a random network: give `preset` or `config`",
            );
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &Path| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        self.output_dir = join(&self.output_dir);
        self.data.manifest = join(&self.data.manifest);
        if let Some(c) = &self.model.config {
            self.model.config = Some(join(c));
        }
    }

    /// The resolved configuration as TOML: a resumed run must find the same.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a pretraining config serialises")
    }
}
