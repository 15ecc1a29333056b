//! `Wav2Vec2Model`: feature encoder, projection and transformer encoder.

use std::path::Path;

use burn::module::{Module, Param};
use burn::prelude::*;

use crate::adapter_layer::AdapterLayerConfig;
use crate::config::Wav2Vec2Config;
use crate::encoder::Encoder;
use crate::feature::{FeatureEncoder, FeatureProjection};
use crate::load::{LoadError, TensorSource};
use crate::lora::{Ia3Config, LoraConfig};
use crate::ops::ModelBackend;

/// Outputs of [`Wav2Vec2Model::forward`], as Hugging Face's `Wav2Vec2BaseModelOutput`.
#[derive(Debug, Clone)]
pub struct Wav2Vec2Output<B: Backend> {
    /// `[batch, frames, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// When requested, `num_hidden_layers + 1` tensors `[batch, frames, hidden]`: the input of
    /// layer 0, then each layer's output, as transformers 5.x returns them (in the pre-LN
    /// layout the last one precedes the final LayerNorm; see [`crate::encoder::Encoder::forward`]).
    pub hidden_states: Option<Vec<Tensor<B, 3>>>,
    /// LayerNormed conv features `[batch, frames, conv_dim[-1]]`.
    pub extract_features: Tensor<B, 3>,
}

/// wav2vec2 without a head, numerically equal to Hugging Face's `Wav2Vec2Model` in eval mode.
/// Field names equal checkpoint key prefixes.
///
/// `masked_spec_embed` (the vector that replaces masked frames) exists only for
/// self-supervised pretraining ([`Wav2Vec2Model::with_masked_spec_embed`],
/// [`Wav2Vec2Model::forward_masked`]): fine-tuning never masks, so loading a checkpoint skips
/// it and parameter counts leave it out, as the paper's counts do. Not implemented: feature
/// (channel) masking and attention masks for padded batches — crop or tile a batch to one
/// length instead.
#[derive(Module, Debug)]
pub struct Wav2Vec2Model<B: Backend> {
    pub feature_extractor: FeatureEncoder<B>,
    pub feature_projection: FeatureProjection<B>,
    pub encoder: Encoder<B>,
    pub masked_spec_embed: Option<Param<Tensor<B, 1>>>,
    #[module(skip)]
    pub config: Wav2Vec2Config,
    /// The adapters' configuration once [`Wav2Vec2Model::with_lora`] has frozen the model.
    #[module(skip)]
    pub lora: Option<LoraConfig>,
    /// The (IA)^3 configuration once [`Wav2Vec2Model::try_with_ia3`] has frozen the model.
    #[module(skip)]
    pub ia3: Option<Ia3Config>,
    /// The adapter layers added by [`Wav2Vec2Model::try_with_adapters`] (adapters a checkpoint
    /// brings, as MMS's, are part of the base model and leave this `None`).
    #[module(skip)]
    pub adapter: Option<AdapterLayerConfig>,
}

impl Wav2Vec2Config {
    /// Builds a randomly initialised model (parameters are initialised lazily, on first use).
    ///
    /// # Panics
    /// If the configuration does not pass [`Wav2Vec2Config::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Wav2Vec2Model<B> {
        if let Err(err) = self.validate() {
            panic!("invalid wav2vec2 config: {err}");
        }
        Wav2Vec2Model {
            feature_extractor: FeatureEncoder::init(self, device),
            feature_projection: FeatureProjection::init(self, device),
            encoder: Encoder::init(self, device),
            masked_spec_embed: None,
            config: self.clone(),
            lora: None,
            ia3: None,
            adapter: None,
        }
    }
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Adds a `masked_spec_embed` initialised as Hugging Face does (uniform in [0, 1)).
    pub fn with_masked_spec_embed(mut self, device: &B::Device) -> Self {
        let width = self.config.hidden_size;
        self.masked_spec_embed = Some(Param::from_tensor(Tensor::random(
            [width],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            device,
        )));
        self
    }

    /// Loads a Hugging Face model directory (`config.json` plus `model.safetensors` or
    /// `pytorch_model.bin`), or a fairseq checkpoint file (`.pt`, see [`crate::fairseq`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        if crate::fairseq::is_fairseq_checkpoint(dir) {
            return Ok(Self::from_fairseq(dir, device)?);
        }
        let config = Wav2Vec2Config::from_hf_json_file(dir.join("config.json"))?;
        let weights = crate::load::find_weights(dir)?;
        Self::from_file(config, &weights, device)
    }

    /// Builds the model of `config` (as [`crate::load::checkpoint_config`] gave it, perhaps
    /// with other dropout settings) from the weights of a pretrained checkpoint: a Hugging Face
    /// model directory or a fairseq `.pt` file.
    pub fn from_checkpoint_path(
        config: Wav2Vec2Config,
        path: &Path,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        if crate::fairseq::is_fairseq_checkpoint(path) {
            Ok(crate::fairseq::FairseqCheckpoint::open(path)?.into_model(config, device)?)
        } else {
            Self::from_file(config, &crate::load::find_weights(path)?, device)
        }
    }

    /// Builds the model of `config` from a `.safetensors` or PyTorch checkpoint file.
    pub fn from_file(
        config: Wav2Vec2Config,
        weights: &Path,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let mut src = TensorSource::open(weights)?;
        Self::from_source(config, &mut src, device)
    }

    /// Builds the model of `config` from checkpoint tensors; every tensor of the model must be
    /// present with its exact shape, and every tensor of the checkpoint must be used or be a
    /// known pre-training/head extra.
    pub fn from_source(
        config: Wav2Vec2Config,
        src: &mut TensorSource,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        config.validate()?;
        let model = Self {
            feature_extractor: FeatureEncoder::from_checkpoint(&config, src, device)?,
            feature_projection: FeatureProjection::from_checkpoint(&config, src, device)?,
            encoder: Encoder::from_checkpoint(&config, src, device)?,
            masked_spec_embed: None,
            config,
            lora: None,
            ia3: None,
            adapter: None,
        };
        src.finish()?;
        Ok(model)
    }
}

