//! Convolutional feature encoder and feature projection.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::config::{FeatExtractNorm, Wav2Vec2Config};
use crate::conv::StridedConv;
use crate::load::{permute, LoadError, TensorSource};
use crate::norm::Norm;
use crate::ops::{dropout, gelu, ModelBackend};
use crate::tokens::linear_on_tokens;

/// PyTorch's default `eps` for the `nn.LayerNorm` / `nn.GroupNorm` inside the conv layers,
/// which Hugging Face builds without passing `layer_norm_eps`.
const CONV_NORM_EPS: f64 = 1e-5;

/// One convolution of the feature encoder: conv, optional norm, GELU.
#[derive(Module, Debug)]
pub struct ConvLayer<B: Backend> {
    pub conv: StridedConv<B>,
    pub layer_norm: Option<Norm<B>>,
}

impl<B: ModelBackend> ConvLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.conv.forward(x);
        let x = match &self.layer_norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        gelu(x)
    }
}

/// Raw waveform `[batch, samples]` to features `[batch, frames, conv_dim[-1]]`, time-major.
#[derive(Module, Debug)]
pub struct FeatureEncoder<B: Backend> {
    pub conv_layers: Vec<ConvLayer<B>>,
}

/// The normalisation after one convolution of the feature encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvNorm {
    /// GroupNorm with one group per channel, statistics over time: wav2vec2-base's first
    /// convolution (`feat_extract_norm = "group"`).
    GroupOverTime,
    /// LayerNorm over channels, per frame: every convolution of XLS-R
    /// (`feat_extract_norm = "layer"`).
    Layer,
    /// No norm: wav2vec2-base's convolutions after the first.
    None,
}

impl ConvNorm {
    /// The norm of convolution `index` under the config's `feat_extract_norm`.
    fn of_layer(norm: FeatExtractNorm, index: usize) -> Self {
        match norm {
            FeatExtractNorm::Layer => ConvNorm::Layer,
            FeatExtractNorm::Group if index == 0 => ConvNorm::GroupOverTime,
            FeatExtractNorm::Group => ConvNorm::None,
        }
    }

    /// The norm over `channels`, initialised to the identity.
    fn init<B: Backend>(self, channels: usize, device: &B::Device) -> Option<Norm<B>> {
        match self {
            ConvNorm::GroupOverTime => {
                Some(Norm::group_norm_over_time(channels, CONV_NORM_EPS, device))
            }
            ConvNorm::Layer => Some(Norm::layer_norm(channels, CONV_NORM_EPS, device)),
            ConvNorm::None => None,
        }
    }
}

/// One convolution of the feature encoder.
pub(crate) struct ConvSpec {
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) kernel: usize,
    stride: usize,
    norm: ConvNorm,
}

pub(crate) fn conv_specs(config: &Wav2Vec2Config) -> Vec<ConvSpec> {
    let norm = config
        .feat_extract_norm()
        .expect("config validated before building the model");
    (0..config.conv_dim.len())
        .map(|i| ConvSpec {
            in_channels: if i == 0 { 1 } else { config.conv_dim[i - 1] },
            out_channels: config.conv_dim[i],
            kernel: config.conv_kernel[i],
            stride: config.conv_stride[i],
            norm: ConvNorm::of_layer(norm, i),
        })
        .collect()
}

impl<B: Backend> FeatureEncoder<B> {
    pub fn init(config: &Wav2Vec2Config, device: &B::Device) -> Self {
        let conv_layers = conv_specs(config)
            .into_iter()
            .map(|spec| ConvLayer {
                conv: StridedConv::init(
                    spec.in_channels,
                    spec.out_channels,
                    spec.kernel,
                    spec.stride,
                    config.conv_bias,
                    device,
                ),
                layer_norm: spec.norm.init(spec.out_channels, device),
            })
            .collect();
        Self { conv_layers }
    }

