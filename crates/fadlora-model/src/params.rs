//! Parameter counts read from the module tree itself, without materialising lazily
//! initialised weights (so the XLS-R 300M preset can be counted without 1.3 GB of RAM).

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use crate::model::Wav2Vec2Model;

struct LazyCounter(usize);

impl<B: Backend> ModuleVisitor<B> for LazyCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 += param.lazy_shape().num_elements();
    }
}

/// Number of float parameters in `module`, without initialising lazy parameters.
pub fn count_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut counter = LazyCounter(0);
    module.visit(&mut counter);
    counter.0
}

/// Trainable and total parameters, in Hugging Face / PEFT accounting (the run record's type).
pub use fadlora_run::ParamCounts;

struct RequireGradCounter(ParamCounts);

impl<B: Backend> ModuleVisitor<B> for RequireGradCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let n = param.lazy_shape().num_elements();
        self.0.total += n;
        if require_grad(param) {
            self.0.trainable += n;
        }
    }
}

/// Whether `param` will receive gradients, without initialising it if it is lazy.
///
/// burn 0.21 keeps a lazy parameter's flag private; `Param::transform_for_load` is the public
/// path that reads it without initialising (it gives a loaded tensor the parameter's autodiff
/// setting). Loading a one-element stand-in into a lazy clone therefore reveals the flag at
/// the cost of one element, and `param` itself stays lazy.
pub fn require_grad<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> bool {
    if param.is_initialized() {
        return param.is_require_grad();
    }
    let stand_in = Tensor::<B, D>::zeros([1; D], &param.lazy_device());
    param
        .clone()
        .transform_for_load(stand_in, param.id)
        .is_require_grad()
}

/// Trainable (`is_require_grad`) and total float parameters of `module`.
pub fn count_trainable<B: Backend, M: Module<B>>(module: &M) -> ParamCounts {
    let mut counter = RequireGradCounter(ParamCounts::default());
    module.visit(&mut counter);
    counter.0
}

/// Parameters per block of a [`Wav2Vec2Model`], in Hugging Face's accounting (weight norm's
/// `g` and `v` both count; `masked_spec_embed` is not part of this model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSummary {
    pub feature_encoder: usize,
    pub feature_projection: usize,
    pub positional_conv: usize,
    pub encoder_layers: Vec<usize>,
    pub encoder_layer_norm: usize,
    pub total: usize,
}

impl ParamSummary {
    pub fn of<B: Backend>(model: &Wav2Vec2Model<B>) -> Self {
        let encoder = &model.encoder;
        Self {
            feature_encoder: count_params(&model.feature_extractor),
            feature_projection: count_params(&model.feature_projection),
            positional_conv: count_params(&encoder.pos_conv_embed),
            encoder_layers: encoder.layers.iter().map(count_params).collect(),
            encoder_layer_norm: count_params(&encoder.layer_norm),
            total: count_params(model),
        }
    }
}
