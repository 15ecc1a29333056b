//! Putting adapters on a [`Wav2Vec2Model`] and taking them off: freezing, injection by a
//! [`LoraConfig`], merging into the base weights.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

use super::config::{LoraConfig, LoraError, LoraTarget};
use super::ia3::{Ia3, Ia3Config};
use super::layer::{Lora, LoraLinear};
use super::moe::{BalanceSink, MoeLora};
use crate::model::Wav2Vec2Model;

/// Marks every float parameter as frozen without initialising lazy ones (burn's
/// `Module::no_grad` materialises them, which for XLS-R means allocating 1.3 GB to count).
pub(crate) struct Freeze;

impl<B: Backend> ModuleMapper<B> for Freeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(false)
    }
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Freezes every pretrained parameter (`require_grad = false`: no gradient is computed or
    /// stored for it) and adds trainable adapters as `config` says. Lazily initialised weights
    /// stay lazy, so the trainable count of a big preset costs no memory.
    ///
    /// # Panics
    /// If `config` is invalid for this model or the model is already adapted; see
    /// [`Self::try_with_lora`].
    pub fn with_lora(self, config: &LoraConfig, device: &B::Device) -> Self {
        self.try_with_lora(config, device)
            .unwrap_or_else(|e| panic!("cannot apply LoRA: {e}"))
    }

    /// [`Self::with_lora`], returning an error for an invalid configuration.
    pub fn try_with_lora(self, config: &LoraConfig, device: &B::Device) -> Result<Self, LoraError> {
        if self.lora.is_some() || self.ia3.is_some() || self.adapter.is_some() {
            return Err(LoraError::AlreadyAdapted);
        }
        config.check(self.config.num_hidden_layers)?;
        let mut model = self.map(&mut Freeze);
        let arch = model.config.clone();
        // One sink for the whole model: the trainer takes every mixture's term at once.
        let sink = BalanceSink::default();
        let layers = std::mem::take(&mut model.encoder.layers);
        model.encoder.layers = layers
            .into_iter()
            .enumerate()
            .map(|(index, layer)| {
                if !config.adapts_layer(index) {
                    return layer;
                }
                layer.map_projections(&mut |target, proj| {
                    if !config.targets.contains(&target) {
                        return proj;
                    }
                    let (d_in, d_out) = arch.projection_dims(target);
                    if let Some(moe) = &config.moe {
                        return LoraLinear {
                            moe: Some(moe.init(&config.linear(d_in, d_out), sink.clone(), device)),
                            ..proj
                        };
                    }
                    LoraLinear {
                        lora: Some(config.linear(d_in, d_out).init_for(&proj.weight, device)),
                        ..proj
                    }
                })
            })
            .collect();
        model.lora = Some(config.clone());
        Ok(model)
    }

    /// Freezes every pretrained parameter and adds trainable (IA)^3 vectors (all ones) as
    /// `config` says; fails on an invalid configuration or an already adapted model.
    pub fn try_with_ia3(self, config: &Ia3Config, device: &B::Device) -> Result<Self, LoraError> {
        if self.lora.is_some() || self.ia3.is_some() || self.adapter.is_some() {
            return Err(LoraError::AlreadyAdapted);
        }
        config.check()?;
        let arch = self.config.clone();
        let mut model = self.map(&mut Freeze).map_linears(|_, target, proj| {
            if !config.targets.contains(&target) {
                return proj;
            }
            let (d_in, d_out) = arch.projection_dims(target);
            LoraLinear {
                ia3: Some(config.init(target, d_in, d_out, device)),
                ..proj
            }
        });
        model.ia3 = Some(config.clone());
        Ok(model)
    }

    /// The (IA)^3 vectors of this model: `(layer, target, vector)` in layer then target order.
    pub fn ia3_vectors(&self) -> Vec<(usize, LoraTarget, &Ia3<B>)> {
        self.per_projection(|proj| proj.ia3.as_ref())
    }

    /// `(layer, target, part)` for every projection `part_of` finds something on, in layer then
    /// target order.
    fn per_projection<'a, T>(
        &'a self,
        part_of: impl Fn(&'a LoraLinear<B>) -> Option<&'a T>,
    ) -> Vec<(usize, LoraTarget, &'a T)> {
        let mut out = Vec::new();
        for (index, layer) in self.encoder.layers.iter().enumerate() {
            for target in LoraTarget::ALL {
                if let Some(part) = part_of(layer.projection(target)) {
                    out.push((index, target, part));
                }
            }
        }
        out
    }

    /// The adapters of this model: `(layer, target, adapter)` in layer then target order.
    pub fn adapters(&self) -> Vec<(usize, LoraTarget, &Lora<B>)> {
        self.per_projection(|proj| proj.lora.as_ref())
    }

    /// The mixtures of LoRA experts of this model: `(layer, target, mixture)` in layer then
    /// target order.
    pub fn mixtures(&self) -> Vec<(usize, LoraTarget, &MoeLora<B>)> {
        self.per_projection(|proj| proj.moe.as_ref())
    }

    /// The load-balancing term of the training loss: the mean balance loss of every mixture of
    /// experts over the training forward passes since the last call, times the mixtures'
    /// `balance_loss` weight. `None` without mixtures, at weight 0, or after inference passes
    /// only. Call it after every training pass: it also forgets the terms.
    pub fn take_balance_loss(&self) -> Option<Tensor<B, 1>> {
        let (_, _, moe) = self.mixtures().into_iter().next()?;
        let mean = moe.sink.take_mean()?;
        let weight = self.lora.as_ref()?.moe.as_ref()?.balance_loss;
        (weight > 0.0).then(|| mean * weight)
    }

    /// Every projection through `f(layer index, target, projection)`.
    fn map_linears(
        mut self,
        mut f: impl FnMut(usize, LoraTarget, LoraLinear<B>) -> LoraLinear<B>,
    ) -> Self {
        let layers = std::mem::take(&mut self.encoder.layers);
        self.encoder.layers = layers
            .into_iter()
            .enumerate()
            .map(|(index, layer)| layer.map_projections(&mut |target, proj| f(index, target, proj)))
            .collect();
        self
    }

    /// Folds every adapter into its base weight: the same outputs (up to rounding) at the cost
    /// of the base model. [`Self::unmerge_lora`] undoes it. Fails, naming the first layer and
    /// projection, when a merged weight would hold a NaN or an infinity.
    pub fn merge_lora(self) -> Result<Self, LoraError> {
        let mut failed = None;
        let model = self.map_linears(|layer, target, mut proj| {
            if proj.merge().is_err() {
                failed.get_or_insert(LoraError::NonFiniteMerge { layer, target });
            }
            proj
        });
        match failed {
            Some(error) => Err(error),
            None => Ok(model),
        }
    }

    pub fn unmerge_lora(self) -> Self {
        self.map_linears(|_, _, proj| proj.unmerge())
    }
}