    pub fn from_checkpoint(
        config: &Wav2Vec2Config,
        src: &mut TensorSource,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let mut conv_layers = Vec::new();
        for (i, spec) in conv_specs(config).into_iter().enumerate() {
            let (c_in, c_out, k) = (spec.in_channels, spec.out_channels, spec.kernel);
            let prefix = format!("feature_extractor.conv_layers.{i}");
            let weight = src.take(&format!("{prefix}.conv.weight"), &[c_out, c_in, k])?;
            // [out, in, k] -> [k, in, out]: row j * in + c of the im2col weight.
            let weight = permute(&weight, &[c_out, c_in, k], &[2, 1, 0]);
            let bias = if config.conv_bias {
                let bias = src.take(&format!("{prefix}.conv.bias"), &[c_out])?;
                Some(Param::from_data(TensorData::new(bias, [c_out]), device))
            } else {
                None
            };
            let layer_norm = match spec.norm.init::<B>(c_out, device) {
                Some(mut n) => {
                    n.weight =
                        src.take_param(&format!("{prefix}.layer_norm.weight"), [c_out], device)?;
                    n.bias =
                        src.take_param(&format!("{prefix}.layer_norm.bias"), [c_out], device)?;
                    Some(n)
                }
                None => None,
            };
            conv_layers.push(ConvLayer {
                conv: StridedConv {
                    weight: Param::from_data(TensorData::new(weight, [k * c_in, c_out]), device),
                    bias,
                    in_channels: c_in,
                    kernel: k,
                    stride: spec.stride,
                },
                layer_norm,
            });
        }
        Ok(Self { conv_layers })
    }
}

impl<B: ModelBackend> FeatureEncoder<B> {
    pub fn forward(&self, input_values: Tensor<B, 2>) -> Tensor<B, 3> {
        let mut x = input_values.unsqueeze_dim::<3>(2);
        for layer in &self.conv_layers {
            x = layer.forward(x);
        }
        x
    }
}

/// LayerNorm + linear from the conv width to the transformer width.
#[derive(Module, Debug)]
pub struct FeatureProjection<B: Backend> {
    pub layer_norm: Norm<B>,
    pub projection: Linear<B>,
    pub dropout: Dropout,
}

impl<B: Backend> FeatureProjection<B> {
    pub fn init(config: &Wav2Vec2Config, device: &B::Device) -> Self {
        let c = config.conv_out_dim();
        Self {
            layer_norm: Norm::layer_norm(c, config.layer_norm_eps, device),
            // Hugging Face draws both weight and bias from U(-1/sqrt(c), 1/sqrt(c)).
            projection: LinearConfig::new(c, config.hidden_size)
                .with_initializer(burn::nn::Initializer::Uniform {
                    min: -1.0 / (c as f64).sqrt(),
                    max: 1.0 / (c as f64).sqrt(),
                })
                .init(device),
            dropout: DropoutConfig::new(config.feat_proj_dropout).init(),
        }
    }

    pub fn from_checkpoint(
        config: &Wav2Vec2Config,
        src: &mut TensorSource,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let c = config.conv_out_dim();
        let mut layer_norm = Norm::layer_norm(c, config.layer_norm_eps, device);
        layer_norm.weight = src.take_param("feature_projection.layer_norm.weight", [c], device)?;
        layer_norm.bias = src.take_param("feature_projection.layer_norm.bias", [c], device)?;
        Ok(Self {
            layer_norm,
            projection: src.take_linear(
                "feature_projection.projection",
                c,
                config.hidden_size,
                device,
            )?,
            dropout: DropoutConfig::new(config.feat_proj_dropout).init(),
        })
    }
}

impl<B: ModelBackend> FeatureProjection<B> {
    /// Returns `(projected, normed)`: Hugging Face's `extract_features` is the normed input.
    pub fn forward(&self, x: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let normed = self.layer_norm.forward(x);
        let projection = &self.projection;
        let projected = linear_on_tokens(
            normed.clone(),
            projection.weight.val(),
            projection.bias.as_ref().map(|b| b.val()),
        );
        let projected = dropout(&self.dropout, projected);
        (projected, normed)
    }
}
