//! Low-rank adaptation (LoRA, Hu et al. 2021) of the encoder's linear layers, as Hugging Face
//! PEFT does it: `y = x W + b + s * B(A(dropout(x)))` with `s = alpha / r` (or `alpha / sqrt(r)`
//! with rsLoRA), `A` Kaiming-uniform and `B` zero, so an adapted model starts exactly at the
//! pretrained one.
//!
//! [`Wav2Vec2Model::with_lora`](crate::Wav2Vec2Model::with_lora) freezes every pretrained
//! parameter and puts trainable adapters on the projections a [`LoraConfig`] names; full
//! fine-tuning is the same model without it. Adapters fold into the weights for inference
//! ([`Wav2Vec2Model::merge_lora`](crate::Wav2Vec2Model::merge_lora)) and travel in PEFT's file
//! layout ([`crate::adapter`]).
//!
//! Three parts, each importing only those before it, so that the encoder can be built of the
//! layer and the model can hold the configuration: `layer` (the adapted linear layer, which
//! knows nothing of wav2vec2), `config` (which projections of which layers to adapt, and how)
//! and `model` (putting adapters on a model and taking them off).

//!
//! (IA)^3 ([`Ia3Config`]) shares the same adapted linear layer: a learned rescaling of a
//! projection's output or input instead of a low-rank update. A mixture of LoRA experts
//! ([`MoeConfig`], `LoraConfig::moe`) puts several adapters and a router on each projection.

mod config;
mod ia3;
mod layer;
mod model;
mod moe;

pub use config::{parse_targets, LoraConfig, LoraError, LoraTarget};
pub use ia3::{Ia3, Ia3Config};
pub use layer::{Lora, LoraLinear, LoraLinearConfig, NonFiniteMerge};
pub(crate) use model::Freeze;
pub use moe::{balance_loss, BalanceSink, MoeConfig, MoeLora, MoeRouting};
