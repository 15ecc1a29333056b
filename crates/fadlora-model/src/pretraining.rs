//! Masked prediction, the self-supervised objective of HuBERT's first iteration: frames of the
//! projected features are replaced by `masked_spec_embed`
//! ([`Wav2Vec2Model::forward_masked`]), and a classifier on the encoder's output must name the
//! target cluster (k-means of MFCC frames, `fadlora-ssl`) of each masked frame. Only masked
//! frames count in the loss: predicting an unmasked frame's cluster is a lookup, predicting a
//! masked one needs its context.
//!
//! The classifier is a plain linear layer over the clusters, where HuBERT scores cosine
//! similarity against learned cluster embeddings; either is "a projection head" and the
//! backbone is what is kept.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::config::Wav2Vec2Config;
use crate::model::Wav2Vec2Model;
use crate::ops::ModelBackend;

/// A wav2vec2 with `masked_spec_embed` and a cluster classifier. `wav2vec2` alone, with its
/// `masked_spec_embed`, is what pretraining produces.
#[derive(Module, Debug)]
pub struct Wav2Vec2ForMaskedPrediction<B: Backend> {
    pub wav2vec2: Wav2Vec2Model<B>,
    /// Encoder output -> one logit per target cluster.
    pub final_proj: Linear<B>,
}

/// The loss of one batch and what it is measured on.
#[derive(Debug, Clone)]
pub struct MaskedPredictionOutput<B: Backend> {
    /// Mean cross-entropy over the masked frames (0 when none is masked).
    pub loss: Tensor<B, 1>,
    /// Masked frames whose most likely cluster is the target.
    pub correct: Tensor<B, 1, Int>,
    /// Masked frames in the batch.
    pub masked: usize,
}

impl Wav2Vec2Config {
    /// A randomly initialised wav2vec2 of this configuration with a `masked_spec_embed` and a
    /// classifier over `num_clusters` targets.
    pub fn init_masked_prediction<B: Backend>(
        &self,
        num_clusters: usize,
        device: &B::Device,
    ) -> Wav2Vec2ForMaskedPrediction<B> {
        Wav2Vec2ForMaskedPrediction {
            wav2vec2: self.init(device).with_masked_spec_embed(device),
            final_proj: LinearConfig::new(self.hidden_size, num_clusters).init(device),
        }
    }
}

impl<B: ModelBackend> Wav2Vec2ForMaskedPrediction<B> {
    /// Cluster logits `[batch, frames, clusters]` of `input_values` `[batch, samples]` with
    /// the frames of `time_mask` `[batch, frames]` masked.
    pub fn forward(
        &self,
        input_values: Tensor<B, 2>,
        time_mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let hidden = self
            .wav2vec2
            .forward_masked(input_values, time_mask, false)
            .last_hidden_state;
        self.final_proj.forward(hidden)
    }

    /// Cross-entropy on the masked frames against `targets` `[batch, frames]` (cluster
    /// indices), and how many of those frames the model gets right.
    pub fn loss(
        &self,
        input_values: Tensor<B, 2>,
        time_mask: Tensor<B, 2, Bool>,
        targets: Tensor<B, 2, Int>,
    ) -> MaskedPredictionOutput<B> {
        let logits = self.forward(input_values, time_mask.clone());
        masked_prediction_loss(logits, time_mask, targets)
    }
}

/// Mean cross-entropy of `logits` `[batch, frames, clusters]` over the frames where
/// `time_mask` is true, and the count of those frames predicted right.
pub fn masked_prediction_loss<B: Backend>(
    logits: Tensor<B, 3>,
    time_mask: Tensor<B, 2, Bool>,
    targets: Tensor<B, 2, Int>,
) -> MaskedPredictionOutput<B> {
    let [batch, frames, clusters] = logits.dims();
    let rows = batch * frames;
    let logits = logits.reshape([rows, clusters]);
    let targets = targets.reshape([rows, 1]);
    let weight = time_mask.clone().float().reshape([rows]);
    let masked = time_mask
        .clone()
        .int()
        .sum()
        .into_scalar()
        .elem::<i64>()
        .max(0) as usize;
    let nll = log_softmax(logits.clone(), 1)
        .gather(1, targets.clone())
        .reshape([rows])
        .neg();
    let loss = (nll * weight).sum().div_scalar(masked.max(1) as f64);
    let hits = logits
        .argmax(1)
        .equal(targets)
        .reshape([rows])
        .bool_and(time_mask.reshape([rows]));
    MaskedPredictionOutput {
        loss,
        correct: hits.int().sum(),
        masked,
    }
}
