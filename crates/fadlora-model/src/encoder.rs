//! Positional convolution and the transformer encoder, in both of Hugging Face's layouts.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::adapter_layer::{AdapterKind, AdapterLayer, AdapterLayerConfig};
use crate::config::Wav2Vec2Config;
use crate::conv::WeightNormGroupedConv;
use crate::linear::{init_linear, linear_from_checkpoint, EncoderLinear};
use crate::load::{LoadError, TensorSource};
use crate::lora::LoraTarget;
use crate::norm::Norm;
use crate::ops::{dropout, gelu, permute4, softmax, ModelBackend};

/// Multi-head self-attention (no mask: inputs of a batch share one length).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: EncoderLinear<B>,
    pub k_proj: EncoderLinear<B>,
    pub v_proj: EncoderLinear<B>,
    pub out_proj: EncoderLinear<B>,
    pub dropout: Dropout,
    pub num_heads: usize,
}

impl<B: Backend> Attention<B> {
    fn new(
        config: &Wav2Vec2Config,
        mut linear: impl FnMut(&str) -> Result<EncoderLinear<B>, LoadError>,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            q_proj: linear("q_proj")?,
            k_proj: linear("k_proj")?,
            v_proj: linear("v_proj")?,
            out_proj: linear("out_proj")?,
            dropout: DropoutConfig::new(config.attention_dropout).init(),
            num_heads: config.num_attention_heads,
        })
    }
}

impl<B: ModelBackend> Attention<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, len, hidden] = x.dims();
        let (heads, head_dim) = (self.num_heads, hidden / self.num_heads);
        // Heads to the front and back with `permute4`, which copies in parallel on the CPU.
        let split =
            |t: Tensor<B, 3>| permute4(t.reshape([batch, len, heads, head_dim]), [0, 2, 1, 3]);
        let merge = |t: Tensor<B, 4>| permute4(t, [0, 2, 1, 3]).reshape([batch, len, hidden]);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        if B::FUSED_INFERENCE_ATTENTION && !B::ad_enabled(&q.device()) {
            // The backend's fused attention, with its default scale 1 / sqrt(head_dim).
            let context = attention(q, k, v, None, None, AttentionModuleOptions::default());
            return self.out_proj.forward(merge(context));
        }
        let scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        let probs = dropout(&self.dropout, softmax(scores));
        self.out_proj.forward(merge(probs.matmul(v)))
    }
}

/// `output_dense(dropout(gelu(intermediate_dense(x))))`, then dropout.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub intermediate_dense: EncoderLinear<B>,
    pub intermediate_dropout: Dropout,
    pub output_dense: EncoderLinear<B>,
    pub output_dropout: Dropout,
}

impl<B: ModelBackend> FeedForward<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.intermediate_dense.forward(x);
        let x = dropout(&self.intermediate_dropout, gelu(x));
        dropout(&self.output_dropout, self.output_dense.forward(x))
    }
}

/// One transformer block. `stable` selects pre-LN (`do_stable_layer_norm = true`, XLS-R)
/// over post-LN (wav2vec2-base); the parameters are the same. `adapter_layer` is an MMS or
/// bottleneck adapter ([`crate::adapter_layer`]), absent in plain checkpoints.
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    pub attention: Attention<B>,
    pub dropout: Dropout,
    pub layer_norm: Norm<B>,
    pub feed_forward: FeedForward<B>,
    pub final_layer_norm: Norm<B>,
    pub adapter_layer: Option<AdapterLayer<B>>,
    pub stable: bool,
}

impl<B: Backend> EncoderLayer<B> {
    /// Builds the layer, asking `linear(name, d_in, d_out)` for each projection and `norm(name)`
    /// for each LayerNorm, so random init and checkpoint loading share one structure.
    fn new(
        config: &Wav2Vec2Config,
        mut linear: impl FnMut(&str, usize, usize) -> Result<EncoderLinear<B>, LoadError>,
        mut norm: impl FnMut(&str) -> Result<Norm<B>, LoadError>,
        adapter_layer: Option<AdapterLayer<B>>,
    ) -> Result<Self, LoadError> {
        let h = config.hidden_size;
        let f = config.intermediate_size;
        Ok(Self {
            attention: Attention::new(config, |name| linear(&format!("attention.{name}"), h, h))?,
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            layer_norm: norm("layer_norm")?,
            feed_forward: FeedForward {
                intermediate_dense: linear("feed_forward.intermediate_dense", h, f)?,
                intermediate_dropout: DropoutConfig::new(config.activation_dropout).init(),
                output_dense: linear("feed_forward.output_dense", f, h)?,
                output_dropout: DropoutConfig::new(config.hidden_dropout).init(),
            },
            final_layer_norm: norm("final_layer_norm")?,
            adapter_layer,
            stable: config.do_stable_layer_norm,
        })
    }

