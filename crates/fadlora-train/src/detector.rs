//! The detector: wav2vec2 front end + a pluggable classifier back end, its loss and score.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::FloatDType;
use fadlora_model::{ModelBackend, Precision, PrecisionDType, Wav2Vec2Config, Wav2Vec2Model};
use fadlora_run::{HeadKind, ParamCounts, ScoreKind};
use serde::{Deserialize, Serialize};

use crate::aasist::{AasistConfig, AasistHead};
use crate::config::LoraSection;
use crate::sls::{SlsConfig, SlsHead};
use crate::{lora_hookup, TrainError};

/// The classifier back end. Output logits `[batch, 2]`: index 0 = spoof, 1 = bona fide.
// burn 0.21 has no Module for Box; one head per detector, moved a few times per run.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head<B: Backend> {
    MeanLinear(MeanLinearHead<B>),
    Aasist(AasistHead<B>),
    Sls(SlsHead<B>),
}

#[derive(Module, Debug)]
pub struct MeanLinearHead<B: Backend> {
    pub linear: Linear<B>,
}

impl<B: Backend> Head<B> {
    /// `frames`: the frames of the run's input length, which the SLS head's `fc1` is sized
    /// for (the other heads take any length).
    pub fn init(kind: HeadKind, hidden: usize, frames: usize, device: &B::Device) -> Self {
        match kind {
            HeadKind::Sls => Head::Sls(
                SlsConfig::new()
                    .with_input_width(hidden)
                    .with_frames(frames)
                    .init(device),
            ),
            HeadKind::MeanLinear => Head::MeanLinear(MeanLinearHead {
                linear: LinearConfig::new(hidden, 2).init(device),
            }),
            HeadKind::Aasist => Head::Aasist(AasistConfig::new(hidden).init(device)),
        }
    }

    /// Makes BatchNorm running statistics current before they are saved (see
    /// [`AasistHead::sync_running_stats`]); a no-op for heads without BatchNorm.
    pub fn sync_running_stats(&self) {
        match self {
            Head::MeanLinear(_) => {}
            Head::Aasist(head) => head.sync_running_stats(),
            Head::Sls(head) => head.sync_running_stats(),
        }
    }

    /// `hidden` `[batch, frames, width]` -> logits `[batch, 2]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        match self {
            Head::MeanLinear(head) => {
                let [batch, _, width] = hidden.dims();
                let pooled = hidden.mean_dim(1).reshape([batch, width]);
                head.linear.forward(pooled)
            }
            Head::Aasist(head) => head.forward(hidden),
            Head::Sls(head) => head.forward(vec![hidden]),
        }
    }
}

/// Where the frozen (or, in full fine-tuning, initial) front-end weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseSource {
    /// Random initialisation from this seed (backend RNG): no pretrained checkpoint exists.
    Random { seed: u64 },
    /// A Hugging Face model directory, or a fairseq checkpoint file (`.pt`).
    Pretrained { dir: PathBuf },
}

/// Everything needed to rebuild a detector's structure.
#[derive(Config, Debug)]
pub struct DetectorConfig {
    pub wav2vec2: Wav2Vec2Config,
    #[config(default = "HeadKind::MeanLinear")]
    pub head: HeadKind,
    /// `None` = full fine-tuning (nothing frozen).
    pub lora: Option<LoraSection>,
    /// (IA)^3 vectors instead of LoRA (everything pretrained frozen). `None` in detectors
    /// saved before (IA)^3.
    pub ia3: Option<fadlora_run::Ia3Section>,
    /// Adapter layers instead of LoRA (everything pretrained frozen). `None` in detectors
    /// saved before adapter layers.
    pub adapter: Option<fadlora_run::AdapterSection>,
    /// Full fine-tuning of the top or bottom encoder layers only (everything else frozen).
    /// `None` in detectors saved before partial fine-tuning.
    pub partial: Option<fadlora_run::PartialSection>,
    /// The head on a learned weighted sum of every hidden state (see
    /// [`Detector::layer_weights`]); the whole front end is frozen. `None` in detectors saved
    /// before layer sums.
    pub layer_sum: Option<fadlora_run::LayerSumSection>,
    /// The whole front end frozen, the head alone training on what it always reads. `None` in
    /// detectors saved before `[frozen]`.
    pub frozen: Option<fadlora_run::FrozenSection>,
    /// A frozen-feature probe of this hidden state (see [`Detector::probe_layer`]): the whole
    /// front end is frozen and only the head trains. `None` in detectors saved before probes.
    pub probe_layer: Option<usize>,
    /// Frames of the run's input length: the SLS head's `fc1` is sized for them. `None` (and
    /// in detectors saved before the SLS head): 201, 64,600 samples at 16 kHz.
    pub head_frames: Option<usize>,
    /// The float type the front end computes in (the head and loss stay f32).
    #[config(default = "Precision::F32")]
    pub precision: Precision,
}