impl<B: ModelBackend> Wav2Vec2Model<B> {
    /// Runs the network on `input_values` `[batch, samples]` (already normalised if the
    /// checkpoint's feature extractor says `do_normalize`).
    ///
    /// Dropout, attention dropout and LayerDrop act only when the backend records gradients
    /// (as burn's `Dropout`); on a plain backend the output is deterministic.
    ///
    /// # Panics
    /// If `samples` is shorter than the receptive field of the feature encoder (400 for
    /// the standard stack); see [`Wav2Vec2Config::num_frames`].
    pub fn forward(
        &self,
        input_values: Tensor<B, 2>,
        output_hidden_states: bool,
    ) -> Wav2Vec2Output<B> {
        let samples = input_values.dims()[1];
        assert!(
            self.config.num_frames(samples).is_some(),
            "wav2vec2 needs at least {} samples per input, got {samples}",
            self.config.receptive_field()
        );
        let features = self.feature_extractor.forward(input_values);
        let (hidden, extract_features) = self.feature_projection.forward(features);
        self.encode(hidden, extract_features, output_hidden_states)
    }

    /// [`Self::forward`] with the projected features of the frames where `time_mask`
    /// (`[batch, frames]`) is true replaced by `masked_spec_embed` before the encoder, as Hugging
    /// Face's `_mask_hidden_states` does with `mask_time_indices`: the input of masked
    /// prediction, where the model must infer the hidden frames from their context.
    ///
    /// # Panics
    /// If the model has no `masked_spec_embed` ([`Self::with_masked_spec_embed`]), or the mask
    /// is not `[batch, frames]`.
    pub fn forward_masked(
        &self,
        input_values: Tensor<B, 2>,
        time_mask: Tensor<B, 2, Bool>,
        output_hidden_states: bool,
    ) -> Wav2Vec2Output<B> {
        let embed = self
            .masked_spec_embed
            .as_ref()
            .expect("forward_masked needs masked_spec_embed: call with_masked_spec_embed first")
            .val();
        let features = self.feature_extractor.forward(input_values);
        let (hidden, extract_features) = self.feature_projection.forward(features);
        let [batch, frames, width] = hidden.dims();
        assert_eq!(
            time_mask.dims(),
            [batch, frames],
            "the time mask must be [batch, frames] of the feature encoder's output"
        );
        // Arithmetic rather than mask_where, so the gradient reaches masked_spec_embed.
        let keep = time_mask.bool_not().float().reshape([batch, frames, 1]);
        let masked = keep.clone().neg().add_scalar(1.0);
        let hidden = hidden * keep + embed.reshape([1, 1, width]) * masked;
        self.encode(hidden, extract_features, output_hidden_states)
    }

    fn encode(
        &self,
        hidden: Tensor<B, 3>,
        extract_features: Tensor<B, 3>,
        output_hidden_states: bool,
    ) -> Wav2Vec2Output<B> {
        let mut states = output_hidden_states.then(Vec::new);
        let last_hidden_state = self.encoder.forward(hidden, states.as_mut());
        Wav2Vec2Output {
            last_hidden_state,
            hidden_states: states,
            extract_features,
        }
    }
}
