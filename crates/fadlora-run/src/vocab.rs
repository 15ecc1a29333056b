//! The names run TOMLs, records and the command line use, defined once. The crates that
//! implement them (the model for precisions and LoRA targets, the trainer for backends and
//! heads) use these types, so a TOML value, a record field and the code mean the same thing.

use std::fmt;
use std::str::FromStr;

use fadlora_data::RawBoostMode;
use serde::{Deserialize, Serialize};

/// The float type of the matmuls and activations (mixed precision); weights, gradients,
/// optimizer state, LayerNorm, softmax and the loss stay f32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown precision `{s}` (f32, bf16, f16)"))
    }
}

/// An encoder projection that can carry an adapter. Names (`q`, `k`, `v`, `o`, `ffn_in`,
/// `ffn_out`) are those of run TOMLs and the command line; [`LoraTarget::hf_name`] gives the
/// Hugging Face module name PEFT's `target_modules` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    FfnIn,
    FfnOut,
}

/// A LoRA target name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown LoRA target `{name}` (valid: {valid})")]
pub struct UnknownLoraTarget {
    pub name: String,
    /// The accepted names, comma-separated, in the spelling that was expected.
    pub valid: String,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 6] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::FfnIn,
        LoraTarget::FfnOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
            LoraTarget::O => "o",
            LoraTarget::FfnIn => "ffn_in",
            LoraTarget::FfnOut => "ffn_out",
        }
    }

    /// The module name in Hugging Face's `Wav2Vec2EncoderLayer` (PEFT's `target_modules`).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "out_proj",
            LoraTarget::FfnIn => "intermediate_dense",
            LoraTarget::FfnOut => "output_dense",
        }
    }

    /// The module path inside an encoder layer (`attention.q_proj`, ...).
    pub fn hf_path(self) -> &'static str {
        match self {
            LoraTarget::Q => "attention.q_proj",
            LoraTarget::K => "attention.k_proj",
            LoraTarget::V => "attention.v_proj",
            LoraTarget::O => "attention.out_proj",
            LoraTarget::FfnIn => "feed_forward.intermediate_dense",
            LoraTarget::FfnOut => "feed_forward.output_dense",
        }
    }

    /// Reads a PEFT `target_modules` entry: a module name (`q_proj`) or its path inside the
    /// layer (`attention.q_proj`).
    pub fn from_hf_name(name: &str) -> Result<Self, UnknownLoraTarget> {
        Self::ALL
            .into_iter()
            .find(|t| name == t.hf_name() || name == t.hf_path())
            .ok_or_else(|| UnknownLoraTarget {
                name: name.to_string(),
                valid: Self::ALL.map(LoraTarget::hf_name).join(", "),
            })
    }
}

impl FromStr for LoraTarget {
    type Err = UnknownLoraTarget;

    fn from_str(s: &str) -> Result<Self, UnknownLoraTarget> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownLoraTarget {
                name: s.to_string(),
                valid: Self::ALL.map(LoraTarget::as_str).join(", "),
            })
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a comma-separated target list (`q,v`), in the order given, without duplicates.
pub fn parse_targets(list: &str) -> Result<Vec<LoraTarget>, UnknownLoraTarget> {
    let mut targets = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let target: LoraTarget = part.parse()?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// `q+v`, `q+k+v+o+ffn_in+ffn_out`: how tables and run IDs write a target set.
pub fn targets_label(targets: &[LoraTarget]) -> String {
    targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Where a run's tensors live. Which of them a binary can run is a build question (cargo
/// features of fadlora-train), answered there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `Flex` CPU backend.
    Flex,
    /// burn's CUDA backend (cubecl).
    Cuda,
    /// burn's wgpu backend (Vulkan/Metal/DX12; Mesa lavapipe on a CPU-only Linux machine).
    Wgpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Cuda, BackendKind::Wgpu];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The cargo feature (of fadlora-train and the `fadlora` binary) that compiles it in.
    pub fn feature(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "cuda" => Ok(BackendKind::Cuda),
            "wgpu" | "vulkan" => Ok(BackendKind::Wgpu),
            other => Err(format!("unknown backend `{other}` (flex, cuda, wgpu)")),
        }
    }
}

