//! The SLS classifier (Zhang et al. 2024, "Audio Deepfake Detection with Self-Supervised XLS-R
//! and SLS Classifier"): a sigmoid gate per encoder layer, computed from that layer's output
//! averaged over time, weighs the layers' outputs into one `[frames, width]` map, which a
//! BatchNorm, SELU, 3x3 max pooling and two fully connected layers classify.
//!
//! As the authors' `model.py` (`getAttenF` and `Model.forward`): the inputs are the outputs of
//! every encoder layer (fairseq's `layer_results`, so in the pre-LN layout the last one
//! precedes the encoder's final LayerNorm, and the encoder's input is not among them);
//! `fc0: Linear(width, 1)` and a sigmoid give each layer of each utterance a gate; the gated
//! sum over layers goes through `first_bn` (BatchNorm2d of one channel), SELU,
//! `max_pool2d((3, 3))`, flattening, `fc1`, SELU, `fc3: Linear(fc1 width, 2)`, SELU and a
//! log-softmax, whose output the detector treats as its logits (the loss's log-softmax leaves
//! log-probabilities unchanged, and the `bonafide-logit` score is then the authors' score).
//! Their sizes are XLS-R 300M's at 4 s (201 frames): `fc0` reads 1024, `fc1` reads
//! `67 x 341 = 22,847` and writes 1024. Here `fc0` reads the model's width and `fc1` reads
//! `floor(frames / 3) x floor(width / 3)` for the frames of the run's crop, writing
//! [`SlsConfig::fc1_width`] (1024); an input of other length is cut or zero-padded at the end
//! to those frames (the authors' inputs always have 201).
//!
//! The head is a `[head] kind`, so the front end trains as the run's method says: fully
//! without a method table (as the paper fine-tunes XLS-R), or through LoRA, (IA)^3, adapters
//! or partial fine-tuning, or not at all (`[frozen]`: the head alone trains, the `sls` method of
//! a sweep). It does not go with `[probe]` or `[layer_sum]`, whose heads read one (summed)
//! state.
//!
//! [`SlsHead::load_pytorch`] reads a state dict with the authors' names; against the PyTorch
//! classifier of `tools/fixtures/make_sls_fixtures.py` it agrees within 1e-4
//! (`tests/aasist_parity.rs`). BatchNorm follows burn's convention, as in [`crate::aasist`].

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, selu, sigmoid};
use burn::tensor::module::max_pool2d;

use crate::TrainError;

/// The sizes of the SLS classifier; the defaults are the authors' at 4 s of XLS-R 300M.
#[derive(Config, Debug)]
pub struct SlsConfig {
    /// Width of the layer outputs it reads (1024 for XLS-R 300M).
    #[config(default = 1024)]
    pub input_width: usize,
    /// Frames of the layer outputs `fc1` is sized for (201: 64,600 samples at 16 kHz).
    #[config(default = 201)]
    pub frames: usize,
    /// Output width of `fc1`, input width of `fc3`.
    #[config(default = 1024)]
    pub fc1_width: usize,
}

/// The smallest frame count and width the 3x3 pooling leaves something of.
pub const SLS_MIN_FRAMES: usize = 3;

impl SlsConfig {
    /// `fc1`'s input: the pooled map flattened.
    pub fn pooled_len(&self) -> usize {
        (self.frames / 3) * (self.input_width / 3)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> SlsHead<B> {
        SlsHead {
            fc0: LinearConfig::new(self.input_width, 1).init(device),
            first_bn: BatchNormConfig::new(1).init(device),
            fc1: LinearConfig::new(self.pooled_len(), self.fc1_width).init(device),
            fc3: LinearConfig::new(self.fc1_width, 2).init(device),
            frames: self.frames,
        }
    }
}

/// The classifier; field names are the authors'.
#[derive(Module, Debug)]
pub struct SlsHead<B: Backend> {
    pub fc0: Linear<B>,
    pub first_bn: BatchNorm<B>,
    pub fc1: Linear<B>,
    pub fc3: Linear<B>,
    #[module(skip)]
    pub frames: usize,
}

impl<B: Backend> SlsHead<B> {
    /// The gate of every layer of every utterance, `[batch, layers]` in (0, 1).
    pub fn gates(&self, layers: &Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, count, _, width] = layers.dims();
        let pooled = layers.clone().mean_dim(2).reshape([batch, count, width]);
        sigmoid(self.fc0.forward(pooled)).reshape([batch, count])
    }

