//! The one place where the trainer meets LoRA (`fadlora_model::lora`): with a `[lora]` table,
//! every pretrained tensor of the front end is frozen and adapters are added; without one the
//! same model trains fully. Nothing else in the trainer differs between the two: the optimizer
//! only ever sees gradients of parameters that require them.

use burn::prelude::*;
use fadlora_model::Wav2Vec2Model;

use crate::config::{lora_config, LoraSection};
use crate::TrainError;

pub fn apply<B: Backend>(
    model: Wav2Vec2Model<B>,
    lora: &LoraSection,
    device: &B::Device,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    Ok(model.try_with_lora(&lora_config(lora), device)?)
}
