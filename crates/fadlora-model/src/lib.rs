//! wav2vec2 in burn, numerically equal to Hugging Face's `Wav2Vec2Model`, loading its
//! checkpoints. Module and field names mirror the checkpoint keys
//! (`feature_extractor.conv_layers.N.conv`, `encoder.layers.N.attention.q_proj`, ...).
//!
//! Activations are time-major (`[batch, frames, channels]`) throughout; the convolutions are
//! im2col + matmul (see [`conv`]) because burn 0.21's `Conv1d` is far slower on these shapes.

pub mod config;
pub mod conv;
pub mod encoder;
pub mod feature;
pub mod linear;
pub mod load;
pub mod model;
pub mod norm;
pub mod params;

pub use config::{ConfigError, FeatExtractNorm, Wav2Vec2Config};
pub use linear::EncoderLinear;
pub use load::{LoadError, TensorSource};
pub use model::{Wav2Vec2Model, Wav2Vec2Output};
pub use params::{count_params, ParamSummary};
