//! (IA)^3 (Liu et al. 2022, "Few-shot parameter-efficient fine-tuning is better and cheaper
//! than in-context learning"), as Hugging Face PEFT implements it: a learned vector `l` that
//! rescales a projection's output (`(x W + b) * l`) or, for a feed-forward target, its input
//! (`(x * l) W + b`). `l` starts at 1, so an adapted model starts exactly at the pretrained
//! one; it adds one parameter per output (per input for feed-forward targets).

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::prelude::*;

use super::config::{LoraError, LoraTarget};

/// Which projections of which layers get (IA)^3 vectors.
#[derive(Config, Debug, PartialEq)]
pub struct Ia3Config {
    /// Projections rescaled (PEFT's `target_modules`). The paper's choice: keys, values and
    /// the feed-forward block's inner activation (the input of `output_dense`).
    #[config(default = "vec![LoraTarget::K, LoraTarget::V, LoraTarget::FfnOut]")]
    pub targets: Vec<LoraTarget>,
    /// The targets whose input rather than output is rescaled (PEFT's `feedforward_modules`);
    /// each must also be in `targets`.
    #[config(default = "vec![LoraTarget::FfnOut]")]
    pub feedforward: Vec<LoraTarget>,
}

impl Ia3Config {
    /// Every layer is adapted, as PEFT's `IA3Config` does (it has no layer selection).
    pub fn check(&self) -> Result<(), LoraError> {
        if self.targets.is_empty() {
            return Err(LoraError::Invalid {
                field: "targets",
                message: "name at least one of q, k, v, o, ffn_in, ffn_out".into(),
            });
        }
        if let Some(t) = self.feedforward.iter().find(|t| !self.targets.contains(t)) {
            return Err(LoraError::Invalid {
                field: "feedforward",
                message: format!("`{t}` is not among the targets"),
            });
        }
        Ok(())
    }

    /// A fresh vector of ones for a `d_in -> d_out` projection `target`.
    pub fn init<B: Backend>(
        &self,
        target: LoraTarget,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Ia3<B> {
        let feedforward = self.feedforward.contains(&target);
        let len = if feedforward { d_in } else { d_out };
        Ia3 {
            scale: Initializer::Ones.init([len], device),
            feedforward,
            merged: false,
        }
    }
}

/// The (IA)^3 vector of one projection.
#[derive(Module, Debug)]
pub struct Ia3<B: Backend> {
    /// `[d_input]` when `feedforward`, else `[d_output]` (PEFT's `ia3_l`, flattened).
    pub scale: Param<Tensor<B, 1>>,
    pub feedforward: bool,
    /// Whether the vector is folded into the weight (and bias) and so skipped in `forward`.
    pub merged: bool,
}