/// wav2vec2 + back end.
#[derive(Module, Debug)]
pub struct Detector<B: Backend> {
    pub wav2vec2: Wav2Vec2Model<B>,
    pub head: Head<B>,
    #[module(skip)]
    pub precision: Precision,
    /// For a probe, the hidden state the head pools: 0 = the encoder's input, k = the output of
    /// encoder layer k, `num_hidden_layers` = the final output (what full and LoRA detectors
    /// pool). `None` = the final output.
    #[module(skip)]
    pub probe_layer: Option<usize>,
    /// A layer sum's logits, one per hidden state (`num_hidden_layers + 1`: the encoder's input,
    /// each layer's output, the last being the final output as full and LoRA detectors pool
    /// it): the head pools `sum_k softmax(w)_k h_k`. They start at zero, so equal weights.
    pub layer_weights: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Detector<B> {
    /// For inference: folds any LoRA adapters into the frozen weights, so scoring costs what
    /// the base model costs (a no-op after full fine-tuning). Fails when a merged weight would
    /// not be finite.
    pub fn merge_adapters(mut self) -> Result<Self, fadlora_model::LoraError> {
        self.wav2vec2 = self.wav2vec2.merge_lora()?;
        Ok(self)
    }

    /// Stores the front end's weight matrices that do not train in the detector's precision
    /// (every one of them on a backend without autodiff); a no-op in f32. Call it once every
    /// parameter is loaded: checkpoints hold f32.
    /// The head stays f32, as the loss.
    pub fn with_frozen_weights_in_precision(mut self) -> Self {
        self.wav2vec2 = fadlora_model::precision::cast_frozen(self.wav2vec2, self.precision);
        self
    }
}

impl DetectorConfig {
    /// Builds the detector: the front end from `source`, LoRA adapters if configured (which
    /// freeze every pretrained tensor) or, for a probe, the whole front end frozen, a fresh
    /// head, and then deterministic parameter ids
    /// (see [`assign_param_ids`]). Every parameter is materialised here, in module order, so
    /// random initialisation consumes the backend RNG the same way in every run.
    pub fn build<B: Backend>(
        &self,
        source: &BaseSource,
        device: &B::Device,
    ) -> Result<Detector<B>, TrainError> {
        let wav2vec2 = self.front_end(source, device)?;
        let head = Head::init(
            self.head,
            self.wav2vec2.hidden_size,
            self.head_frames.unwrap_or(201),
            device,
        );
        let layer_weights = self.layer_sum.as_ref().map(|_| {
            Param::from_tensor(Tensor::zeros([self.wav2vec2.num_hidden_layers + 1], device))
        });
        Ok(assign_param_ids(Detector {
            wav2vec2,
            head,
            precision: self.precision,
            probe_layer: self.probe_layer,
            layer_weights,
        }))
    }

