//! The one place that decides what an encoder linear layer is.
//!
//! Every projection of the transformer (`q_proj`, `k_proj`, `v_proj`, `out_proj`,
//! `intermediate_dense`, `output_dense`) is an [`EncoderLinear`], built by [`init_linear`] or
//! [`linear_from_checkpoint`] and applied with its `forward`. It is a [`LoraLinear`]: a plain
//! linear layer until [`crate::Wav2Vec2Model::with_lora`] gives it an adapter.

use burn::nn::{Initializer, Linear};
use burn::prelude::*;
use burn::tensor::module::linear;

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

/// `x W + b` on the last axis of `x`, in `x`'s float type (the weights are cast to it: a no-op
/// in f32, reduced-precision matmuls under mixed precision). Tokens are flattened to
/// `[tokens, d_in]` around the matmul: on a 3-D input burn broadcasts the weight over the
/// batch, and its gradient becomes a `[batch, d_in, d_out]` temporary summed afterwards.
pub fn linear_on_tokens<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let y = linear_2d(flatten_tokens(x), weight, bias);
    unflatten_tokens(y, dims)
}

/// `[.., d]` as `[tokens, d]`.
pub fn flatten_tokens<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 2> {
    let dims = x.dims();
    let d = dims[D - 1];
    x.reshape([dims[..D - 1].iter().product::<usize>(), d])
}

/// `[tokens, d_out]` back to the leading axes of `dims`.
pub fn unflatten_tokens<B: Backend, const D: usize>(
    y: Tensor<B, 2>,
    dims: [usize; D],
) -> Tensor<B, D> {
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// `x W + b` for `x` `[tokens, d_in]`, in `x`'s float type.
pub fn linear_2d<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    let dtype = x.dtype();
    linear(x, weight.cast(dtype), bias.map(|b| b.cast(dtype)))
}
