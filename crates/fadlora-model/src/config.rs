//! wav2vec2 architecture settings, read straight from a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid wav2vec2 config.json: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported setting `{field}` = {value} (supported: {supported})")]
    Unsupported {
        field: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error("inconsistent config: {0}")]
    Inconsistent(String),
}

/// Normalisation inside the convolutional feature encoder (`feat_extract_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatExtractNorm {
    /// GroupNorm with one group per channel, on the first convolution only (wav2vec2-base).
    Group,
    /// LayerNorm over channels after every convolution (XLS-R, large-lv60).
    Layer,
}

/// wav2vec2 hyper-parameters with Hugging Face's names and defaults, so that a `config.json`
/// deserialises as is. Keys this model has no use for (CTC vocabulary, quantizer, x-vector
/// head, ...) are ignored; settings that would change the network in ways not implemented
/// here are rejected by [`Wav2Vec2Config::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Wav2Vec2Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub hidden_dropout: f64,
    pub activation_dropout: f64,
    pub attention_dropout: f64,
    pub feat_proj_dropout: f64,
    pub layerdrop: f64,
    pub layer_norm_eps: f64,
    pub feat_extract_norm: String,
    pub feat_extract_activation: String,
    pub conv_dim: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    pub do_stable_layer_norm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_feat_extract_layers: Option<usize>,
    pub add_adapter: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_attn_dim: Option<usize>,
}

impl Default for Wav2Vec2Config {
    /// Hugging Face's `Wav2Vec2Config()` defaults (wav2vec2-base).
    fn default() -> Self {
        Self {
            model_type: None,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout: 0.1,
            activation_dropout: 0.1,
            attention_dropout: 0.1,
            feat_proj_dropout: 0.0,
            layerdrop: 0.1,
            layer_norm_eps: 1e-5,
            feat_extract_norm: "group".into(),
            feat_extract_activation: "gelu".into(),
            conv_dim: vec![512; 7],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            do_stable_layer_norm: false,
            num_feat_extract_layers: None,
            add_adapter: false,
            adapter_attn_dim: None,
        }
    }
}

impl burn::config::Config for Wav2Vec2Config {}

impl Wav2Vec2Config {
    /// `facebook/wav2vec2-base`: post-LN encoder, GroupNorm on the first convolution.
    pub fn base() -> Self {
        Self {
            model_type: Some("wav2vec2".into()),
            ..Self::default()
        }
    }

    /// `facebook/wav2vec2-xls-r-300m`: 24 pre-LN layers of width 1024, LayerNorm convolutions.
    pub fn xls_r_300m() -> Self {
        Self {
            model_type: Some("wav2vec2".into()),
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            feat_extract_norm: "layer".into(),
            conv_bias: true,
            do_stable_layer_norm: true,
            hidden_dropout: 0.1,
            activation_dropout: 0.0,
            attention_dropout: 0.1,
            feat_proj_dropout: 0.1,
            layerdrop: 0.1,
            ..Self::default()
        }
    }