    /// The front end from `source`, adapted or frozen as the method says. Its own function:
    /// in debug builds each arm's model is a slot of the caller's stack frame, and `build`'s
    /// frame stays live through [`assign_param_ids`]'s deep recursion.
    #[inline(never)]
    fn front_end<B: Backend>(
        &self,
        source: &BaseSource,
        device: &B::Device,
    ) -> Result<Wav2Vec2Model<B>, TrainError> {
        let wav2vec2 = match source {
            BaseSource::Random { seed } => {
                B::seed(device, *seed);
                self.wav2vec2.init(device)
            }
            BaseSource::Pretrained { dir } => {
                Wav2Vec2Model::from_checkpoint_path(self.wav2vec2.clone(), dir, device)?
            }
        };
        Ok(match (&self.lora, self.probe_layer) {
            (Some(lora), _) => lora_hookup::apply(wav2vec2, lora, device)?,
            (None, None) if self.ia3.is_some() => {
                let ia3 = self.ia3.as_ref().expect("checked");
                lora_hookup::apply_ia3(wav2vec2, ia3, device)?
            }
            (None, None) if self.adapter.is_some() => {
                let adapter = self.adapter.as_ref().expect("checked");
                lora_hookup::apply_adapter(wav2vec2, adapter, device)?
            }
            (None, None) if self.partial.is_some() => {
                let partial = self.partial.as_ref().expect("checked");
                lora_hookup::apply_partial(wav2vec2, partial)?
            }
            // Random initialisation already materialises every parameter (assign_param_ids
            // below), so `no_grad` costs nothing more than it would.
            (None, Some(_)) => wav2vec2.no_grad(),
            (None, None) if self.layer_sum.is_some() || self.frozen.is_some() => wav2vec2.no_grad(),
            (None, None) => wav2vec2,
        })
    }
}

impl<B: ModelBackend> Detector<B> {
    /// `waveforms` `[batch, samples]` -> logits `[batch, 2]` (0 = spoof, 1 = bona fide).
    pub fn forward(&self, waveforms: Tensor<B, 2>) -> Tensor<B, 2> {
        let waveforms = waveforms.cast(self.precision.dtype());
        if let Some(weights) = &self.layer_weights {
            return self.head.forward(self.layer_sum(waveforms, weights.val()));
        }
        if let Head::Sls(head) = &self.head {
            return self.sls_forward(head, waveforms);
        }
        let hidden = match self.probe_layer {
            // The last entry of `hidden_states` precedes the pre-LN layout's final LayerNorm, so
            // the final output comes from `last_hidden_state`, as the other detectors pool it.
            Some(layer) if layer < self.wav2vec2.config.num_hidden_layers => {
                let mut states = self
                    .wav2vec2
                    .forward(waveforms, true)
                    .hidden_states
                    .expect("hidden states were asked for");
                states.swap_remove(layer)
            }
            _ => self.wav2vec2.forward(waveforms, false).last_hidden_state,
        };
        self.head.forward(hidden.cast(FloatDType::F32))
    }
}

impl<B: ModelBackend> Detector<B> {
    /// The SLS head on the output of every encoder layer, as fairseq's `layer_results`: the
    /// encoder's input left out, the last before the pre-LN layout's final LayerNorm. (Apart
    /// from [`Detector::forward`], whose stack frame stays as small as before in debug builds.)
    #[inline(never)]
    fn sls_forward(&self, head: &SlsHead<B>, waveforms: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut states = self
            .wav2vec2
            .forward(waveforms, true)
            .hidden_states
            .expect("hidden states were asked for");
        states.remove(0);
        head.forward(
            states
                .into_iter()
                .map(|h| h.cast(FloatDType::F32))
                .collect(),
        )
    }

    /// The weighted sum of every hidden state, in f32: `sum_k softmax(logits)_k h_k` over the
    /// `num_hidden_layers + 1` states, the last replaced by the final (normed) output. What a
    /// layer-sum detector's head pools, with `logits` its [`Detector::layer_weights`];
    /// `waveforms` already in the detector's precision.
    #[inline(never)]
    pub fn layer_sum(&self, waveforms: Tensor<B, 2>, logits: Tensor<B, 1>) -> Tensor<B, 3> {
        let output = self.wav2vec2.forward(waveforms, true);
        let mut states = output.hidden_states.expect("hidden states were asked for");
        let last = states.len() - 1;
        states[last] = output.last_hidden_state;
        let n = states.len();
        let states: Vec<Tensor<B, 3>> = states
            .into_iter()
            .map(|h| h.cast(FloatDType::F32))
            .collect();
        let stacked = Tensor::stack::<4>(states, 0);
        let weights = burn::tensor::activation::softmax(logits, 0).reshape([n, 1, 1, 1]);
        let [_, batch, frames, width] = stacked.dims();
        (stacked * weights)
            .sum_dim(0)
            .reshape([batch, frames, width])
    }
}

/// The countermeasure score of each row under [`ScoreKind::LogitDifference`]: bona fide logit
/// minus spoof logit. It is the log odds `log p(bona fide) - log p(spoof)` of the softmax, so
/// it ranks trials exactly as the bona fide log-softmax or probability does; higher = more
/// bona fide. `0` is the decision boundary of the classifier.
pub fn bonafide_scores<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    score(logits, ScoreKind::LogitDifference)
}

/// The score of each row of `logits` `[batch, 2]` (0 = spoof, 1 = bona fide) under `kind`:
/// what a detector saved with that choice (`DetectorFile::score`) must be scored with, so that
/// thresholds and EERs stay in the units the run measured them in.
pub fn score<B: Backend>(logits: Tensor<B, 2>, kind: ScoreKind) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let bonafide = logits.clone().slice([0..batch, 1..2]);
    match kind {
        ScoreKind::LogitDifference => {
            let spoof = logits.slice([0..batch, 0..1]);
            (bonafide - spoof).reshape([batch])
        }
        ScoreKind::BonafideLogit => bonafide.reshape([batch]),
    }
}

