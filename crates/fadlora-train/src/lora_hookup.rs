//! The one place where the trainer meets LoRA (`fadlora_model::lora`): with a `[lora]` (or
//! `[ia3]`, or `[adapter]`) table, every pretrained tensor of the front end is frozen and adapters are added
//! (with `[partial]`, all but the chosen encoder layers are frozen);
//! without one the same model trains fully. Nothing else in the trainer differs between the two: the optimizer
//! only ever sees gradients of parameters that require them.

use burn::prelude::*;
use fadlora_model::Wav2Vec2Model;

use crate::config::{ia3_config, lora_config, LoraSection};
use crate::TrainError;

pub fn apply<B: Backend>(
    model: Wav2Vec2Model<B>,
    lora: &LoraSection,
    device: &B::Device,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    Ok(model.try_with_lora(&lora_config(lora), device)?)
}

pub fn apply_ia3<B: Backend>(
    model: Wav2Vec2Model<B>,
    ia3: &fadlora_run::Ia3Section,
    device: &B::Device,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    Ok(model.try_with_ia3(&ia3_config(ia3), device)?)
}

pub fn apply_adapter<B: Backend>(
    model: Wav2Vec2Model<B>,
    adapter: &fadlora_run::AdapterSection,
    device: &B::Device,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    let config = fadlora_model::AdapterLayerConfig::new(adapter.kind, adapter.size);
    Ok(model.try_with_adapters(&config, device)?)
}

/// Freezes all of the front end but the `[partial]` table's encoder layers (and the feature
/// projection if it says so).
pub fn apply_partial<B: Backend>(
    model: Wav2Vec2Model<B>,
    partial: &fadlora_run::PartialSection,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    Ok(model.try_with_partial(partial.layers, partial.count, partial.feature_projection)?)
}