/// Which back end sits on the wav2vec2 features.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// Mean over frames of the last hidden state, then `Linear(hidden, 2)` (the benchmark
    /// detector of docs/reference.md §3).
    #[default]
    MeanLinear,
    /// SSL_Anti-spoofing's AASIST back end (Tak et al. 2022): projection to 128, a 2-D
    /// residual encoder, spectral and temporal graph attention, heterogeneous graph attention
    /// with master nodes and graph pooling.
    Aasist,
    /// The SLS classifier (Zhang et al. 2024): a sigmoid gate per encoder layer weighs every
    /// layer's output into one map, then BatchNorm, SELU, 3x3 max pooling and two fully
    /// connected layers.
    Sls,
}

/// How a detector's two logits (0 = spoof, 1 = bona fide) become the score written to score
/// files, thresholded by `fadlora detect` and used for every EER. Higher = more bona fide
/// either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// Bona fide logit minus spoof logit: the log odds of the softmax, with 0 as the
    /// classifier's own boundary.
    #[default]
    LogitDifference,
    /// The bona fide logit alone, as SSL_Anti-spoofing writes its scores. It ranks trials
    /// differently from the log odds whenever the spoof logit varies too, so EERs of the two
    /// differ.
    BonafideLogit,
}

impl ScoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreKind::LogitDifference => "logit-difference",
            ScoreKind::BonafideLogit => "bonafide-logit",
        }
    }

    /// The score of one trial from its `[spoof, bona fide]` logits.
    pub fn of(self, spoof: f64, bonafide: f64) -> f64 {
        match self {
            ScoreKind::LogitDifference => bonafide - spoof,
            ScoreKind::BonafideLogit => bonafide,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == ScoreKind::default()
    }
}

/// What a run trains: everything (full fine-tuning), LoRA (or DoRA) adapters and the head (a
/// `[lora]` table), (IA)^3 vectors and the head (an `[ia3]` table), adapter layers and the head
/// (an `[adapter]` table), the top or bottom encoder layers and the head (a `[partial]` table),
/// the head on a learned softmax-weighted sum of every hidden state of a frozen backbone (a
/// `[layer_sum]` table), or the head alone on a frozen backbone (a `[probe]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Lora,
    Probe,
    Ia3,
    Adapter,
    Partial,
    #[serde(rename = "layer-sum")]
    LayerSum,
    /// The whole front end frozen, only the head (any kind) trains on what it reads: the SLS
    /// head on every layer's output, the others on the final output (`[frozen]`).
    Frozen,
}

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::Full,
        Mode::Lora,
        Mode::Probe,
        Mode::Ia3,
        Mode::Adapter,
        Mode::Partial,
        Mode::LayerSum,
        Mode::Frozen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Lora => "lora",
            Mode::Probe => "probe",
            Mode::Ia3 => "ia3",
            Mode::Adapter => "adapter",
            Mode::Partial => "partial",
            Mode::LayerSum => "layer-sum",
            Mode::Frozen => "frozen",
        }
    }
}

/// Which end of the encoder a partial fine-tuning run trains (`[partial] layers`): the `count`
/// layers nearest the output (`top`) or nearest the input (`bottom`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PartialLayers {
    #[default]
    Top,
    Bottom,
}

impl PartialLayers {
    pub const ALL: [PartialLayers; 2] = [PartialLayers::Top, PartialLayers::Bottom];

    pub fn as_str(self) -> &'static str {
        match self {
            PartialLayers::Top => "top",
            PartialLayers::Bottom => "bottom",
        }
    }

    /// The encoder layer indices `count` layers of this end cover in a model of `num_layers`
    /// (all of them when `count >= num_layers`), in increasing order.
    pub fn indices(self, count: usize, num_layers: usize) -> std::ops::Range<usize> {
        let count = count.min(num_layers);
        match self {
            PartialLayers::Top => num_layers - count..num_layers,
            PartialLayers::Bottom => 0..count,
        }
    }
}

