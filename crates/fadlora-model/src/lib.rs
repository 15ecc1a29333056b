//! wav2vec2 in burn, numerically equal to Hugging Face's `Wav2Vec2Model`, loading its
//! checkpoints. Module and field names mirror the checkpoint keys
//! (`feature_extractor.conv_layers.N.conv`, `encoder.layers.N.attention.q_proj`, ...).
//!
//! Activations are time-major (`[batch, frames, channels]`) throughout; the convolutions are
//! im2col + matmul (see [`conv`]) because burn 0.21's `Conv1d` is far slower on these shapes.
//!
//! fairseq checkpoints ([`fairseq`]): [`Wav2Vec2Model::from_fairseq`] reads a fairseq wav2vec2
//! `.pt` (pre-trained or CTC fine-tuned) without Python, its architecture from the settings
//! saved in it and its tensors renamed to the Hugging Face names above; unsupported settings and
//! unknown tensors are [`FairseqError`]s naming the file and the setting or tensor.
//!
//! Masked prediction ([`pretraining`]): [`Wav2Vec2Model::forward_masked`] and a cluster
//! classifier, the objective `fadlora pretrain` trains a front end with.
//!
//! LoRA ([`lora`]): [`Wav2Vec2Model::with_lora`] freezes the pretrained weights and adds
//! adapters to any of the six encoder projections; [`adapter`] reads and writes them in
//! Hugging Face PEFT's layout; [`count_trainable`] gives PEFT's trainable-parameter count.
//! The same projections take DoRA, (IA)^3 vectors or a mixture of LoRA experts with a router
//! ([`MoeConfig`]). [`adapter_layer`]: bottleneck adapters in every encoder layer, Hugging
//! Face's MMS adapters (`adapter_attn_dim`) among them; [`partial`]: full fine-tuning of the
//! top or bottom encoder layers only.
//!
//! The model runs on any [`ModelBackend`] ([`ops`]): burn's backend plus GELU, LayerNorm and
//! softmax as single operations with their own backward (exact erf GELU gradients on every
//! backend, rayon kernels on the CPU). It computes in the float type of its input
//! ([`precision`]: f32, bf16 or f16 matmuls and activations, LayerNorm and softmax in f32).

pub mod adapter;
pub mod adapter_layer;
pub mod config;
pub mod conv;
pub mod encoder;
pub mod export;
pub mod fairseq;
pub mod feature;
pub mod linear;
pub mod load;
pub mod lora;
pub mod model;
pub mod norm;
pub mod ops;
pub mod params;
pub mod partial;
pub mod precision;
pub mod pretraining;
pub mod tokens;

pub use adapter::{AdapterError, SaveAdapterOptions};
pub use adapter_layer::{AdapterKind, AdapterLayer, AdapterLayerConfig};
pub use config::{ConfigError, FeatExtractNorm, Wav2Vec2Config};
pub use export::{ExportDtype, ExportError, ExportOptions};
pub use fairseq::{FairseqCheckpoint, FairseqError};
pub use linear::EncoderLinear;
pub use load::{LoadError, TensorSource};
pub use lora::{Ia3Config, LoraConfig, LoraError, LoraLinear, LoraTarget, MoeConfig, MoeRouting};
pub use model::{Wav2Vec2Model, Wav2Vec2Output};
pub use ops::{ModelBackend, TrainBackend};
pub use params::{count_params, count_trainable, ParamCounts, ParamSummary};
pub use precision::{Precision, PrecisionDType};
pub use pretraining::{MaskedPredictionOutput, Wav2Vec2ForMaskedPrediction};