/// Class-weighted cross-entropy with PyTorch's reduction: `sum_i w[y_i] * nll_i / sum_i w[y_i]`
/// (`nn.CrossEntropyLoss(weight=...)`, as SSL_Anti-spoofing trains). `weights` = `[spoof, bona
/// fide]`; `labels` are class indices (1 = bona fide).
pub fn weighted_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    weights: [f64; 2],
) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let device = logits.device();
    let log_probs = log_softmax(logits, 1);
    let picked = log_probs
        .gather(1, labels.clone().reshape([batch, 1]))
        .reshape([batch]);
    let class_weights =
        Tensor::<B, 1>::from_floats([weights[0] as f32, weights[1] as f32], &device);
    let w = class_weights.select(0, labels);
    // A batch made only of a zero-weight class has no loss rather than 0/0.
    let norm = w.clone().sum().clamp_min(1e-12);
    (picked * w).sum().neg() / norm
}

/// Gives every parameter an id derived from its position in the module, so ids (which key
/// optimizer state and gradients) are the same in every process that builds this structure;
/// a resumed run can then load the optimizer record saved by the interrupted one.
pub fn assign_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Ids(u64);
    impl<B: Backend> ModuleMapper<B> for Ids {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            self.0 += 1;
            // Offset keeps them apart from ids burn generates for anything else.
            Param::from_mapped_value(ParamId::from(0xFAD1_0000_0000 + self.0), tensor, mapper)
        }
    }
    module.map(&mut Ids(0))
}

/// Dotted module paths (burn-store's naming) of the float parameters, split by whether they
/// require gradients, and of the running statistics of BatchNorm layers.
pub struct ParamPaths {
    pub trainable: BTreeSet<String>,
    pub frozen: BTreeSet<String>,
    /// BatchNorm running means and variances: no gradient, but they change as the model trains
    /// and eval-mode outputs depend on them, so checkpoints keep them with the trainable
    /// parameters. Not parameters: outside `counts`, as PyTorch counts buffers.
    pub running: BTreeSet<String>,
    pub counts: ParamCounts,
}

impl ParamPaths {
    /// What every checkpoint saves: the trainable parameters and the running statistics.
    pub fn checkpointed(&self) -> BTreeSet<String> {
        self.trainable.union(&self.running).cloned().collect()
    }
}

