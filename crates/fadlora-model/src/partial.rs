//! Partial fine-tuning: whole encoder layers at one end of the encoder (and optionally the
//! feature projection) train as in full fine-tuning; every other parameter is frozen.

use burn::module::Module;
use burn::prelude::*;

use crate::adapter_layer::Unfreeze;
use crate::lora::LoraError;
use crate::model::Wav2Vec2Model;

/// The run TOML's `[partial] layers` (defined in fadlora-run, shared with the trainer and sweep).
pub use fadlora_run::PartialLayers;

impl<B: Backend> Wav2Vec2Model<B> {
    /// Freezes every parameter, then makes the `count` encoder layers at the `layers` end
    /// trainable again (every tensor of each: attention, feed-forward, their LayerNorms), and
    /// the feature projection (its LayerNorm and Linear) if `feature_projection`. The
    /// convolutional feature encoder, the positional convolution and the encoder's own
    /// LayerNorm stay frozen. Lazily initialised weights stay lazy.
    pub fn try_with_partial(
        self,
        layers: PartialLayers,
        count: usize,
        feature_projection: bool,
    ) -> Result<Self, LoraError> {
        if self.lora.is_some() || self.ia3.is_some() || self.adapter.is_some() {
            return Err(LoraError::AlreadyAdapted);
        }
        let num_layers = self.config.num_hidden_layers;
        if count == 0 || count > num_layers {
            return Err(LoraError::Partial(format!(
                "`count` is {count}: the model has {num_layers} encoder layers, train 1 to \
                 {num_layers} of them"
            )));
        }
        let mut model = self.map(&mut crate::lora::Freeze);
        let chosen = layers.indices(count, num_layers);
        let encoder_layers = std::mem::take(&mut model.encoder.layers);
        model.encoder.layers = encoder_layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| {
                if chosen.contains(&i) {
                    layer.map(&mut Unfreeze)
                } else {
                    layer
                }
            })
            .collect();
        if feature_projection {
            model.feature_projection = model.feature_projection.map(&mut Unfreeze);
        }
        Ok(model)
    }
}