    /// The projection `target` of this layer.
    pub fn projection(&self, target: LoraTarget) -> &EncoderLinear<B> {
        match target {
            LoraTarget::Q => &self.attention.q_proj,
            LoraTarget::K => &self.attention.k_proj,
            LoraTarget::V => &self.attention.v_proj,
            LoraTarget::O => &self.attention.out_proj,
            LoraTarget::FfnIn => &self.feed_forward.intermediate_dense,
            LoraTarget::FfnOut => &self.feed_forward.output_dense,
        }
    }

    /// The projection `target` of this layer, to change it in place.
    pub fn projection_mut(&mut self, target: LoraTarget) -> &mut EncoderLinear<B> {
        match target {
            LoraTarget::Q => &mut self.attention.q_proj,
            LoraTarget::K => &mut self.attention.k_proj,
            LoraTarget::V => &mut self.attention.v_proj,
            LoraTarget::O => &mut self.attention.out_proj,
            LoraTarget::FfnIn => &mut self.feed_forward.intermediate_dense,
            LoraTarget::FfnOut => &mut self.feed_forward.output_dense,
        }
    }

    /// Every projection through `f(target, projection)`.
    pub(crate) fn map_projections(
        mut self,
        f: &mut impl FnMut(LoraTarget, EncoderLinear<B>) -> EncoderLinear<B>,
    ) -> Self {
        self.attention.q_proj = f(LoraTarget::Q, self.attention.q_proj);
        self.attention.k_proj = f(LoraTarget::K, self.attention.k_proj);
        self.attention.v_proj = f(LoraTarget::V, self.attention.v_proj);
        self.attention.out_proj = f(LoraTarget::O, self.attention.out_proj);
        self.feed_forward.intermediate_dense =
            f(LoraTarget::FfnIn, self.feed_forward.intermediate_dense);
        self.feed_forward.output_dense = f(LoraTarget::FfnOut, self.feed_forward.output_dense);
        self
    }
}

impl<B: ModelBackend> EncoderLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.stable {
            let attn = self.attention.forward(self.layer_norm.forward(x.clone()));
            let x = x + dropout(&self.dropout, attn);
            let ff = self
                .feed_forward
                .forward(self.final_layer_norm.forward(x.clone()));
            let x = x + self.bottleneck(ff);
            match &self.adapter_layer {
                Some(adapter) if adapter.kind == AdapterKind::Mms => x.clone() + adapter.forward(x),
                _ => x,
            }
        } else {
            let attn = self.attention.forward(x.clone());
            let x = self.layer_norm.forward(x + dropout(&self.dropout, attn));
            let ff = self.feed_forward.forward(x.clone());
            self.final_layer_norm.forward(x + self.bottleneck(ff))
        }
    }

    /// The feed-forward output through a bottleneck adapter, if the layer has one.
    fn bottleneck(&self, ff: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.adapter_layer {
            Some(adapter) if adapter.kind == AdapterKind::Bottleneck => {
                ff.clone() + adapter.forward(ff)
            }
            _ => ff,
        }
    }
}

/// Grouped convolution over time, weight-normed, then GELU.
#[derive(Module, Debug)]
pub struct PositionalConvEmbedding<B: Backend> {
    pub conv: WeightNormGroupedConv<B>,
}

impl<B: ModelBackend> PositionalConvEmbedding<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        gelu(self.conv.forward(x))
    }
}

/// Positional embedding, encoder LayerNorm and the stack of transformer layers.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub pos_conv_embed: PositionalConvEmbedding<B>,
    pub layer_norm: Norm<B>,
    pub dropout: Dropout,
    pub layers: Vec<EncoderLayer<B>>,
    pub stable: bool,
    pub layerdrop: f64,
    #[module(skip)]
    pub layerdrop_rng: LayerDropRng,
}

/// Where LayerDrop draws from: a host RNG, so that deciding which layers run needs no read-back
/// from the device. Clones of a model share it; [`LayerDropRng::reseed`] makes the draws that
/// follow reproducible (the trainer reseeds it every epoch).
#[derive(Debug, Clone)]
pub struct LayerDropRng(Arc<Mutex<StdRng>>);

impl Default for LayerDropRng {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(StdRng::seed_from_u64(0))))
    }
}

impl LayerDropRng {
    pub fn reseed(&self, seed: u64) {
        *self.lock() = StdRng::seed_from_u64(seed);
    }

