//! The run TOML: everything one training run needs, validated on load.
//!
//! Every table denies unknown keys, and every value is checked after parsing; both kinds of
//! mistake come back as [`RunError::Config`] naming the dotted key and its line. The rules
//! that need the model (a preset's name and receptive field, LoRA settings the model crate
//! accepts) come from the trainer as [`ExtraRules`]; this crate checks everything else.
//!
//! ```toml
//! name = "tiny_lora"            # optional, for records
//! backend = "flex"              # flex (default) | cuda | wgpu (must be compiled in)
//! precision = "f32"             # f32 | bf16 | f16: matmuls and activations (mixed precision)
//! seed = 0
//! output_dir = "results/tiny_lora"
//!
//! [data]
//! dataset = "asvspoof2019:datasets/mini"   # any DatasetSpec
//! train_split = "train"
//! dev_split = "dev"
//! eval_split = "eval"                      # optional
//! crop_samples = 64600
//! train_crop = "random"                    # random (default) | first (SSL_Anti-spoofing)
//! normalization = "none"                   # none | zero-mean-unit-variance
//! augment = "rawboost:5"                   # optional: RawBoost mode 1-8 on training utterances
//! max_per_class = 8                        # optional: first N of each class per split
//! eval_window = "fixed"                    # fixed (default): the first crop_samples of dev,
//!                                          # eval and eval_sets utterances | whole: all of it
//!
//! [model]
//! preset = "tiny"                          # or checkpoint = "HF dir", or config = "config.json"
//! layerdrop = 0.0                          # optional overrides of the architecture
//!
//! [lora]                                   # absent = full fine-tuning
//! rank = 4
//! alpha = 8.0
//! targets = ["q", "v"]
//!
//! [lora.moe]                               # optional: a mixture of LoRA experts per projection
//! experts = 4                              # adapters of the [lora] rank on every projection
//! routing = "soft"                         # soft (softmax-weighted) | top1 (Switch routing)
//! balance_loss = 0.01                      # weight of the load-balancing loss (0 = off)
//!
//! [ia3]                                    # or (IA)^3 vectors (not with another method)
//! targets = ["k", "v", "ffn_out"]
//!
//! [adapter]                                # or adapter layers in every encoder layer
//! kind = "mms"                             # mms (pre-LN models) | bottleneck
//! size = 32                                # hidden units
//!
//! [partial]                                # or full fine-tuning of some layers only
//! layers = "top"                           # top (nearest the output, default) | bottom
//! count = 4                                # encoder layers that train (1 to all)
//! feature_projection = false               # also train the feature projection
//!
//! [layer_sum]                              # or the head on a learned softmax-weighted sum of
//!                                          # every hidden state, front end frozen (no keys)
//!
//! [frozen]                                 # or the head alone on a frozen wav2vec2 (no keys;
//!                                          # with kind = "sls" below: the SLS method)
//!
//! [probe]                                  # frozen-feature probe (not with [lora])
//! layer = 4                                # hidden state the head pools: 0 = encoder input,
//!                                          # k = output of layer k, num_hidden_layers = the
//!                                          # final output (as full/LoRA runs see it)
//!
//! [head]
//! kind = "mean-linear"                     # or "aasist" (SSL_Anti-spoofing's AASIST back end),
//!                                          # or "sls" (the SLS classifier over every layer)
//! score = "logit-difference"               # or "bonafide-logit" (SSL_Anti-spoofing's score)
//!
//! [optim]
//! kind = "adamw"
//! lr = 1e-4
//! weight_decay = 1e-4
//! schedule = "warmup-cosine"
//! warmup_steps = 10
//! grad_clip_norm = 1.0
//! grad_accumulation = 1
//!
//! [train]
//! batch_size = 8
//! epochs = 10
//! class_weights = [0.1, 0.9]               # [spoof, bona fide]
//! selection_metric = "dev-eer"
//! patience = 3
//!
//! [[eval_sets]]                            # optional, repeatable: more sets the selected
//! name = "itw"                             # checkpoint scores (scores/<name>.txt, record)
//! dataset = "itw:../data/release_in_the_wild"
//! split = "eval"                           # optional: keep only this split
//! subset = "eval"                          # optional: ASVspoof 2021 keys' subset
//! asv_scores = "..."                       # optional, ASVspoof 2019 LA only: min t-DCF
//! ```

use std::path::{Path, PathBuf};

use fadlora_data::{DatasetSpec, Normalization, SSL_ANTI_SPOOFING_SAMPLES};
use serde::{Deserialize, Serialize};

use crate::vocab::{
    AdapterKind, Augment, BackendKind, HeadKind, LoraTarget, Mode, MoeRouting, PartialLayers,
    Precision, ScoreKind,
};
use crate::RunError;

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Flex when left out, whichever backends the binary has: a TOML means the same run in
    /// every build.
    #[serde(default = "default_backend")]
    pub backend: BackendKind,
    /// The float type of matmuls and activations; weights, gradients, optimizer state,
    /// LayerNorm, softmax and the loss stay f32.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
    #[serde(default)]
    pub seed: u64,
    /// Required in a run TOML; a sweep's base leaves it out and the sweep sets it per run.
    #[serde(default)]
    pub output_dir: PathBuf,
    pub data: DataSection,
    pub model: ModelSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    /// Left out of the serialised TOML when absent: sweep run IDs hash it, and runs that
    /// predate probes must keep their IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSection>,
    /// (IA)^3 instead of LoRA; left out of the serialised TOML when absent (run IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ia3: Option<Ia3Section>,
    /// Adapter layers instead of LoRA; left out of the serialised TOML when absent (run IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterSection>,
    /// Full fine-tuning of the top or bottom encoder layers only; left out of the serialised
    /// TOML when absent (run IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialSection>,
    /// The head on a learned weighted sum of every hidden state of a frozen front end; left
    /// out of the serialised TOML when absent (run IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_sum: Option<LayerSumSection>,
    /// The whole front end frozen, the head alone training; left out of the serialised TOML
    /// when absent (run IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<FrozenSection>,
    #[serde(default)]
    pub head: HeadSection,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub train: TrainSection,
    /// Sets beside the dataset's eval split that the selected checkpoint scores (cross-corpus
    /// results). Left out of the serialised TOML when empty: sweep run IDs hash it, and runs
    /// that predate the key must keep their IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eval_sets: Vec<EvalSetSection>,
}

/// One `[[eval_sets]]` entry: a labelled set scored by the selected checkpoint only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSetSection {
    /// Names the score file (`scores/<name>.txt`) and the set in records and reports.
    pub name: String,
    /// A [`DatasetSpec`] string, relative paths resolved like `data.dataset`.
    pub dataset: String,
    /// Keep only this split (a CSV list or corpus with several); all trials when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// ASVspoof 2021 keys: keep only this subset (`eval`, `progress`, `hidden_track`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The organisers' ASV scores for this set: the record then gives its min t-DCF (the
    /// ASVspoof 2019 cost model, so ASVspoof 2019 LA sets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asv_scores: Option<PathBuf>,
}

fn default_backend() -> BackendKind {
    BackendKind::Flex
}

fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A [`DatasetSpec`] string (`asvspoof2019:PATH`, `csv:PATH`, a bare path, ...).
    pub dataset: String,
    #[serde(default = "default_train_split")]
    pub train_split: String,
    #[serde(default = "default_dev_split")]
    pub dev_split: String,
    /// Scored with the selected checkpoint at the end; never used for selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<String>,
    /// Training crops are windows of this length (see `train_crop`), evaluation takes the
    /// first samples; short files are tiled (SSL_Anti-spoofing).
    #[serde(default = "default_crop")]
    pub crop_samples: usize,
    /// How training examples are cut: `random` windows (a new one every epoch, the default) or
    /// the `first` samples as in evaluation, which is what SSL_Anti-spoofing trains on (and
    /// gives fixed inputs for memorisation checks).
    #[serde(default)]
    pub train_crop: TrainCrop,
    #[serde(default)]
    pub normalization: NormalizationChoice,
    /// Augmentation of the training utterances (never dev, eval or the `score_train` pass),
    /// drawn per epoch and utterance from the run seed; none when left out. Left out of the
    /// serialised TOML when absent: sweep run IDs hash it, and runs that predate the key must
    /// keep their IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// Keep only the first N utterances of each class in every split (protocol order): for
    /// smoke tests and quick experiments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_class: Option<usize>,
    /// The organisers' ASV scores for the eval split (ASVspoof 2019:
    /// `ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt`): the run
    /// record then also gives the eval min t-DCF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asv_scores: Option<PathBuf>,
    /// How dev, eval and `eval_sets` utterances are cut for scoring. Left out of the
    /// serialised TOML at its default: sweep run IDs hash it.
    #[serde(default, skip_serializing_if = "EvalWindow::is_fixed")]
    pub eval_window: EvalWindow,
}

/// What part of an utterance scoring sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalWindow {
    /// The first `crop_samples`, short files tiled (SSL_Anti-spoofing's evaluation).
    #[default]
    Fixed,
    /// The whole file: long utterances are not truncated, short ones not tiled (one shorter
    /// than the feature encoder's receptive field, 400 samples for wav2vec2, cannot be scored).
    Whole,
}

impl EvalWindow {
    fn is_fixed(&self) -> bool {
        *self == EvalWindow::Fixed
    }
}

fn default_train_split() -> String {
    "train".into()
}
fn default_dev_split() -> String {
    "dev".into()
}
fn default_crop() -> usize {
    SSL_ANTI_SPOOFING_SAMPLES
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainCrop {
    #[default]
    Random,
    First,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizationChoice {
    /// Raw samples, as SSL_Anti-spoofing feeds XLS-R.
    #[default]
    None,
    /// Hugging Face `Wav2Vec2FeatureExtractor(do_normalize=True)`.
    ZeroMeanUnitVariance,
}

impl NormalizationChoice {
    pub fn to_data(self) -> Normalization {
        match self {
            NormalizationChoice::None => Normalization::None,
            NormalizationChoice::ZeroMeanUnitVariance => Normalization::ZeroMeanUnitVariance,
        }
    }
}

/// Where the wav2vec2 front end comes from. Exactly one of `preset`, `checkpoint`, `config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `micro`, `tiny`, `base` or `xls-r-300m`, randomly initialised from the run seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The pretrained source: a Hugging Face model directory (`config.json` + weights), or a
    /// fairseq wav2vec2 checkpoint file ending in `.pt` (architecture from its settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    /// A Hugging Face `config.json`, randomly initialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    #[serde(flatten)]
    pub overrides: ArchOverrides,
}

/// Architecture and regularisation settings that replace the preset's / checkpoint's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_hidden_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Channels of every convolution of the feature encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_channels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_conv_pos_embeddings: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_conv_pos_embedding_groups: Option<usize>,
    /// Sets hidden, attention, activation and feature-projection dropout at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// LayerDrop probability (training only). Its draws come from the backend RNG that the
    /// run seed initialises, so runs with LayerDrop are reproducible too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layerdrop: Option<f64>,
}

/// The `[lora]` table: the same fields as the model crate's `LoraConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    pub rank: usize,
    /// Defaults to `2 * rank` (PEFT's common choice and the benchmark scripts').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "default_targets")]
    pub targets: Vec<LoraTarget>,
    /// Encoder layer indices to adapt; all layers when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA (DoRA): a trainable magnitude per output of each adapted
    /// projection. Left out of the written configuration when false, so the IDs of runs
    /// planned before it existed stay the same.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_dora: bool,
    /// A mixture of LoRA experts instead of one adapter per projection (`[lora.moe]`); left
    /// out of the written configuration when absent, so earlier run IDs stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeSection>,
}

/// The `[lora.moe]` table: `experts` LoRA adapters of the `[lora]` rank on every adapted
/// projection, mixed per token by a learned router (`d_input x experts` weights, no bias).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeSection {
    #[serde(default = "default_experts")]
    pub experts: usize,
    #[serde(default)]
    pub routing: MoeRouting,
    /// Weight of the load-balancing loss (the Switch Transformer's `K * sum_k f_k P_k`, averaged
    /// over the adapted projections) added to the training loss; 0 turns it off.
    #[serde(default = "default_balance_loss")]
    pub balance_loss: f64,
}

impl Default for MoeSection {
    fn default() -> Self {
        MoeSection {
            experts: default_experts(),
            routing: MoeRouting::default(),
            balance_loss: default_balance_loss(),
        }
    }
}

fn default_experts() -> usize {
    4
}

/// The Switch Transformer's coefficient.
fn default_balance_loss() -> f64 {
    0.01
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn default_targets() -> Vec<LoraTarget> {
    vec![LoraTarget::Q, LoraTarget::V]
}

impl LoraSection {
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(2.0 * self.rank as f64)
    }
}

/// The `[ia3]` table: (IA)^3 vectors rescale the outputs of `targets` (the inputs of those also
/// listed in `feedforward`) in every encoder layer; everything pretrained is frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ia3Section {
    /// Default: keys, values and the feed-forward block's inner activation, as the (IA)^3
    /// paper places them.
    #[serde(default = "default_ia3_targets")]
    pub targets: Vec<LoraTarget>,
    #[serde(default = "default_ia3_feedforward")]
    pub feedforward: Vec<LoraTarget>,
}

impl Default for Ia3Section {
    fn default() -> Self {
        Ia3Section {
            targets: default_ia3_targets(),
            feedforward: default_ia3_feedforward(),
        }
    }
}

fn default_ia3_targets() -> Vec<LoraTarget> {
    vec![LoraTarget::K, LoraTarget::V, LoraTarget::FfnOut]
}

fn default_ia3_feedforward() -> Vec<LoraTarget> {
    vec![LoraTarget::FfnOut]
}

/// The `[adapter]` table: a small trainable MLP in every encoder layer, everything pretrained
/// frozen. `kind = "mms"` is Hugging Face's MMS attention adapter (LayerNorm, `size` units,
/// ReLU, back; added to each pre-LN layer's output), `"bottleneck"` the same MLP without the
/// LayerNorm on the feed-forward output (either layout). Fresh adapters start as the identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSection {
    #[serde(default)]
    pub kind: AdapterKind,
    /// Hidden units of every adapter (`adapter_attn_dim`).
    #[serde(default = "default_adapter_size")]
    pub size: usize,
}

impl Default for AdapterSection {
    fn default() -> Self {
        AdapterSection {
            kind: AdapterKind::default(),
            size: default_adapter_size(),
        }
    }
}

