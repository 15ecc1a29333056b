//! The one place where the trainer meets LoRA (issue 4, `fadlora_model::lora`).
//!
//! Contract: `Wav2Vec2Model::with_lora(self, &LoraConfig, &device) -> Self` freezes every
//! pretrained parameter (`require_grad = false`) and injects trainable adapters; full
//! fine-tuning is the same model without it. Until the model crate ships `lora`, asking for
//! a `[lora]` section is a clear error rather than a silent full fine-tuning run.

use burn::prelude::*;
use fadlora_model::Wav2Vec2Model;

use crate::config::LoraSection;
use crate::TrainError;

pub fn apply<B: Backend>(
    _model: Wav2Vec2Model<B>,
    lora: &LoraSection,
    _device: &B::Device,
) -> Result<Wav2Vec2Model<B>, TrainError> {
    // When `fadlora_model::lora` lands, this becomes:
    //   let config = fadlora_model::lora::LoraConfig {
    //       rank: lora.rank, alpha: lora.alpha(), dropout: lora.dropout,
    //       targets: lora.targets.iter().map(|t| t.as_str().parse().unwrap()).collect(),
    //       layers: lora.layers.clone(), use_rslora: lora.use_rslora,
    //   };
    //   Ok(model.with_lora(&config, device))
    Err(TrainError::LoraUnavailable(format!(
        "the run asks for LoRA rank {} on {:?}, but fadlora-model has no `lora` module yet (issue 4); \
         remove the [lora] table to fine-tune fully",
        lora.rank,
        lora.targets.iter().map(|t| t.as_str()).collect::<Vec<_>>()
    )))
}
