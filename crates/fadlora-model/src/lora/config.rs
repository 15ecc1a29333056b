//! What to adapt: the projections ([`LoraTarget`]), the layers, the rank and scaling
//! ([`LoraConfig`]), and why a configuration cannot be applied ([`LoraError`]).

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::layer::{scaling, LoraLinearConfig};
use crate::config::Wav2Vec2Config;

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
    #[error("the model already carries LoRA adapters; adapt the base model once")]
    AlreadyAdapted,
    #[error("the model carries no LoRA adapters")]
    NotAdapted,
    /// PEFT's `safe_merge` check: the adapter is left unmerged.
    #[error("merging the LoRA adapter of layer {layer} {target} gives non-finite weights (NaN or infinity in W + s A B)")]
    NonFiniteMerge { layer: usize, target: LoraTarget },
}

/// An encoder projection that can carry an adapter. Names (`q`, `k`, `v`, `o`, `ffn_in`,
/// `ffn_out`) are those of run TOMLs and the command line; [`LoraTarget::hf_name`] gives the
/// Hugging Face module name PEFT's `target_modules` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    FfnIn,
    FfnOut,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 6] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::FfnIn,
        LoraTarget::FfnOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
            LoraTarget::O => "o",
            LoraTarget::FfnIn => "ffn_in",
            LoraTarget::FfnOut => "ffn_out",
        }
    }

    /// The module name in Hugging Face's `Wav2Vec2EncoderLayer` (PEFT's `target_modules`).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "out_proj",
            LoraTarget::FfnIn => "intermediate_dense",
            LoraTarget::FfnOut => "output_dense",
        }
    }

    /// The module path inside an encoder layer (`attention.q_proj`, ...).
    pub fn hf_path(self) -> &'static str {
        match self {
            LoraTarget::Q => "attention.q_proj",
            LoraTarget::K => "attention.k_proj",
            LoraTarget::V => "attention.v_proj",
            LoraTarget::O => "attention.out_proj",
            LoraTarget::FfnIn => "feed_forward.intermediate_dense",
            LoraTarget::FfnOut => "feed_forward.output_dense",
        }
    }

    /// Reads a PEFT `target_modules` entry: a module name (`q_proj`) or its path inside the
    /// layer (`attention.q_proj`).
    pub fn from_hf_name(name: &str) -> Result<Self, LoraError> {
        Self::ALL
            .into_iter()
            .find(|t| name == t.hf_name() || name == t.hf_path())
            .ok_or_else(|| LoraError::UnknownTarget {
                name: name.to_string(),
                valid: Self::ALL.map(LoraTarget::hf_name).join(", "),
            })
    }

    /// `(d_in, d_out)` of this projection in `config`'s encoder.
    pub fn dims(self, config: &Wav2Vec2Config) -> (usize, usize) {
        let (h, f) = (config.hidden_size, config.intermediate_size);
        match self {
            LoraTarget::FfnIn => (h, f),
            LoraTarget::FfnOut => (f, h),
            _ => (h, h),
        }
    }
}

impl FromStr for LoraTarget {
    type Err = LoraError;

    fn from_str(s: &str) -> Result<Self, LoraError> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| LoraError::UnknownTarget {
                name: s.to_string(),
                valid: Self::ALL.map(LoraTarget::as_str).join(", "),
            })
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a comma-separated target list (`q,v`), in the order given, without duplicates.
pub fn parse_targets(list: &str) -> Result<Vec<LoraTarget>, LoraError> {
    let mut targets = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let target: LoraTarget = part.parse()?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_name_the_valid_ones() {
        assert_eq!(
            parse_targets("q, v,q").unwrap(),
            vec![LoraTarget::Q, LoraTarget::V]
        );
        for t in LoraTarget::ALL {
            assert_eq!(t.as_str().parse::<LoraTarget>().unwrap(), t);
            assert_eq!(LoraTarget::from_hf_name(t.hf_name()).unwrap(), t);
            assert_eq!(LoraTarget::from_hf_name(t.hf_path()).unwrap(), t);
        }
        let err = "query".parse::<LoraTarget>().unwrap_err().to_string();
        assert!(
            err.contains("`query`") && err.contains("q, k, v, o, ffn_in, ffn_out"),
            "{err}"
        );
        let err = LoraTarget::from_hf_name("fc9").unwrap_err().to_string();
        assert!(
            err.contains("`fc9`") && err.contains("intermediate_dense"),
            "{err}"
        );
    }
}
