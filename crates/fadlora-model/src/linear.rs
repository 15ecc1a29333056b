//! The one place that decides what an encoder linear layer is.
//!
//! Every projection of the transformer (`q_proj`, `k_proj`, `v_proj`, `out_proj`,
//! `intermediate_dense`, `output_dense`) is an [`EncoderLinear`], built by [`init_linear`] or
//! [`linear_from_checkpoint`] and applied with its `forward`. Swapping the alias for an adapted
//! layer (LoRA) therefore changes all of them at once.

use burn::nn::{Initializer, Linear};
use burn::prelude::*;

use crate::load::{LoadError, TensorSource};

/// A linear layer of the transformer encoder: `y = x W + b`, `W` stored `[d_in, d_out]`.
pub type EncoderLinear<B> = Linear<B>;

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
}

/// Reads `{prefix}.weight` and `{prefix}.bias` of a PyTorch `nn.Linear`.
pub fn linear_from_checkpoint<B: Backend>(
    src: &mut TensorSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Result<EncoderLinear<B>, LoadError> {
    src.take_linear(prefix, d_in, d_out, device)
}