/// MMS's released adapters are 16 wide; 32 sits between its size and LoRA r=4's budget on
/// XLS-R 300M's q+v (0.39M trainable parameters vs 1.65M).
fn default_adapter_size() -> usize {
    32
}

/// The `[partial]` table: full fine-tuning of `count` whole encoder layers at one end of the
/// encoder (`layers = "top"`, nearest the output, or `"bottom"`, nearest the input), and of the
/// feature projection if `feature_projection`; every other wav2vec2 weight is frozen (the
/// convolutional feature encoder, the positional convolution, the encoder's own LayerNorm and
/// the other layers). The head trains as always.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialSection {
    #[serde(default)]
    pub layers: PartialLayers,
    /// How many encoder layers train, at least 1 and at most the model's layer count.
    #[serde(default = "default_partial_count")]
    pub count: usize,
    /// Also train the feature projection (its LayerNorm and Linear into the encoder width).
    #[serde(default)]
    pub feature_projection: bool,
}

impl Default for PartialSection {
    fn default() -> Self {
        PartialSection {
            layers: PartialLayers::default(),
            count: default_partial_count(),
            feature_projection: false,
        }
    }
}

/// A sixth of XLS-R 300M's 24 layers (50.4M of its 315M parameters).
fn default_partial_count() -> usize {
    4
}

/// The `[layer_sum]` table (no keys): the whole wav2vec2 is frozen (its dropouts and LayerDrop
/// off, as for a probe) and the head pools a learned weighted sum of all `num_hidden_layers +
/// 1` hidden states, SUPERB's weighted-sum protocol: one weight per state, softmaxed, starting
/// equal (so training starts from the plain mean of the states). State 0 is the encoder's
/// input, state k the output of encoder layer k, and the last the final output as full and
/// LoRA detectors pool it (after the pre-LN layout's final LayerNorm): the states probes see.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSumSection {}

/// The `[frozen]` table (no keys): the whole wav2vec2 is frozen (its dropouts and LayerDrop
/// off, as for a probe) and only the head trains, reading what it always reads: the SLS head
/// every layer's output (the SLS method on a frozen XLS-R), the others the final output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenSection {}

/// The `[probe]` table: the whole wav2vec2 is frozen (its dropouts and LayerDrop off) and only
/// the head trains, on one hidden state of the backbone, to measure the front end on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// The hidden state the head pools: 0 = the encoder's input (projected features +
    /// positional embedding), k = the output of encoder layer k, `num_hidden_layers` = the
    /// encoder's final output exactly as full and LoRA detectors see it (in the pre-LN layout,
    /// after the final encoder LayerNorm).
    pub layer: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSection {
    #[serde(default)]
    pub kind: HeadKind,
    /// How the logits become the score of score files, EERs and `fadlora detect`; saved in
    /// `detector.json`. Left out of the serialised TOML at its default: sweep run IDs hash
    /// it, and runs that predate the key must keep their IDs.
    #[serde(default, skip_serializing_if = "ScoreKind::is_default")]
    pub score: ScoreKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Adam,
    #[default]
    Adamw,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    /// Linear warm-up over `warmup_steps` optimizer steps, then cosine decay to `min_lr` at the
    /// last step of the budget.
    WarmupCosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    #[serde(default)]
    pub kind: OptimKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam: L2 added to the gradient; AdamW: decoupled decay.
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub epsilon: f64,
    #[serde(default)]
    pub schedule: ScheduleKind,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub min_lr: f64,
    /// Clip the global gradient norm (over all trainable parameters, as PyTorch's
    /// `clip_grad_norm_`) to this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip_norm: Option<f64>,
    /// Micro-batches whose gradients are summed before one optimizer step.
    #[serde(default = "one")]
    pub grad_accumulation: usize,
}

