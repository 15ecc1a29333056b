//! What to adapt: the projections ([`LoraTarget`]), the layers, the rank and scaling
//! ([`LoraConfig`]), and why a configuration cannot be applied ([`LoraError`]).

use burn::config::Config;

use super::layer::{scaling, LoraLinearConfig};
use super::moe::MoeConfig;

/// Why a LoRA configuration cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoraError {
    #[error("unknown LoRA target `{name}` (valid: {valid})")]
    UnknownTarget { name: String, valid: String },
    #[error("LoRA layer index {layer} is out of range: the model has layers 0..{num_layers}")]
    LayerOutOfRange { layer: usize, num_layers: usize },
    #[error("invalid LoRA setting `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the model already carries adapters (LoRA, (IA)^3 or adapter layers); adapt the base model once")]
    AlreadyAdapted,
    #[error("invalid adapter layers: {0}")]
    Adapter(String),
    #[error("invalid partial fine-tuning: {0}")]
    Partial(String),
    #[error("the model carries no LoRA adapters")]
    NotAdapted,
    #[error("PEFT has no file layout for a mixture of LoRA experts: keep the run's trainable.safetensors (fadlora eval and detect read it)")]
    NoPeftLayout,
    /// PEFT's `safe_merge` check: the adapter is left unmerged.
    #[error("merging the LoRA adapter of layer {layer} {target} gives non-finite weights (NaN or infinity in W + s A B)")]
    NonFiniteMerge { layer: usize, target: LoraTarget },
}

/// The run TOML's target names (defined in fadlora-run, shared with the trainer and sweep).
pub use fadlora_run::{parse_targets, LoraTarget};

impl From<fadlora_run::UnknownLoraTarget> for LoraError {
    fn from(e: fadlora_run::UnknownLoraTarget) -> Self {
        LoraError::UnknownTarget {
            name: e.name,
            valid: e.valid,
        }
    }
}

/// Which projections of which layers get adapters, and how they are shaped and scaled.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of every adapter.
    pub rank: usize,
    /// `alpha`: the adapter output is scaled by `alpha / r` (`alpha / sqrt(r)` with rsLoRA).
    pub alpha: f64,
    /// Dropout on the adapter's input (training only), as PEFT's `lora_dropout`.
    #[config(default = 0.0)]
    pub dropout: f64,
    #[config(default = "vec![LoraTarget::Q, LoraTarget::V]")]
    pub targets: Vec<LoraTarget>,
    /// Encoder layer indices to adapt (PEFT's `layers_to_transform`); all when `None`.
    pub layers: Option<Vec<usize>>,
    /// Rank-stabilised scaling `alpha / sqrt(r)` (Kalajdzievski 2023; PEFT's `use_rslora`).
    #[config(default = false)]
    pub use_rslora: bool,
    /// Weight-decomposed adapters (DoRA; PEFT's `use_dora`): each adapted projection also
    /// learns a magnitude per output, `d_out` parameters more.
    #[config(default = false)]
    pub use_dora: bool,
    /// A mixture of `experts` adapters of this rank per projection, mixed by a learned router,
    /// instead of one adapter. Not with DoRA.
    #[config(default = "None")]
    pub moe: Option<MoeConfig>,
}

impl LoraConfig {
    /// The factor on `B(A(x))`.
    pub fn scaling(&self) -> f64 {
        scaling(self.alpha, self.rank, self.use_rslora)
    }

    /// Checks the values, and the layer indices against a model of `num_layers` layers.
    pub fn check(&self, num_layers: usize) -> Result<(), LoraError> {
        let invalid = |field, message: &str| LoraError::Invalid {
            field,
            message: message.to_string(),
        };
        if self.rank == 0 {
            return Err(invalid("rank", "must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(invalid("alpha", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid("dropout", "must lie in [0, 1)"));
        }
        if self.targets.is_empty() {
            return Err(invalid(
                "targets",
                "name at least one of q, k, v, o, ffn_in, ffn_out",
            ));
        }
        if let Some(moe) = &self.moe {
            if moe.experts < 2 {
                return Err(invalid("moe.experts", "a mixture needs at least 2 experts"));
            }
            if !(moe.balance_loss.is_finite() && moe.balance_loss >= 0.0) {
                return Err(invalid("moe.balance_loss", "must be a number >= 0"));
            }
            if self.use_dora {
                return Err(invalid("moe", "a mixture of experts has no DoRA form"));
            }
        }
        if let Some(layers) = &self.layers {
            if layers.is_empty() {
                return Err(invalid("layers", "leave it out to adapt every layer"));
            }
            if let Some(&layer) = layers.iter().find(|&&l| l >= num_layers) {
                return Err(LoraError::LayerOutOfRange { layer, num_layers });
            }
        }
        Ok(())
    }

    /// Whether encoder layer `index` is adapted.
    pub fn adapts_layer(&self, index: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&index))
    }

    /// The settings of one adapter of shape `d_in -> d_out`.
    pub fn linear(&self, d_input: usize, d_output: usize) -> LoraLinearConfig {
        LoraLinearConfig::new(d_input, d_output, self.rank, self.alpha)
            .with_dropout(self.dropout)
            .with_use_rslora(self.use_rslora)
            .with_use_dora(self.use_dora)
    }
}