    /// Which of `layers` layers to skip, each with probability `p`.
    fn draw(&self, layers: usize, p: f64) -> Vec<bool> {
        let mut rng = self.lock();
        (0..layers).map(|_| rng.random::<f64>() < p).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdRng> {
        // The RNG state is valid whatever a panicking holder was doing.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<B: Backend> Encoder<B> {
    pub fn init(config: &Wav2Vec2Config, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let mms = config
            .mms_adapter_dim()
            .map(|size| AdapterLayerConfig::new(AdapterKind::Mms, size));
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                EncoderLayer::new(
                    config,
                    |_, d_in, d_out| Ok(init_linear(d_in, d_out, device)),
                    |_| Ok(Norm::layer_norm(h, eps, device)),
                    mms.as_ref().map(|c| AdapterLayer::init(c, h, device)),
                )
                .expect("random initialisation cannot fail")
            })
            .collect();
        Self {
            pos_conv_embed: PositionalConvEmbedding {
                conv: WeightNormGroupedConv::init(
                    h,
                    config.num_conv_pos_embeddings,
                    config.num_conv_pos_embedding_groups,
                    device,
                ),
            },
            layer_norm: Norm::layer_norm(h, eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            layers,
            stable: config.do_stable_layer_norm,
            layerdrop: config.layerdrop,
            layerdrop_rng: LayerDropRng::default(),
        }
    }

    pub fn from_checkpoint(
        config: &Wav2Vec2Config,
        src: &mut TensorSource,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let conv = WeightNormGroupedConv::from_checkpoint(
            src,
            "encoder.pos_conv_embed.conv",
            h,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
            device,
        )?;
        let layer_norm = src.take_norm("encoder.layer_norm", h, eps, device)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let prefix = format!("encoder.layers.{i}");
            let adapter_layer = match config.mms_adapter_dim() {
                Some(size) => Some(AdapterLayer::from_checkpoint(
                    src,
                    &format!("{prefix}.adapter_layer"),
                    h,
                    size,
                    device,
                )?),
                None => None,
            };
            // Both closures need the source; a RefCell keeps the borrow checker content
            // without changing the order in which tensors are read.
            let src_cell = std::cell::RefCell::new(&mut *src);
            layers.push(EncoderLayer::new(
                config,
                |name, d_in, d_out| {
                    linear_from_checkpoint(
                        &mut src_cell.borrow_mut(),
                        &format!("{prefix}.{name}"),
                        d_in,
                        d_out,
                        device,
                    )
                },
                |name| {
                    src_cell
                        .borrow_mut()
                        .take_norm(&format!("{prefix}.{name}"), h, eps, device)
                },
                adapter_layer,
            )?);
        }
        Ok(Self {
            pos_conv_embed: PositionalConvEmbedding { conv },
            layer_norm,
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            layers,
            stable: config.do_stable_layer_norm,
            layerdrop: config.layerdrop,
            layerdrop_rng: LayerDropRng::default(),
        })
    }
}

impl<B: ModelBackend> Encoder<B> {
    /// Runs the encoder on projected features `[batch, frames, hidden]`.
    ///
    /// With `hidden_states`, it collects Hugging Face's `hidden_states` (transformers 5.x):
    /// the input of layer 0, then the output of every layer. In the post-LN layout the first
    /// entry is after the encoder LayerNorm and the last equals the returned state. In the
    /// pre-LN layout the first entry is the raw sum of features and positional embedding, and
    /// the last is the final layer's output *before* the encoder LayerNorm (fairseq's layer
    /// result; transformers 4.x put the normed output there instead), while the returned
    /// state is normed.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mut hidden_states: Option<&mut Vec<Tensor<B, 3>>>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.pos_conv_embed.forward(x);
        let mut x = if self.stable {
            dropout(&self.dropout, x)
        } else {
            dropout(&self.dropout, self.layer_norm.forward(x))
        };
        let training = B::ad_enabled(&x.device());
        // LayerDrop as Hugging Face: each layer is skipped with probability `layerdrop`, in
        // training only.
        let dropped = if training && self.layerdrop > 0.0 {
            self.layerdrop_rng.draw(self.layers.len(), self.layerdrop)
        } else {
            vec![false; self.layers.len()]
        };
        for (layer, dropped) in self.layers.iter().zip(dropped) {
            if let Some(states) = hidden_states.as_deref_mut() {
                states.push(x.clone());
            }
            if dropped {
                continue;
            }
            x = layer.forward(x);
        }
        if let Some(states) = hidden_states {
            states.push(x.clone());
        }
        if self.stable {
            self.layer_norm.forward(x)
        } else {
            x
        }
    }
}
