//! Bottleneck adapters inside the encoder layers: small trainable MLPs added to a frozen
//! wav2vec2, one per layer, under Hugging Face's key `encoder.layers.N.adapter_layer`.
//!
//! Two placements ([`AdapterKind`]):
//!
//! - **`mms`**: Hugging Face's `Wav2Vec2AttnAdapterLayer`, the per-language adapters of MMS
//!   (`adapter_attn_dim` in `config.json`). In the pre-LN layer, after the feed-forward block:
//!   `x = x + linear_2(relu(linear_1(layer_norm(x))))`, with its own `nn.LayerNorm` (eps
//!   1e-5, PyTorch's default, whatever `layer_norm_eps` says). transformers has it only in the
//!   pre-LN (`do_stable_layer_norm`) layer, so it is refused on post-LN models. A checkpoint
//!   whose `config.json` sets `adapter_attn_dim` loads its adapters with the model.
//! - **`bottleneck`**: the Houlsby/Pfeiffer adapter on the feed-forward block's output, before
//!   that block's residual sum: `ff = ff + linear_2(relu(linear_1(ff)))`, no LayerNorm, in
//!   either layer layout.
//!
//! Fresh adapters start with `linear_2` all zeros, so an adapted model computes exactly what
//! its base does until the adapters train; `linear_1` is initialised as Hugging Face's
//! `_init_weights` does (`N(0, 0.02)`, zero bias).

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Initializer, Linear};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use crate::load::{LoadError, TensorSource};
use crate::lora::LoraError;
use crate::model::Wav2Vec2Model;
use crate::norm::Norm;
use crate::ops::ModelBackend;

/// PyTorch's `nn.LayerNorm` default, which `Wav2Vec2AttnAdapterLayer` keeps.
pub const MMS_ADAPTER_NORM_EPS: f64 = 1e-5;

/// The run TOML's `[adapter] kind` (defined in fadlora-run, shared with the trainer and sweep).
pub use fadlora_run::AdapterKind;

/// Which adapters [`Wav2Vec2Model::try_with_adapters`] adds: one of `size` hidden units in
/// every encoder layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterLayerConfig {
    pub kind: AdapterKind,
    /// The bottleneck width (`adapter_attn_dim` for MMS).
    pub size: usize,
}

impl AdapterLayerConfig {
    pub fn new(kind: AdapterKind, size: usize) -> Self {
        Self { kind, size }
    }

    /// Trainable parameters one layer of width `hidden` gains.
    pub fn params_per_layer(&self, hidden: usize) -> usize {
        let norm = match self.kind {
            AdapterKind::Mms => 2 * hidden,
            AdapterKind::Bottleneck => 0,
        };
        norm + hidden * self.size + self.size + self.size * hidden + hidden
    }
}

/// `linear_2(relu(linear_1(norm(x))))`; `norm` only for [`AdapterKind::Mms`].
#[derive(Module, Debug)]
pub struct AdapterLayer<B: Backend> {
    pub norm: Option<Norm<B>>,
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
    #[module(skip)]
    pub kind: AdapterKind,
}

impl<B: Backend> AdapterLayer<B> {
    /// A fresh adapter that adds nothing yet (`linear_2` is zero).
    pub fn init(config: &AdapterLayerConfig, hidden: usize, device: &B::Device) -> Self {
        let size = config.size;
        Self {
            norm: (config.kind == AdapterKind::Mms)
                .then(|| Norm::layer_norm(hidden, MMS_ADAPTER_NORM_EPS, device)),
            linear_1: Linear {
                weight: Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                }
                .init_with([hidden, size], Some(hidden), Some(size), device),
                bias: Some(Initializer::Zeros.init([size], device)),
            },
            linear_2: Linear {
                weight: Initializer::Zeros.init([size, hidden], device),
                bias: Some(Initializer::Zeros.init([hidden], device)),
            },
            kind: config.kind,
        }
    }

    /// Hugging Face's `{prefix}.norm`, `.linear_1` and `.linear_2` of an MMS adapter.
    pub fn from_checkpoint(
        src: &mut TensorSource,
        prefix: &str,
        hidden: usize,
        size: usize,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            norm: Some(src.take_norm(
                &format!("{prefix}.norm"),
                hidden,
                MMS_ADAPTER_NORM_EPS,
                device,
            )?),
            linear_1: src.take_linear(&format!("{prefix}.linear_1"), hidden, size, device)?,
            linear_2: src.take_linear(&format!("{prefix}.linear_2"), size, hidden, device)?,
            kind: AdapterKind::Mms,
        })
    }

    /// The bottleneck width.
    pub fn size(&self) -> usize {
        self.linear_1.weight.lazy_shape().dims::<2>()[1]
    }
}

impl<B: ModelBackend> AdapterLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        self.linear_2.forward(relu(self.linear_1.forward(x)))
    }
}

/// Marks every float parameter it visits as trainable (without initialising lazy ones).
pub(crate) struct Unfreeze;

impl<B: Backend> ModuleMapper<B> for Unfreeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Freezes every pretrained parameter and gives every encoder layer a trainable adapter as
    /// `config` says. Adapters the checkpoint already holds (an MMS model) are kept and train
    /// from their pretrained values; they must be of the same kind and size.
    pub fn try_with_adapters(
        self,
        config: &AdapterLayerConfig,
        device: &B::Device,
    ) -> Result<Self, LoraError> {
        if self.lora.is_some() || self.ia3.is_some() || self.adapter.is_some() {
            return Err(LoraError::AlreadyAdapted);
        }
        if config.size == 0 {
            return Err(LoraError::Adapter(
                "`size` must be at least 1 hidden unit".into(),
            ));
        }
        if config.kind == AdapterKind::Mms && !self.config.do_stable_layer_norm {
            return Err(LoraError::Adapter(
                "MMS adapters exist only in the pre-LN layout (do_stable_layer_norm = true, as \
                 XLS-R); use kind = \"bottleneck\" on this model"
                    .into(),
            ));
        }
        let hidden = self.config.hidden_size;
        let mut model = self.map(&mut crate::lora::Freeze);
        let layers = std::mem::take(&mut model.encoder.layers);
        let mut layers_out = Vec::with_capacity(layers.len());
        for (index, mut layer) in layers.into_iter().enumerate() {
            layer.adapter_layer = Some(match layer.adapter_layer.take() {
                Some(existing) => {
                    if existing.kind != config.kind || existing.size() != config.size {
                        return Err(LoraError::Adapter(format!(
                            "layer {index} already has a {} adapter of size {}, not a {} adapter \
                             of size {}",
                            existing.kind,
                            existing.size(),
                            config.kind,
                            config.size
                        )));
                    }
                    existing.map(&mut Unfreeze)
                }
                None => AdapterLayer::init(config, hidden, device),
            });
            layers_out.push(layer);
        }
        model.encoder.layers = layers_out;
        model.adapter = Some(config.clone());
        Ok(model)
    }

    /// The encoder layers' adapters, in layer order.
    pub fn adapter_layers(&self) -> Vec<(usize, &AdapterLayer<B>)> {
        self.encoder
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, layer)| layer.adapter_layer.as_ref().map(|a| (i, a)))
            .collect()
    }
}
