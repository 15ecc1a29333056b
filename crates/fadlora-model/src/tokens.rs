//! Linear maps on activations of any rank, applied to the last axis with every leading axis
//! flattened into one token axis.

use burn::prelude::*;
use burn::tensor::module::linear;

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