fn default_lr() -> f64 {
    1e-4
}
fn default_wd() -> f64 {
    1e-4
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn one() -> usize {
    1
}

impl Default for OptimSection {
    fn default() -> Self {
        toml::from_str("").expect("every optim key has a default")
    }
}

impl OptimSection {
    /// The learning rate of optimizer step `step` (0-based) out of `total`.
    pub fn learning_rate(&self, step: u64, total: u64) -> f64 {
        match self.schedule {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::WarmupCosine => {
                if step < self.warmup_steps {
                    return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
                }
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).clamp(0.0, 1.0);
                self.min_lr
                    + (self.lr - self.min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionMetric {
    /// Lowest dev EER (ties: lower dev loss).
    #[default]
    DevEer,
    DevLoss,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_batch_size: Option<usize>,
    /// Epoch budget; with `max_steps` too, whichever ends first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Optimizer-step budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Cross-entropy weights `[spoof, bona fide]` (SSL_Anti-spoofing: `[0.1, 0.9]`).
    #[serde(default = "default_class_weights")]
    pub class_weights: [f64; 2],
    #[serde(default)]
    pub selection_metric: SelectionMetric,
    /// Stop after this many dev evaluations without improvement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Optimizer steps excluded from the step-time statistics (allocation, autotuning).
    #[serde(default = "default_timing_warmup")]
    pub timing_warmup_steps: usize,
    /// Also score the training set in eval mode after each epoch (train EER in the record):
    /// costs one more pass over it; meant for small sets and overfitting checks.
    #[serde(default)]
    pub score_train: bool,
}

fn default_batch() -> usize {
    8
}
fn default_class_weights() -> [f64; 2] {
    [0.1, 0.9]
}
fn default_timing_warmup() -> usize {
    3
}

impl Default for TrainSection {
    fn default() -> Self {
        let mut t: TrainSection = toml::from_str("").expect("every train key has a default");
        t.epochs = Some(1);
        t
    }
}

impl TrainSection {
    pub fn eval_batch_size(&self) -> usize {
        self.eval_batch_size.unwrap_or(self.batch_size)
    }
}

/// A semantic problem found after parsing: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

/// Makes an [`Invalid`] for the dotted `key`.
pub fn invalid(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        key,
        message: message.into(),
    }
}

/// Rules beyond this crate's own, from the crate that runs the configuration: the trainer
/// checks the `[model]` and `[lora]` tables against the model crate.
pub type ExtraRules = fn(&RunConfig) -> Result<(), Invalid>;

/// Everything a planner checks on a run beyond the schema, from the crate that runs it.
#[derive(Debug, Clone, Copy)]
pub struct RunRules {
    /// Checked when a configuration is parsed (paths as written, nothing opened).
    pub config: ExtraRules,
    /// Checked once a run's inputs are known to exist (paths resolved): may read them, e.g.
    /// a checkpoint's architecture.
    pub inputs: ExtraRules,
}

impl RunRules {
    /// No rules beyond the schema's.
    pub const SCHEMA_ONLY: RunRules = RunRules {
        config: schema_only,
        inputs: schema_only,
    };
}

/// No rules beyond the schema's (for readers that only look at a configuration).
pub fn schema_only(_: &RunConfig) -> Result<(), Invalid> {
    Ok(())
}

impl RunConfig {
    /// Reads and validates a run TOML. Relative paths in it (dataset, checkpoint, config,
    /// output_dir) are resolved against the TOML's folder.
    pub fn load(path: impl AsRef<Path>, extra: ExtraRules) -> Result<Self, RunError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
        let mut config = Self::parse(&text, path, extra)?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        // A bare dataset path is recognised by looking inside it, which only makes sense once
        // it is resolved against the TOML's folder.
        if let Err(e) = DatasetSpec::parse(&config.data.dataset) {
            return Err(located(&text, path, "data.dataset", e.to_string()));
        }
        for (index, set) in config.eval_sets.iter().enumerate() {
            if let Err(message) = set.check_spec() {
                return Err(located_entry(&text, path, index, "dataset", message));
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path, extra: ExtraRules) -> Result<Self, RunError> {
        let config: RunConfig = parse_toml(text, path)?;
        if config.output_dir.as_os_str().is_empty() {
            return Err(located(
                text,
                path,
                "output_dir",
                "is required: the folder that receives checkpoints, scores and the run record"
                    .into(),
            ));
        }
        // Checked first, and apart, so an entry's error points at that entry's line.
        if let Err((index, Invalid { key, message })) = config.check_eval_sets() {
            let field = key.rsplit('.').next().unwrap_or(key);
            return Err(located_entry(text, path, index, field, message));
        }
        if let Err(Invalid { key, message }) = config.check().and_then(|()| extra(&config)) {
            return Err(located(text, path, key, message));
        }
        Ok(config)
    }

    /// Full fine-tuning, LoRA when the run has a `[lora]` table, a frozen-feature probe when
    /// it has a `[probe]` table (both at once is refused by [`RunConfig::check`]).
    pub fn mode(&self) -> Mode {
        match (&self.lora, &self.probe, &self.ia3) {
            (_, Some(_), _) => Mode::Probe,
            (Some(_), None, _) => Mode::Lora,
            (None, None, Some(_)) => Mode::Ia3,
            (None, None, None) if self.adapter.is_some() => Mode::Adapter,
            (None, None, None) if self.partial.is_some() => Mode::Partial,
            (None, None, None) if self.layer_sum.is_some() => Mode::LayerSum,
            (None, None, None) if self.frozen.is_some() => Mode::Frozen,
            (None, None, None) => Mode::Full,
        }
    }

    /// Every rule of this schema a parsed configuration must satisfy beyond its types, as the
    /// first broken rule's dotted key and message. Paths are not opened.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.backend == BackendKind::Wgpu && self.precision == Precision::Bf16 {
            return Err(invalid(
                "precision",
                "wgpu (Vulkan, Metal) has no bf16: use \"f16\" or the cuda backend",
            ));
        }
        // A run has one method. The refusal names the later table and says what it does, so
        // the reader sees which two were meant as alternatives.
        let methods = [
            (
                "lora",
                self.lora.is_some(),
                "LoRA adds low-rank adapters to a frozen wav2vec2",
            ),
            (
                "probe",
                self.probe.is_some(),
                "a probe freezes the whole wav2vec2 and trains only the head",
            ),
            ("ia3", self.ia3.is_some(), "(IA)^3 is a method of its own"),
            (
                "adapter",
                self.adapter.is_some(),
                "adapter layers are a method of their own",
            ),
            (
                "partial",
                self.partial.is_some(),
                "partial fine-tuning is a method of its own",
            ),
            (
                "layer_sum",
                self.layer_sum.is_some(),
                "a layer sum freezes the whole wav2vec2 and is a method of its own",
            ),
            (
                "frozen",
                self.frozen.is_some(),
                "`[frozen]` trains the head alone on a frozen wav2vec2",
            ),
        ];
        let present: Vec<_> = methods.iter().filter(|(_, set, _)| *set).collect();
        if let [(first, _, _), (second, _, what), ..] = present[..] {
            return Err(invalid(
                second,
                format!(
                    "{what}: a run has at most one of `[lora]`, `[probe]`, `[ia3]`, `[adapter]`, \
                     `[partial]`, `[layer_sum]` and `[frozen]`, and this one also has `[{first}]`"
                ),
            ));
        }
        if self.head.kind == HeadKind::Sls && (self.probe.is_some() || self.layer_sum.is_some()) {
            return Err(invalid(
                "head.kind",
                "the SLS head weighs every encoder layer's output itself: it does not go with \
                 `[probe]` (one hidden state) or `[layer_sum]` (a weighted sum of them)",
            ));
        }
        if self.partial.as_ref().is_some_and(|p| p.count == 0) {
            return Err(invalid("partial.count", "must be at least 1 encoder layer"));
        }
        if self.adapter.as_ref().is_some_and(|a| a.size == 0) {
            return Err(invalid("adapter.size", "must be at least 1 hidden unit"));
        }
        if let Some(moe) = self.lora.as_ref().and_then(|l| l.moe.as_ref()) {
            if moe.experts < 2 {
                return Err(invalid(
                    "lora.moe.experts",
                    "a mixture needs at least 2 experts (one expert is plain LoRA: drop \
                     `[lora.moe]`)",
                ));
            }
            if !(moe.balance_loss.is_finite() && moe.balance_loss >= 0.0) {
                return Err(invalid(
                    "lora.moe.balance_loss",
                    "must be a number >= 0 (0 turns the load-balancing loss off)",
                ));
            }
            if self.lora.as_ref().is_some_and(|l| l.use_dora) {
                return Err(invalid(
                    "lora.moe",
                    "a mixture of experts has no weight decomposition: drop `use_dora` or \
                     `[lora.moe]`",
                ));
            }
        }
        if let Some(ia3) = &self.ia3 {
            if ia3.targets.is_empty() {
                return Err(invalid(
                    "ia3.targets",
                    "name at least one of q, k, v, o, ffn_in, ffn_out",
                ));
            }
            if let Some(t) = ia3.feedforward.iter().find(|t| !ia3.targets.contains(t)) {
                return Err(invalid(
                    "ia3.feedforward",
                    format!("`{t}` is not among `ia3.targets`"),
                ));
            }
        }
        self.data.check()?;
        self.model.check()?;
        // `[lora]` values and the probe's layer are the model crate's to judge (through the
        // trainer's ExtraRules): only it knows how many layers a preset has.
        self.optim.check()?;
        self.train.check(&self.optim)?;
        self.check_eval_sets().map_err(|(_, e)| e)
    }

    /// The `[[eval_sets]]` rules, with the index of the first entry that breaks one.
    pub fn check_eval_sets(&self) -> Result<(), (usize, Invalid)> {
        for (index, set) in self.eval_sets.iter().enumerate() {
            let fail = |key, message: String| Err((index, invalid(key, message)));
            let name = &set.name;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return fail(
                    "eval_sets.name",
                    format!("`{name}` names a score file: use letters, digits, `-` or `_`"),
                );
            }
            if self.eval_sets[..index].iter().any(|s| &s.name == name) {
                return fail("eval_sets.name", format!("`{name}` is used twice"));
            }
            // The dev and eval splits write scores/<split>.txt too.
            let d = &self.data;
            if *name == d.dev_split || d.eval_split.as_ref() == Some(name) {
                return fail(
                    "eval_sets.name",
                    format!("`{name}` is a split of `data.dataset`, whose scores file it would overwrite"),
                );
            }
            if set.dataset.trim().is_empty() {
                return fail("eval_sets.dataset", "must not be empty".into());
            }
            if has_known_prefix(&set.dataset) {
                if let Err(message) = set.check_spec() {
                    return fail("eval_sets.dataset", message);
                }
            }
            for (key, value) in [
                ("eval_sets.split", &set.split),
                ("eval_sets.subset", &set.subset),
            ] {
                if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                    return fail(
                        key,
                        "must not be empty (leave it out to keep every trial)".into(),
                    );
                }
            }
        }
        Ok(())
    }
    /// Makes relative paths (dataset, checkpoint, config, output_dir) relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &Path| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        self.output_dir = join(&self.output_dir);
        if let Some(c) = &self.model.checkpoint {
            self.model.checkpoint = Some(join(c));
        }
        if let Some(c) = &self.model.config {
            self.model.config = Some(join(c));
        }
        if let Some(a) = &self.data.asv_scores {
            self.data.asv_scores = Some(join(a));
        }
        self.data.dataset = resolve_spec(&self.data.dataset, base);
        for set in &mut self.eval_sets {
            set.dataset = resolve_spec(&set.dataset, base);
            if let Some(a) = &set.asv_scores {
                set.asv_scores = Some(join(a));
            }
        }
    }

    pub fn dataset(&self) -> Result<DatasetSpec, RunError> {
        Ok(DatasetSpec::parse(&self.data.dataset)?)
    }

    /// The configuration as TOML, with every default filled in (for the run record and the
    /// output folder).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serialises")
    }
}

