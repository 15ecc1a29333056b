//! The one place that decides what an encoder linear layer is.
//!
//! Every projection of the transformer (`q_proj`, `k_proj`, `v_proj`, `out_proj`,
//! `intermediate_dense`, `output_dense`) is an [`EncoderLinear`], built by [`init_linear`] or
//! [`linear_from_checkpoint`] and applied with its `forward`. It is a [`LoraLinear`]: a plain
//! linear layer until [`crate::Wav2Vec2Model::with_lora`] gives it an adapter.

use burn::nn::{Initializer, Linear};
use burn::prelude::*;

use crate::load::{LoadError, TensorSource};
use crate::lora::LoraLinear;

/// A linear layer of the transformer encoder: `y = x W + b`, `W` stored `[d_in, d_out]`, plus an
/// optional LoRA adapter.
pub type EncoderLinear<B> = LoraLinear<B>;

/// Random initialisation as Hugging Face's `_init_weights` (`N(0, 0.02)`, zero bias).
pub fn init_linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> EncoderLinear<B> {
    Linear {
        weight: Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init_with([d_in, d_out], Some(d_in), Some(d_out), device),
        bias: Some(Initializer::Zeros.init([d_out], device)),
    }
    .into()
}

/// Reads `{prefix}.weight` and `{prefix}.bias` of a PyTorch `nn.Linear`.
pub fn linear_from_checkpoint<B: Backend>(
    src: &mut TensorSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Result<EncoderLinear<B>, LoadError> {
    src.take_linear(prefix, d_in, d_out, device).map(Into::into)
}