pub fn param_paths<B: Backend, M: Module<B>>(module: &M) -> ParamPaths {
    struct Walk {
        stack: Vec<String>,
        containers: Vec<String>,
        out: ParamPaths,
    }
    impl<B: Backend> ModuleVisitor<B> for Walk {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.stack.push(name.to_string());
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
            self.containers.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path = self.stack.join(".");
            // burn visits a RunningState as a parameter: tell it by its place in BatchNorm.
            let running = self
                .containers
                .last()
                .is_some_and(|c| c == "Struct:BatchNorm")
                && self
                    .stack
                    .last()
                    .is_some_and(|f| f == "running_mean" || f == "running_var");
            if running {
                self.out.running.insert(path);
                return;
            }
            let n = param.lazy_shape().num_elements();
            self.out.counts.total += n;
            if param.is_require_grad() {
                self.out.counts.trainable += n;
                self.out.trainable.insert(path);
            } else {
                self.out.frozen.insert(path);
            }
        }
    }
    let mut walk = Walk {
        stack: Vec::new(),
        containers: Vec::new(),
        out: ParamPaths {
            trainable: BTreeSet::new(),
            frozen: BTreeSet::new(),
            running: BTreeSet::new(),
            counts: ParamCounts {
                trainable: 0,
                total: 0,
            },
        },
    };
    module.visit(&mut walk);
    walk.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Flex;

    #[test]
    fn weighted_ce_matches_pytorch_reduction() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[2.0, 0.5], [0.1, 0.3], [-1.0, 1.0]], &device);
        let labels = Tensor::<B, 1, Int>::from_ints([0, 1, 0], &device);
        let loss: f32 = weighted_cross_entropy(logits, labels, [0.1, 0.9]).into_scalar();
        // By hand: nll = [log(1+e^-1.5), log(1+e^-0.2), log(1+e^2)], weights [0.1, 0.9, 0.1].
        let nll = |d: f64| (1.0 + (-d).exp()).ln();
        let expected = (0.1 * nll(1.5) + 0.9 * nll(0.2) + 0.1 * nll(-2.0)) / 1.1;
        assert!(
            (loss as f64 - expected).abs() < 1e-6,
            "{loss} vs {expected}"
        );
    }

    #[test]
    fn score_is_bonafide_minus_spoof_logit() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[2.0, 0.5], [0.1, 0.3]], &device);
        let scores: Vec<f32> = bonafide_scores(logits).into_data().to_vec().unwrap();
        assert!((scores[0] + 1.5).abs() < 1e-6 && (scores[1] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn bonafide_logit_score_is_the_second_logit_of_a_forward_pass() {
        let device = Default::default();
        let model = DetectorConfig::new(Wav2Vec2Config::micro())
            .build::<B>(&BaseSource::Random { seed: 5 }, &device)
            .unwrap();
        let waves: Vec<f32> = (0..2 * 4000)
            .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        let input = Tensor::<B, 2>::from_data(TensorData::new(waves, [2, 4000]), &device);
        let logits: Vec<f32> = model.forward(input.clone()).into_data().to_vec().unwrap();
        let read = |kind| -> Vec<f32> {
            score(model.forward(input.clone()), kind)
                .into_data()
                .to_vec()
                .unwrap()
        };
        let (bonafide, difference) = (
            read(ScoreKind::BonafideLogit),
            read(ScoreKind::LogitDifference),
        );
        for row in 0..2 {
            let (spoof, bona) = (logits[2 * row], logits[2 * row + 1]);
            assert_eq!(bonafide[row], bona);
            assert!((difference[row] - (bona - spoof)).abs() < 1e-6);
            // A random head gives different logits, so the two kinds really differ.
            assert_ne!(bonafide[row], difference[row]);
            assert_eq!(
                ScoreKind::BonafideLogit.of(spoof.into(), bona.into()),
                f64::from(bona)
            );
        }
    }

    #[test]
    fn full_fine_tuning_trains_everything_and_ids_are_stable() {
        let _turn = crate::backend::backend_turn();
        let device = Default::default();
        let config = DetectorConfig::new(Wav2Vec2Config::micro());
        let build = || {
            config
                .build::<Autodiff<B>>(&BaseSource::Random { seed: 3 }, &device)
                .unwrap()
        };
        let (a, b) = (build(), build());
        let paths = param_paths(&a);
        assert_eq!(paths.counts.trainable, paths.counts.total);
        assert!(paths.frozen.is_empty());
        assert_eq!(paths.counts.total, fadlora_model::count_params(&a));
        assert!(
            paths.trainable.contains("head.MeanLinear.linear.weight"),
            "{:?}",
            paths.trainable
        );
        // Same seed, same weights; same structure, same ids.
        let (Head::MeanLinear(ha), Head::MeanLinear(hb)) = (&a.head, &b.head) else {
            unreachable!("the default head")
        };
        assert_eq!(ha.linear.weight.id, hb.linear.weight.id);
        assert_eq!(
            ha.linear.weight.val().into_data(),
            hb.linear.weight.val().into_data()
        );
    }

    #[test]
    fn batchnorm_running_statistics_are_checkpointed_but_not_counted() {
        let _turn = crate::backend::backend_turn();
        let device = Default::default();
        let detector = DetectorConfig::new(Wav2Vec2Config::micro())
            .with_head(HeadKind::Aasist)
            .with_probe_layer(Some(2))
            .build::<Autodiff<B>>(&BaseSource::Random { seed: 3 }, &device)
            .unwrap();
        let paths = param_paths(&detector);
        assert!(paths.running.contains("head.Aasist.first_bn.running_mean"));
        assert!(paths
            .running
            .contains("head.Aasist.encoder.1.bn1.running_var"));
        assert!(paths.running.iter().all(|p| p.starts_with("head.Aasist.")));
        assert!(paths
            .trainable
            .iter()
            .all(|p| p.starts_with("head.Aasist.")));
        assert!(paths.frozen.iter().all(|p| p.starts_with("wav2vec2.")));
        let checkpointed = paths.checkpointed();
        assert_eq!(
            checkpointed.len(),
            paths.trainable.len() + paths.running.len()
        );
        // Parameters only, as PyTorch counts them (fixtures/aasist/reference.json: 320,266 for
        // width 32, micro's hidden size).
        assert_eq!(paths.counts.trainable, 320_266);
        let running: usize = fadlora_model::count_params(&detector) - paths.counts.total;
        // A mean and a variance per BatchNorm channel: first_bn, first_bn1, attention.bn, the
        // encoder's bn1 (blocks 2-6) and bn2 (all six), and the six graph layers.
        let encoder = (32 + 32 + 64 + 64 + 64) + (32 + 32 + 64 + 64 + 64 + 64);
        let channels = 1 + 64 + 128 + encoder + 2 * 64 + 4 * 32;
        assert_eq!(running, 2 * channels);
    }
}