/// A dataset spec is `kind:path` or a bare path; only the path part is relative to `base`.
fn resolve_spec(spec: &str, base: &Path) -> String {
    let (prefix, path) = match spec.split_once(':') {
        Some((kind, path)) if has_known_prefix(spec) => (format!("{kind}:"), path.to_string()),
        _ => (String::new(), spec.to_string()),
    };
    if Path::new(&path).is_relative() {
        format!("{prefix}{}", base.join(path).display())
    } else {
        spec.to_string()
    }
}

impl EvalSetSection {
    pub fn spec(&self) -> Result<DatasetSpec, RunError> {
        Ok(DatasetSpec::parse(&self.dataset)?)
    }

    /// The spec parses (a bare path is looked at), and ASV scores go with ASVspoof 2019 LA:
    /// the only cost model fadlora computes min t-DCF with is that challenge's.
    fn check_spec(&self) -> Result<(), String> {
        let spec = DatasetSpec::parse(&self.dataset).map_err(|e| e.to_string())?;
        if self.asv_scores.is_some() && !matches!(spec, DatasetSpec::Asvspoof2019La(_)) {
            return Err(format!(
                "`asv_scores` needs an ASVspoof 2019 LA set (min t-DCF uses its cost model), \
                 not {}",
                spec.kind_name()
            ));
        }
        Ok(())
    }
}

impl DataSection {
    fn check(&self) -> Result<(), Invalid> {
        if has_known_prefix(&self.dataset) {
            DatasetSpec::parse(&self.dataset)
                .map_err(|e| invalid("data.dataset", e.to_string()))?;
        }
        for (key, split) in [
            ("data.train_split", Some(&self.train_split)),
            ("data.dev_split", Some(&self.dev_split)),
            ("data.eval_split", self.eval_split.as_ref()),
        ] {
            if split.is_some_and(|s| s.trim().is_empty()) {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.dev_split == self.train_split {
            return Err(invalid(
                "data.dev_split",
                "must differ from train_split: model selection needs held-out data",
            ));
        }
        if self.eval_split.as_ref() == Some(&self.dev_split) {
            return Err(invalid(
                "data.eval_split",
                "must differ from dev_split: selection must not see evaluation data",
            ));
        }
        if self.asv_scores.is_some() && self.eval_split.is_none() {
            return Err(invalid(
                "data.asv_scores",
                "scores the eval split: set `data.eval_split` too",
            ));
        }
        if self.max_per_class == Some(0) {
            return Err(invalid("data.max_per_class", "must be at least 1"));
        }
        if self.crop_samples == 0 {
            return Err(invalid("data.crop_samples", "must be positive"));
        }
        Ok(())
    }
}

impl ModelSection {
    /// One source, and probabilities in range; what a preset or checkpoint is, is the model
    /// crate's business.
    fn check(&self) -> Result<(), Invalid> {
        let sources = [
            self.preset.is_some(),
            self.checkpoint.is_some(),
            self.config.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if sources != 1 {
            return Err(invalid(
                "model",
                "give exactly one of `preset`, `checkpoint`, `config`",
            ));
        }
        for (key, p) in [
            ("model.dropout", self.overrides.dropout),
            ("model.layerdrop", self.overrides.layerdrop),
        ] {
            if p.is_some_and(|p| !(0.0..1.0).contains(&p)) {
                return Err(invalid(key, "must lie in [0, 1)"));
            }
        }
        Ok(())
    }
}

impl OptimSection {
    fn check(&self) -> Result<(), Invalid> {
        let o = self;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(invalid("optim.lr", "must be a positive number"));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(invalid("optim.weight_decay", "must be >= 0"));
        }
        for (key, b) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(key, "must lie in [0, 1)"));
            }
        }
        if o.epsilon.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(invalid("optim.epsilon", "must be positive"));
        }
        if !(o.min_lr >= 0.0 && o.min_lr <= o.lr) {
            return Err(invalid("optim.min_lr", "must lie in [0, lr]"));
        }
        if o.grad_clip_norm
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return Err(invalid("optim.grad_clip_norm", "must be a positive number"));
        }
        if o.grad_accumulation == 0 {
            return Err(invalid("optim.grad_accumulation", "must be at least 1"));
        }
        Ok(())
    }
}

impl TrainSection {
    fn check(&self, optim: &OptimSection) -> Result<(), Invalid> {
        let t = self;
        if t.batch_size == 0 {
            return Err(invalid("train.batch_size", "must be at least 1"));
        }
        if t.eval_batch_size == Some(0) {
            return Err(invalid("train.eval_batch_size", "must be at least 1"));
        }
        if t.epochs.is_none() && t.max_steps.is_none() {
            return Err(invalid(
                "train",
                "give a budget: `epochs`, `max_steps` or both",
            ));
        }
        if t.epochs == Some(0) {
            return Err(invalid("train.epochs", "must be at least 1"));
        }
        if t.max_steps == Some(0) {
            return Err(invalid("train.max_steps", "must be at least 1"));
        }
        if optim.schedule == ScheduleKind::WarmupCosine
            && t.max_steps.is_some_and(|m| optim.warmup_steps >= m)
        {
            return Err(invalid(
                "optim.warmup_steps",
                "must be smaller than train.max_steps",
            ));
        }
        if t.class_weights
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
            || t.class_weights.iter().all(|w| *w == 0.0)
        {
            return Err(invalid(
                "train.class_weights",
                "needs two non-negative weights [spoof, bona fide], not both zero",
            ));
        }
        if t.patience == Some(0) {
            return Err(invalid(
                "train.patience",
                "must be at least 1 (leave it out to never stop early)",
            ));
        }
        Ok(())
    }
}

const KNOWN_PREFIXES: &[&str] = &[
    "asvspoof2019",
    "asvspoof2019-la",
    "asvspoof2021-la",
    "asvspoof2021-df",
    "asvspoof5",
    "itw",
    "in-the-wild",
    "csv",
];