impl fmt::Display for PartialLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PartialLayers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PartialLayers::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown layer end `{s}` (expected top or bottom)"))
    }
}

/// Where an adapter layer sits in an encoder layer (`[adapter] kind`): Hugging Face's MMS
/// attention adapter (pre-LN layers only), or a bottleneck on the feed-forward output.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    #[default]
    Mms,
    Bottleneck,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 2] = [AdapterKind::Mms, AdapterKind::Bottleneck];

    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Mms => "mms",
            AdapterKind::Bottleneck => "bottleneck",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdapterKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AdapterKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown adapter kind `{s}` (expected mms or bottleneck)"))
    }
}

/// How a mixture of LoRA experts mixes its experts (`[lora.moe] routing`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MoeRouting {
    /// Every expert, weighted by the router's softmax.
    #[default]
    Soft,
    /// Only the expert with the highest router probability, weighted by that probability (so
    /// the router still receives a gradient), as the Switch Transformer routes.
    Top1,
}

impl MoeRouting {
    pub const ALL: [MoeRouting; 2] = [MoeRouting::Soft, MoeRouting::Top1];

    pub fn as_str(self) -> &'static str {
        match self {
            MoeRouting::Soft => "soft",
            MoeRouting::Top1 => "top1",
        }
    }
}

impl fmt::Display for MoeRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MoeRouting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MoeRouting::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown routing `{s}` (expected soft or top1)"))
    }
}