    /// A small XLS-R-shaped network (the CPU benchmark configuration of docs/reference.md §2):
    /// width 256, 4 layers, 4 heads, FFN 1024, seven 256-channel convolutions.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            conv_dim: vec![256; 7],
            ..Self::xls_r_300m()
        }
    }

    /// A toy XLS-R-shaped network that trains in seconds on two CPU cores (tests, smoke runs):
    /// width 32, 2 layers, 2 heads, FFN 64, seven 16-channel convolutions, positional conv
    /// kernel 16 in 4 groups. No dropout and no LayerDrop, so that a few epochs on a handful of
    /// utterances can fit them.
    pub fn micro() -> Self {
        Self {
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 64,
            conv_dim: vec![16; 7],
            num_conv_pos_embeddings: 16,
            num_conv_pos_embedding_groups: 4,
            hidden_dropout: 0.0,
            activation_dropout: 0.0,
            attention_dropout: 0.0,
            feat_proj_dropout: 0.0,
            layerdrop: 0.0,
            ..Self::xls_r_300m()
        }
    }

    /// The names [`Self::preset`] knows, smallest first.
    pub const PRESETS: [&'static str; 4] = ["micro", "tiny", "base", "xls-r-300m"];

    /// Looks a preset up by the name the command line uses.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "micro" => Some(Self::micro()),
            "tiny" => Some(Self::tiny()),
            "base" => Some(Self::base()),
            "xls-r-300m" | "xls_r_300m" => Some(Self::xls_r_300m()),
            _ => None,
        }
    }

    /// Parses a Hugging Face `config.json` and checks that it describes a supported network.
    pub fn from_hf_json_str(json: &str) -> Result<Self, ConfigError> {
        Self::from_json_named(json, "config.json")
    }

    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_hf_json_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_named(&json, &path.display().to_string())
    }

    fn from_json_named(json: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(json).map_err(|source| ConfigError::Json {
            path: path.to_string(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects every setting this implementation would not reproduce exactly.
    /// The width of Hugging Face's MMS attention adapters, which transformers builds only in
    /// the pre-LN layer: `adapter_attn_dim` on a post-LN model adds nothing, there as here.
    pub fn mms_adapter_dim(&self) -> Option<usize> {
        self.adapter_attn_dim.filter(|_| self.do_stable_layer_norm)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(model_type) = &self.model_type {
            if model_type != "wav2vec2" {
                return Err(ConfigError::Unsupported {
                    field: "model_type",
                    value: format!("{model_type:?}"),
                    supported: "\"wav2vec2\"",
                });
            }
        }
        self.feat_extract_norm()?;
        for (field, value) in [
            ("hidden_act", &self.hidden_act),
            ("feat_extract_activation", &self.feat_extract_activation),
        ] {
            if value != "gelu" {
                return Err(ConfigError::Unsupported {
                    field,
                    value: format!("{value:?}"),
                    supported: "\"gelu\"",
                });
            }
        }
        if self.add_adapter {
            return Err(ConfigError::Unsupported {
                field: "add_adapter",
                value: "true".into(),
                supported: "false (no convolutional adapter on top of the encoder)",
            });
        }
        if self.adapter_attn_dim == Some(0) {
            return Err(ConfigError::Unsupported {
                field: "adapter_attn_dim",
                value: "0".into(),
                supported: "null or a positive width (MMS attention adapters)",
            });
        }
        let n = self.conv_dim.len();
        if n == 0 || self.conv_kernel.len() != n || self.conv_stride.len() != n {
            return Err(ConfigError::Inconsistent(format!(
                "conv_dim, conv_kernel and conv_stride must have the same non-zero length, got {}, {} and {}",
                n,
                self.conv_kernel.len(),
                self.conv_stride.len()
            )));
        }
        if let Some(layers) = self.num_feat_extract_layers {
            if layers != n {
                return Err(ConfigError::Inconsistent(format!(
                    "num_feat_extract_layers is {layers} but conv_dim has {n} entries"
                )));
            }
        }
        for (i, (&k, &s)) in self.conv_kernel.iter().zip(&self.conv_stride).enumerate() {
            // The im2col formulation of the feature encoder reads each window from two
            // consecutive stride-sized blocks; every published wav2vec2 satisfies this.
            if s == 0 || k == 0 || k > 2 * s {
                return Err(ConfigError::Unsupported {
                    field: "conv_kernel",
                    value: format!("{k} with stride {s} at layer {i}"),
                    supported: "0 < kernel <= 2 * stride",
                });
            }
        }
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            return Err(ConfigError::Inconsistent(
                "hidden_size and num_attention_heads must be positive".into(),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::Inconsistent(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        let groups = self.num_conv_pos_embedding_groups;
        if groups == 0
            || !self.hidden_size.is_multiple_of(groups)
            || self.num_conv_pos_embeddings == 0
        {
            return Err(ConfigError::Inconsistent(format!(
                "hidden_size {} is not divisible by num_conv_pos_embedding_groups {} (kernel {})",
                self.hidden_size, groups, self.num_conv_pos_embeddings
            )));
        }
        for (field, p) in [
            ("hidden_dropout", self.hidden_dropout),
            ("activation_dropout", self.activation_dropout),
            ("attention_dropout", self.attention_dropout),
            ("feat_proj_dropout", self.feat_proj_dropout),
            ("layerdrop", self.layerdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigError::Inconsistent(format!(
                    "{field} must lie in [0, 1), got {p}"
                )));
            }
        }
        Ok(())
    }

    /// The feature-encoder normalisation, or an error naming the unsupported value.
    pub fn feat_extract_norm(&self) -> Result<FeatExtractNorm, ConfigError> {
        match self.feat_extract_norm.as_str() {
            "group" => Ok(FeatExtractNorm::Group),
            "layer" => Ok(FeatExtractNorm::Layer),
            other => Err(ConfigError::Unsupported {
                field: "feat_extract_norm",
                value: format!("{other:?}"),
                supported: "\"group\" or \"layer\"",
            }),
        }
    }

    /// Channels of the last convolution (the input width of the feature projection).
    pub fn conv_out_dim(&self) -> usize {
        *self
            .conv_dim
            .last()
            .expect("validated config has convolutions")
    }

    /// Number of frames the feature encoder makes of `samples` input samples, or `None`
    /// when the input is shorter than one receptive field.
    pub fn num_frames(&self, samples: usize) -> Option<usize> {
        let mut len = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if len < k {
                return None;
            }
            len = (len - k) / s + 1;
        }
        Some(len)
    }

    /// `(d_in, d_out)` of the encoder projection `target`.
    pub fn projection_dims(&self, target: fadlora_run::LoraTarget) -> (usize, usize) {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        match target {
            fadlora_run::LoraTarget::FfnIn => (h, f),
            fadlora_run::LoraTarget::FfnOut => (f, h),
            _ => (h, h),
        }
    }

    /// The fewest input samples that give one output frame (400 for the standard stack).
    pub fn receptive_field(&self) -> usize {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .rev()
            .fold(1, |len, (&k, &s)| (len - 1) * s + k)
    }
}