fn has_known_prefix(spec: &str) -> bool {
    spec.split_once(':')
        .is_some_and(|(kind, _)| KNOWN_PREFIXES.contains(&kind.to_ascii_lowercase().as_str()))
}

/// Deserialises TOML `text` (from `path`, named in errors) into `T`; a syntax error, unknown
/// key, missing key or wrong type is a [`RunError::Config`] at its line. Every TOML fadlora
/// reads (run, experiment, pretraining) goes through here.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, RunError> {
    toml::from_str(text).map_err(|err| RunError::Config {
        path: path.to_path_buf(),
        line: err.span().map(|s| line_of(text, s.start)),
        key: String::new(),
        // toml's message names the key (`unknown field `lrr``, `missing field `dataset``); its
        // own location header is replaced by the line.
        message: err.message().trim().to_string(),
    })
}

/// A [`RunError::Config`] for `key` (dotted) in the TOML `text`, with the line where the key
/// is written when it is.
pub fn located(text: &str, path: &Path, key: &str, message: String) -> RunError {
    RunError::Config {
        path: path.to_path_buf(),
        line: key_line(text, key),
        key: key.to_string(),
        message: format!("`{key}`: {message}"),
    }
}

/// A [`RunError::Config`] for `field` of `[[eval_sets]]` entry `index`, at its line.
fn located_entry(text: &str, path: &Path, index: usize, field: &str, message: String) -> RunError {
    let key = format!("eval_sets.{field}");
    RunError::Config {
        path: path.to_path_buf(),
        line: entry_line(text, "eval_sets", index, field),
        message: format!("`{key}` (entry {}): {message}", index + 1),
        key,
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The 1-based line where `field` of entry `index` (0-based) of the array of tables (or array
/// of inline tables) at the dotted `array` key is written; the entry's own line when `field`
/// is not written in it. `None` when there is no such entry.
pub fn entry_line(text: &str, array: &str, index: usize, field: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = array.split('.').peekable();
    while let Some(part) = parts.next() {
        let (_, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
        if parts.peek().is_none() {
            let entry = v.get_ref().as_array()?.get(index)?;
            let at = entry
                .get_ref()
                .as_table()
                .and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == field))
                .map_or(entry.span().start, |(k, _)| k.span().start);
            return Some(line_of(text, at));
        }
        table = v.get_ref().as_table()?;
    }
    None
}

/// The line where the dotted `key` is written, walking toml's spanned document (so dotted
/// keys, inline tables and `[table]` headers are all found). `None` when it is not written
/// at all (a default value, or a missing table).
/// The 1-based line where the dotted `key` is written in the TOML `text`, if it is.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
        if parts.peek().is_none() {
            return Some(line_of(text, k.span().start));
        }
        table = v.get_ref().as_table()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
output_dir = "out"
[data]
dataset = "csv:list.csv"
[model]
preset = "tiny"
[train]
epochs = 1
"#;

    fn parse(text: &str) -> Result<RunConfig, RunError> {
        RunConfig::parse(text, Path::new("run.toml"), schema_only)
    }

    fn config_error(text: &str) -> (Option<usize>, String, String) {
        match parse(text) {
            Err(RunError::Config {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.data.crop_samples, 64_600);
        assert_eq!(c.train.class_weights, [0.1, 0.9]);
        assert_eq!(c.train.batch_size, 8);
        assert_eq!(c.optim.kind, OptimKind::Adamw);
        assert_eq!(c.train.selection_metric, SelectionMetric::DevEer);
        assert!(c.lora.is_none());
        // The resolved form reads back identically.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = MINIMAL.replace("[train]\n", "[train]\nbatch_sise = 4\n");
        let (line, _, message) = config_error(&text);
        assert_eq!(line, Some(8));
        assert!(message.contains("batch_sise"), "{message}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let text = format!("{MINIMAL}\n[optim]\nkind = \"adam\"\nlr = -1.0\n");
        let (line, key, message) = config_error(&text);
        assert_eq!(key, "optim.lr");
        assert_eq!(line, Some(12));
        assert!(message.contains("optim.lr"), "{message}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = MINIMAL.replace("epochs = 1", "epochs = \"ten\"");
        let (line, _, message) = config_error(&text);
        assert_eq!(line, Some(8));
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn dotted_and_inline_keys_are_located() {
        // At the top: after [train] it would be `train.optim`.
        let text = format!("optim = {{ lr = -1.0 }}\n{MINIMAL}");
        let (line, key, _) = config_error(&text);
        assert_eq!(key, "optim.lr");
        assert_eq!(line, Some(1));
    }

    #[test]
    fn unknown_lora_target_is_rejected() {
        let text = format!("{MINIMAL}\n[lora]\nrank = 4\ntargets = [\"q\", \"query\"]\n");
        let (line, _, message) = config_error(&text);
        assert_eq!(line, Some(12));
        assert!(message.contains("query"), "{message}");
    }

    #[test]
    fn model_source_must_be_unique() {
        let text = MINIMAL.replace("preset = \"tiny\"", "preset = \"tiny\"\ncheckpoint = \"x\"");
        let (line, key, _) = config_error(&text);
        assert_eq!(key, "model");
        assert_eq!(line, Some(5));
    }

    #[test]
    fn probe_and_lora_together_are_refused_at_the_probe_table() {
        let text = format!("{MINIMAL}\n[lora]\nrank = 4\n\n[probe]\nlayer = 1\n");
        let (line, key, message) = config_error(&text);
        assert_eq!(key, "probe");
        assert_eq!(line, Some(13));
        assert!(message.contains("[lora]"), "{message}");
    }

    #[test]
    fn ia3_reads_its_defaults_and_is_refused_beside_lora_or_with_a_stray_feedforward() {
        let c = parse(&format!("{MINIMAL}\n[ia3]\n")).unwrap();
        assert_eq!(c.mode(), Mode::Ia3);
        assert_eq!(c.ia3, Some(Ia3Section::default()));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("ia3"));
        let (line, key, message) = config_error(&format!("{MINIMAL}\n[lora]\nrank = 4\n\n[ia3]\n"));
        assert_eq!((key.as_str(), line), ("ia3", Some(13)));
        assert!(message.contains("at most one"), "{message}");
        let (_, key, message) = config_error(&format!(
            "{MINIMAL}\n[ia3]\ntargets = [\"k\", \"v\"]\nfeedforward = [\"ffn_out\"]\n"
        ));
        assert_eq!(key, "ia3.feedforward");
        assert!(message.contains("ffn_out"), "{message}");
    }

    #[test]
    fn adapter_reads_its_defaults_and_is_refused_beside_another_method_or_at_size_0() {
        let c = parse(&format!("{MINIMAL}\n[adapter]\n")).unwrap();
        assert_eq!(c.mode(), Mode::Adapter);
        assert_eq!(
            c.adapter,
            Some(AdapterSection {
                kind: AdapterKind::Mms,
                size: 32
            })
        );
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("adapter"));
        let c = parse(&format!(
            "{MINIMAL}\n[adapter]\nkind = \"bottleneck\"\nsize = 8\n"
        ))
        .unwrap();
        assert_eq!(
            c.adapter.as_ref().map(|a| (a.kind, a.size)),
            Some((AdapterKind::Bottleneck, 8))
        );
        let (line, key, message) =
            config_error(&format!("{MINIMAL}\n[ia3]\n\n[adapter]\nsize = 4\n"));
        assert_eq!((key.as_str(), line), ("adapter", Some(12)));
        assert!(message.contains("at most one"), "{message}");
        let (_, key, _) = config_error(&format!("{MINIMAL}\n[adapter]\nsize = 0\n"));
        assert_eq!(key, "adapter.size");
        let (line, _, message) =
            config_error(&format!("{MINIMAL}\n[adapter]\nkind = \"houlsby\"\n"));
        assert_eq!(line, Some(11), "{message}");
        assert!(message.contains("houlsby"), "{message}");
    }

    #[test]
    fn partial_reads_its_defaults_and_is_refused_beside_another_method_or_at_count_0() {
        let c = parse(&format!("{MINIMAL}\n[partial]\n")).unwrap();
        assert_eq!(c.mode(), Mode::Partial);
        assert_eq!(c.partial, Some(PartialSection::default()));
        assert_eq!(
            c.partial
                .as_ref()
                .map(|p| (p.layers, p.count, p.feature_projection)),
            Some((PartialLayers::Top, 4, false))
        );
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("partial"));
        let c = parse(&format!(
            "{MINIMAL}\n[partial]\nlayers = \"bottom\"\ncount = 2\nfeature_projection = true\n"
        ))
        .unwrap();
        assert_eq!(
            c.partial,
            Some(PartialSection {
                layers: PartialLayers::Bottom,
                count: 2,
                feature_projection: true
            })
        );
        let (line, key, message) =
            config_error(&format!("{MINIMAL}\n[adapter]\n\n[partial]\ncount = 2\n"));
        assert_eq!((key.as_str(), line), ("partial", Some(12)));
        assert!(message.contains("at most one"), "{message}");
        let (_, key, _) = config_error(&format!("{MINIMAL}\n[partial]\ncount = 0\n"));
        assert_eq!(key, "partial.count");
        let (line, _, message) =
            config_error(&format!("{MINIMAL}\n[partial]\nlayers = \"middle\"\n"));
        assert_eq!(line, Some(11), "{message}");
        assert!(message.contains("middle"), "{message}");
    }

    #[test]
    fn layer_sum_reads_back_and_is_refused_beside_another_method() {
        let c = parse(&format!("{MINIMAL}\n[layer_sum]\n")).unwrap();
        assert_eq!(c.mode(), Mode::LayerSum);
        assert_eq!(c.layer_sum, Some(LayerSumSection {}));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("layer_sum"));
        let (line, key, message) =
            config_error(&format!("{MINIMAL}\n[probe]\nlayer = 1\n\n[layer_sum]\n"));
        assert_eq!((key.as_str(), line), ("layer_sum", Some(13)));
        assert!(message.contains("at most one"), "{message}");
        let (line, _, message) = config_error(&format!("{MINIMAL}\n[layer_sum]\nlayers = 3\n"));
        assert_eq!(line, Some(11), "{message}");
    }

    #[test]
    fn frozen_reads_back_goes_with_the_sls_head_and_is_refused_beside_another_method() {
        let c = parse(&format!("{MINIMAL}\n[head]\nkind = \"sls\"\n\n[frozen]\n")).unwrap();
        assert_eq!(c.mode(), Mode::Frozen);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("frozen"));
        let (line, key, message) =
            config_error(&format!("{MINIMAL}\n[lora]\nrank = 2\n\n[frozen]\n"));
        assert_eq!((key.as_str(), line), ("frozen", Some(13)));
        assert!(
            message.contains("head alone") && message.contains("at most one"),
            "{message}"
        );
    }

    #[test]
    fn lora_moe_reads_its_defaults_and_refuses_one_expert_a_negative_weight_and_dora() {
        let c = parse(&format!("{MINIMAL}\n[lora]\nrank = 2\n\n[lora.moe]\n")).unwrap();
        assert_eq!(c.mode(), Mode::Lora);
        assert_eq!(c.lora.as_ref().unwrap().moe, Some(MoeSection::default()));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let plain = parse(&format!("{MINIMAL}\n[lora]\nrank = 2\n")).unwrap();
        assert!(!plain.to_toml().contains("moe"), "{}", plain.to_toml());
        // A value the types refuse names itself in toml's message; the rules name their key.
        for (body, want) in [
            ("experts = 1\n", "`lora.moe.experts`"),
            ("balance_loss = -0.1\n", "`lora.moe.balance_loss`"),
            ("routing = \"top2\"\n", "`top2`"),
        ] {
            let (line, _, message) = config_error(&format!(
                "{MINIMAL}\n[lora]\nrank = 2\n\n[lora.moe]\n{body}"
            ));
            assert!(message.contains(want), "{message}");
            assert_eq!(line, Some(14), "{message}");
        }
        let (_, key, _) = config_error(&format!(
            "{MINIMAL}\n[lora]\nrank = 2\nuse_dora = true\n\n[lora.moe]\n"
        ));
        assert_eq!(key, "lora.moe");
    }

    #[test]
    fn a_probe_run_reads_back_and_others_serialise_without_it() {
        let c = parse(&format!("{MINIMAL}\n[probe]\nlayer = 2\n")).unwrap();
        assert_eq!(c.probe, Some(ProbeSection { layer: 2 }));
        assert_eq!(c.mode(), Mode::Probe);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let unknown = format!("{MINIMAL}\n[probe]\nlayer = 2\nlayers = [1]\n");
        assert!(config_error(&unknown).2.contains("layers"));
        // Sweep run IDs hash the serialised configuration: a run without `[probe]` must
        // serialise exactly as before the table existed.
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.mode(), Mode::Full);
        assert!(!plain.to_toml().contains("probe"), "{}", plain.to_toml());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("probe"), "{json}");
    }

    #[test]
    fn head_kind_aasist_reads_back_and_mean_linear_serialises_as_before() {
        let c = parse(&format!("{MINIMAL}\n[head]\nkind = \"aasist\"\n")).unwrap();
        assert_eq!(c.head.kind, HeadKind::Aasist);
        assert!(c.to_toml().contains("kind = \"aasist\""), "{}", c.to_toml());
        assert_eq!(parse(&c.to_toml()).unwrap().head.kind, HeadKind::Aasist);
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.head.kind, HeadKind::MeanLinear);
        assert!(plain.to_toml().contains("kind = \"mean-linear\""));
    }

    #[test]
    fn head_kind_sls_reads_back_and_is_refused_with_a_probe_or_a_layer_sum() {
        let c = parse(&format!("{MINIMAL}\n[head]\nkind = \"sls\"\n")).unwrap();
        assert_eq!(c.head.kind, HeadKind::Sls);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        for method in ["[probe]\nlayer = 1\n", "[layer_sum]\n"] {
            let (line, key, message) =
                config_error(&format!("{MINIMAL}\n[head]\nkind = \"sls\"\n\n{method}"));
            assert_eq!((key.as_str(), line), ("head.kind", Some(11)), "{method}");
            assert!(message.contains("SLS"), "{message}");
        }
    }

    #[test]
    fn score_kind_reads_back_and_its_default_is_not_serialised() {
        let c = parse(&format!("{MINIMAL}\n[head]\nscore = \"bonafide-logit\"\n")).unwrap();
        assert_eq!(c.head.score, ScoreKind::BonafideLogit);
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(c.to_toml().contains("score = \"bonafide-logit\""));
        // Sweep run IDs hash the serialised configuration: a run that leaves the score at its
        // default must serialise exactly as before the key existed.
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.head.score, ScoreKind::LogitDifference);
        let explicit = parse(&format!(
            "{MINIMAL}\n[head]\nscore = \"logit-difference\"\n"
        ))
        .unwrap();
        assert_eq!(explicit, plain);
        assert!(!plain.to_toml().contains("score ="), "{}", plain.to_toml());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("\"score\""), "{json}");
    }

    #[test]
    fn a_wrong_score_or_train_crop_names_the_value_and_line() {
        let text = format!("{MINIMAL}\n[head]\nscore = \"bonafide\"\n");
        let (line, _, message) = config_error(&text);
        assert_eq!(line, Some(11));
        assert!(message.contains("bonafide-logit"), "{message}");
        let text = MINIMAL.replace(
            "dataset = \"csv:list.csv\"",
            "dataset = \"csv:list.csv\"\ntrain_crop = \"start\"",
        );
        let (line, _, message) = config_error(&text);
        assert_eq!(line, Some(5));
        assert!(
            message.contains("start") && message.contains("first"),
            "{message}"
        );
        let first = MINIMAL.replace(
            "dataset = \"csv:list.csv\"",
            "dataset = \"csv:list.csv\"\ntrain_crop = \"first\"",
        );
        assert_eq!(parse(&first).unwrap().data.train_crop, TrainCrop::First);
    }

    #[test]
    fn augment_reads_back_names_a_wrong_value_and_its_absence_is_not_serialised() {
        let with = |value: &str| {
            MINIMAL.replace(
                "dataset = \"csv:list.csv\"",
                &format!("dataset = \"csv:list.csv\"\naugment = \"{value}\""),
            )
        };
        let c = parse(&with("rawboost:5")).unwrap();
        assert_eq!(
            c.data.augment,
            Some(Augment::RawBoost(fadlora_data::RawBoostMode::LnlIsd))
        );
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        assert!(
            c.to_toml().contains("augment = \"rawboost:5\""),
            "{}",
            c.to_toml()
        );
        for (value, needle) in [
            ("rawboost:9", "no RawBoost mode 9"),
            ("rawboost:0", "leave `augment` out"),
            ("rawboost", "rawboost:N"),
            ("specaugment:1", "unknown augmentation"),
            ("rawboost:five", "rawboost:N"),
        ] {
            let (line, _, message) = config_error(&with(value));
            assert_eq!(line, Some(5), "{value}");
            assert!(message.contains(needle), "{value}: {message}");
        }
        // Sweep run IDs hash the serialised configuration: a run without the key must
        // serialise exactly as before it existed.
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.data.augment, None);
        assert!(!plain.to_toml().contains("augment"), "{}", plain.to_toml());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("augment"), "{json}");
    }

    #[test]
    fn eval_sets_read_back_resolve_and_are_not_serialised_when_absent() {
        let text = format!(
            "{MINIMAL}\n[[eval_sets]]\nname = \"itw\"\ndataset = \"itw:../itw\"\n\n\
             [[eval_sets]]\nname = \"df21\"\ndataset = \"asvspoof2021-df:/data/df\"\n\
             subset = \"eval\"\n"
        );
        let mut c = parse(&text).unwrap();
        assert_eq!(c.eval_sets.len(), 2);
        assert_eq!(c.eval_sets[1].subset.as_deref(), Some("eval"));
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        c.resolve_paths(Path::new("/runs"));
        assert_eq!(c.eval_sets[0].dataset, "itw:/runs/../itw");
        assert_eq!(c.eval_sets[1].dataset, "asvspoof2021-df:/data/df");
        // Sweep run IDs hash the serialised configuration: a run without eval sets, or with
        // the default window, must serialise exactly as before the keys existed.
        let plain = parse(MINIMAL).unwrap();
        assert_eq!(plain.data.eval_window, EvalWindow::Fixed);
        for written in [plain.to_toml(), serde_json::to_string(&plain).unwrap()] {
            assert!(
                !written.contains("eval_sets") && !written.contains("eval_window"),
                "{written}"
            );
        }
        let whole = MINIMAL.replace(
            "dataset = \"csv:list.csv\"",
            "dataset = \"csv:list.csv\"\neval_window = \"whole\"",
        );
        let whole = parse(&whole).unwrap();
        assert_eq!(whole.data.eval_window, EvalWindow::Whole);
        assert_eq!(parse(&whole.to_toml()).unwrap(), whole);
    }

    #[test]
    fn a_bad_eval_set_names_its_key_and_the_entry_line() {
        let set = |name: &str, extra: &str| {
            format!("\n[[eval_sets]]\nname = \"{name}\"\ndataset = \"csv:x.csv\"\n{extra}")
        };
        // Lines: MINIMAL ends at line 9; each entry starts with a blank line.
        let two = format!("{MINIMAL}{}{}", set("a", ""), set("a", ""));
        let (line, key, message) = config_error(&two);
        assert_eq!((key.as_str(), line), ("eval_sets.name", Some(15)));
        assert!(message.contains("used twice"), "{message}");
        let (line, key, _) = config_error(&format!("{MINIMAL}{}", set("it w", "")));
        assert_eq!((key.as_str(), line), ("eval_sets.name", Some(11)));
        let (_, key, message) = config_error(&format!("{MINIMAL}{}", set("dev", "")));
        assert_eq!(key, "eval_sets.name");
        assert!(message.contains("scores file"), "{message}");
        let empty = format!("{MINIMAL}\n[[eval_sets]]\nname = \"x\"\ndataset = \" \"\n");
        let (line, key, _) = config_error(&empty);
        assert_eq!((key.as_str(), line), ("eval_sets.dataset", Some(12)));
        let (line, key, _) = config_error(&format!("{MINIMAL}{}", set("x", "split = \"\"\n")));
        assert_eq!((key.as_str(), line), ("eval_sets.split", Some(13)));
        let asv = set("x", "asv_scores = \"asv.txt\"\n");
        let (_, key, message) = config_error(&format!("{MINIMAL}{asv}"));
        assert_eq!(key, "eval_sets.dataset");
        assert!(message.contains("ASVspoof 2019 LA"), "{message}");
        let missing = format!("{MINIMAL}\n[[eval_sets]]\nname = \"x\"\n");
        assert!(config_error(&missing).2.contains("dataset"));
        let (line, _, message) = config_error(&format!("{MINIMAL}{}", set("x", "subsets = 1\n")));
        assert_eq!(line, Some(13));
        assert!(message.contains("subsets"), "{message}");
        let window = MINIMAL.replace(
            "dataset = \"csv:list.csv\"",
            "dataset = \"csv:list.csv\"\neval_window = \"full\"",
        );
        let (line, _, message) = config_error(&window);
        assert_eq!(line, Some(5));
        assert!(message.contains("whole"), "{message}");
    }

    #[test]
    fn relative_paths_follow_the_toml() {
        let mut c = parse(MINIMAL).unwrap();
        c.resolve_paths(Path::new("/runs"));
        assert_eq!(c.output_dir, PathBuf::from("/runs/out"));
        assert_eq!(c.data.dataset, "csv:/runs/list.csv");
    }
}