/// A parameter-efficient method a sweep compares (`[sweep] methods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Low-rank adapters over the sweep's ranks, targets and layers.
    Lora,
    /// The same grid with weight-decomposed adapters (`[lora] use_dora`).
    Dora,
    /// One (IA)^3 run per seed and input length (`[ia3]`, or its defaults).
    Ia3,
    /// One adapter-layer run per adapter size (`[sweep] adapter_sizes`), seed and input length.
    Adapter,
    /// One partial fine-tuning run per layer count (`[sweep] partial_counts`), seed and input
    /// length, at the end of the encoder the base's `[partial] layers` names.
    Partial,
    /// One run per seed and input length: the head on a learned weighted sum of every hidden
    /// state of a frozen front end (`[layer_sum]`).
    #[serde(rename = "layer-sum")]
    LayerSum,
    /// A mixture of LoRA experts (`[lora.moe]`) over the sweep's ranks, targets and layers,
    /// once per `[sweep] experts` entry.
    #[serde(rename = "moe-lora")]
    MoeLora,
    /// One run per seed and input length: the SLS head (sigmoid-gated fusion of every layer's
    /// output) on a frozen front end (`[frozen]`, `[head] kind = "sls"`).
    Sls,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>().unwrap(), kind);
        }
        assert!("tpu".parse::<BackendKind>().is_err());
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
        }
        for t in LoraTarget::ALL {
            assert_eq!(t.as_str().parse::<LoraTarget>().unwrap(), t);
            assert_eq!(LoraTarget::from_hf_name(t.hf_name()).unwrap(), t);
            assert_eq!(LoraTarget::from_hf_name(t.hf_path()).unwrap(), t);
        }
        let err = "query".parse::<LoraTarget>().unwrap_err().to_string();
        assert!(
            err.contains("`query`") && err.contains("q, k, v, o, ffn_in, ffn_out"),
            "{err}"
        );
        let modes: Vec<&str> = Mode::ALL.map(Mode::as_str).to_vec();
        assert_eq!(
            modes,
            [
                "full",
                "lora",
                "probe",
                "ia3",
                "adapter",
                "partial",
                "layer-sum",
                "frozen"
            ]
        );
        for end in PartialLayers::ALL {
            assert_eq!(end.as_str().parse::<PartialLayers>().unwrap(), end);
        }
        assert!("middle".parse::<PartialLayers>().is_err());
        assert_eq!(PartialLayers::Top.indices(2, 24), 22..24);
        assert_eq!(PartialLayers::Bottom.indices(2, 24), 0..2);
        assert_eq!(PartialLayers::Top.indices(30, 24), 0..24);
        for kind in AdapterKind::ALL {
            assert_eq!(kind.as_str().parse::<AdapterKind>().unwrap(), kind);
        }
        for routing in MoeRouting::ALL {
            assert_eq!(routing.as_str().parse::<MoeRouting>().unwrap(), routing);
        }
        assert!("top2".parse::<MoeRouting>().is_err());
        assert!("houlsby".parse::<AdapterKind>().is_err());
        let err = LoraTarget::from_hf_name("fc9").unwrap_err().to_string();
        assert!(
            err.contains("`fc9`") && err.contains("intermediate_dense"),
            "{err}"
        );
    }

    #[test]
    fn target_lists_keep_order_and_drop_repeats() {
        let t = parse_targets("v, q,v").unwrap();
        assert_eq!(t, vec![LoraTarget::V, LoraTarget::Q]);
        assert_eq!(targets_label(&t), "v+q");
        assert!(parse_targets("q,query").is_err());
    }

    #[test]
    fn serde_names_are_the_toml_names() {
        #[derive(Serialize)]
        struct Names {
            precision: Precision,
            target: LoraTarget,
            backend: BackendKind,
            head: HeadKind,
            mode: Mode,
            probe: Mode,
            layer_sum: Mode,
        }
        let text = toml::to_string(&Names {
            precision: Precision::Bf16,
            target: LoraTarget::FfnIn,
            backend: BackendKind::Wgpu,
            head: HeadKind::MeanLinear,
            mode: Mode::Lora,
            probe: Mode::Probe,
            layer_sum: Mode::LayerSum,
        })
        .unwrap();
        assert_eq!(
            text,
            "precision = \"bf16\"\ntarget = \"ffn_in\"\nbackend = \"wgpu\"\nhead = \"mean-linear\"\nmode = \"lora\"\nprobe = \"probe\"\nlayer_sum = \"layer-sum\"\n"
        );
    }
}

/// A training-set augmentation (`[data] augment` of a run TOML). Written `rawboost:N`: RawBoost
/// in SSL_Anti-spoofing's mode N (its `--algo`, 1-8; 5, LnL then ISD, is its ASVspoof 2019 LA
/// recipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Augment {
    RawBoost(RawBoostMode),
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Augment::RawBoost(mode) => write!(f, "rawboost:{}", mode.number()),
        }
    }
}

impl FromStr for Augment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected `rawboost:N` with N from 1 to 8 (SSL_Anti-spoofing's RawBoost \
                        modes: 1 LnL, 2 ISD, 3 SSI, 4 LnL+ISD+SSI, 5 LnL+ISD, 6 LnL+SSI, \
                        7 ISD+SSI, 8 LnL and ISD in parallel)";
        let Some((kind, mode)) = s.trim().split_once(':') else {
            return Err(format!("unknown augmentation `{s}`: {expected}"));
        };
        if !kind.trim().eq_ignore_ascii_case("rawboost") {
            return Err(format!("unknown augmentation `{s}`: {expected}"));
        }
        match mode.trim().parse::<u32>() {
            Ok(0) => Err(format!(
                "`{s}`: mode 0 is no augmentation; leave `augment` out instead"
            )),
            Ok(n) => RawBoostMode::from_number(n)
                .map(Augment::RawBoost)
                .ok_or_else(|| format!("`{s}`: no RawBoost mode {n}; {expected}")),
            Err(_) => Err(format!("`{s}`: {expected}")),
        }
    }
}

impl TryFrom<String> for Augment {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Augment> for String {
    fn from(a: Augment) -> String {
        a.to_string()
    }
}
