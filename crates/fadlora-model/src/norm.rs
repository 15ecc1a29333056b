//! Normalisation layers whose parameters carry PyTorch's names (`weight`, `bias`), so module
//! paths equal checkpoint keys.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::ops::ModelBackend;

/// Affine normalisation to zero mean and unit (biased) variance along one axis of a
/// `[batch, time, channels]` tensor.
///
/// With `axis = 2` this is `nn.LayerNorm(channels)` applied per frame. With `axis = 1` it is
/// `nn.GroupNorm(channels, channels)` on PyTorch's channel-major layout: one group per channel,
/// statistics over time, which is what wav2vec2-base's first convolution uses.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
    pub axis: usize,
}

impl<B: Backend> Norm<B> {
    /// A LayerNorm over the last axis, initialised to the identity.
    pub fn layer_norm(channels: usize, eps: f64, device: &B::Device) -> Self {
        Self::identity(channels, eps, 2, device)
    }

    /// A per-channel GroupNorm over time, initialised to the identity.
    pub fn group_norm_over_time(channels: usize, eps: f64, device: &B::Device) -> Self {
        Self::identity(channels, eps, 1, device)
    }

    fn identity(channels: usize, eps: f64, axis: usize, device: &B::Device) -> Self {
        Self {
            weight: burn::nn::Initializer::Ones.init([channels], device),
            bias: burn::nn::Initializer::Zeros.init([channels], device),
            eps,
            axis,
        }
    }
}

impl<B: ModelBackend> Norm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.axis == 2 {
            // One forward and one backward operation (see `crate::ops`): the decomposed form
            // below (five broadcasting passes) was measured ~10x slower on conv outputs.
            return crate::ops::layer_norm(x, self.weight.val(), self.bias.val(), self.eps);
        }
        // Statistics in f32 whatever the activations' type, as the LayerNorm above.
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let (var, mean) = x.clone().var_mean_bias(self.axis);
        let x = (x - mean) / (var + self.eps).sqrt();
        let weight = self.weight.val().cast(FloatDType::F32);
        let bias = self.bias.val().cast(FloatDType::F32);
        (x * weight.unsqueeze::<3>() + bias.unsqueeze::<3>()).cast(dtype)
    }
}