    /// `layers`: the output of every encoder layer, each `[batch, frames, width]` -> log-
    /// probabilities `[batch, 2]` (0 = spoof, 1 = bona fide).
    pub fn forward(&self, layers: Vec<Tensor<B, 3>>) -> Tensor<B, 2> {
        let layers: Vec<Tensor<B, 3>> = layers.into_iter().map(|h| self.fit(h)).collect();
        let stacked = Tensor::stack::<4>(layers, 1); // [batch, layers, frames, width]
        let [batch, count, frames, width] = stacked.dims();
        let gates = self.gates(&stacked).reshape([batch, count, 1, 1]);
        let fused = (stacked * gates).sum_dim(1); // [batch, 1, frames, width]
        let x = selu(self.first_bn.forward(fused));
        let x = max_pool2d(x, [3, 3], [3, 3], [0, 0], [1, 1], false);
        let x = x.reshape([batch, (frames / 3) * (width / 3)]);
        let x = selu(self.fc1.forward(x));
        let x = selu(self.fc3.forward(x));
        log_softmax(x, 1)
    }

    /// Cuts or zero-pads `[batch, frames, width]` at the end to the frames `fc1` is sized for.
    fn fit(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, frames, width] = h.dims();
        if frames >= self.frames {
            return h.slice([0..batch, 0..self.frames, 0..width]);
        }
        let pad = Tensor::zeros([batch, self.frames - frames, width], &h.device());
        Tensor::cat(vec![h, pad], 1)
    }

    /// Makes the BatchNorm's running statistics current (see
    /// [`crate::aasist::AasistHead::sync_running_stats`]).
    pub fn sync_running_stats(&self) {
        let _ = self.clone().into_record();
    }

    /// Loads a safetensors state dict with the authors' names (`fc0.weight`,
    /// `first_bn.running_mean`, `fc1.bias`, ...; `ssl_model.*`, their front end, aside), as
    /// PyTorch stores them (Linear weights `[out, in]`, BatchNorm `weight`/`bias`). Every
    /// tensor of the head must be in the file with its shape; an error names each one that is
    /// missing, misshapen or has no place in the head.
    pub fn load_pytorch(mut self, file: &Path) -> Result<Self, TrainError> {
        // BatchNorm's affine parameters by burn's names (as the AASIST head's loader).
        const NAMES: &[(&str, &str)] = &[
            (r"^first_bn\.weight$", "first_bn.gamma"),
            (r"^first_bn\.bias$", "first_bn.beta"),
        ];
        crate::aasist::load_pytorch_head(&mut self, file, NAMES, "the SLS head")?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;

    /// The authors' sizes: `fc0` 1024 + 1, `first_bn` 2 (its running statistics are buffers),
    /// `fc1` 22,847 x 1024 + 1024, `fc3` 1024 x 2 + 2.
    #[test]
    fn the_default_sizes_are_the_authors_at_4_s_of_xls_r_300m() {
        let _turn = crate::backend::backend_turn();
        let config = SlsConfig::new();
        assert_eq!(config.pooled_len(), 22_847);
        let head: SlsHead<Flex> = config.init(&Default::default());
        let paths = crate::detector::param_paths(&head);
        assert_eq!(
            paths.counts.total,
            1025 + 2 + 22_847 * 1024 + 1024 + 1024 * 2 + 2
        );
        assert_eq!(paths.counts.total, 23_399_429);
    }

    /// Log-probabilities out, the same for an input cut or zero-padded to the sized frames as
    /// for that input itself; gates in (0, 1), one per layer and utterance.
    #[test]
    fn forward_gives_log_probabilities_and_fits_the_frames() {
        let _turn = crate::backend::backend_turn();
        let device = Default::default();
        let head: SlsHead<Flex> = SlsConfig::new()
            .with_input_width(7)
            .with_frames(9)
            .with_fc1_width(5)
            .init(&device);
        let layer = |frames| {
            Tensor::<Flex, 3>::random([2, frames, 7], Distribution::Normal(0.0, 1.0), &device)
        };
        let layers: Vec<_> = (0..3).map(|_| layer(12)).collect();
        let out = head.forward(layers.clone());
        assert_eq!(out.dims(), [2, 2]);
        out.clone()
            .exp()
            .sum_dim(1)
            .to_data()
            .assert_approx_eq::<f32>(
                &TensorData::new(vec![1.0f32; 2], [2, 1]),
                Tolerance::default(),
            );
        let cut: Vec<_> = layers
            .iter()
            .map(|h| h.clone().slice([0..2, 0..9, 0..7]))
            .collect();
        out.to_data()
            .assert_approx_eq::<f32>(&head.forward(cut.clone()).to_data(), Tolerance::default());
        let short: Vec<_> = cut
            .iter()
            .map(|h| h.clone().slice([0..2, 0..6, 0..7]))
            .collect();
        let padded: Vec<_> = short
            .iter()
            .map(|h| Tensor::cat(vec![h.clone(), Tensor::zeros([2, 3, 7], &device)], 1))
            .collect();
        head.forward(short)
            .to_data()
            .assert_approx_eq::<f32>(&head.forward(padded).to_data(), Tolerance::default());
        let gates = head.gates(&Tensor::stack::<4>(cut, 1));
        assert_eq!(gates.dims(), [2, 3]);
        let values: Vec<f32> = gates.into_data().to_vec().unwrap();
        assert!(values.iter().all(|g| *g > 0.0 && *g < 1.0), "{values:?}");
    }
}
