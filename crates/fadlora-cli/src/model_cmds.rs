//! `fadlora features`, `fadlora params` and `fadlora bench forward`: the wav2vec2 commands.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use burn::backend::Autodiff;
use burn::prelude::*;
use fadlora_model::{
    count_trainable, AdapterLayerConfig, Ia3Config, LoraConfig, MoeConfig, ParamSummary,
    PrecisionDType, Wav2Vec2Config, Wav2Vec2Model,
};
use fadlora_run::parse_targets;

use fadlora_train::backend::default_backend;
use fadlora_train::measure::TimeStats;
use fadlora_train::{run_on, BackendEnv, BackendJob, BackendKind};

const FEATURES_AFTER_HELP: &str = "\
OUTPUT
  One audio file and one layer: OUT is the .npy file to write.
  Otherwise OUT is a directory (created if needed) holding <audio-stem>.<layer>.npy per file and
  layer, e.g. LA_T_1138215.layer12.npy or LA_T_1138215.last.npy. Audio files must then have
  distinct stems.
  Every .npy is a little-endian float32 array of shape [frames, hidden] (NumPy format 1.0,
  C order): np.load() reads it.

LAYERS
  last   the model output (last_hidden_state; in the pre-LN layout of XLS-R it is taken after
         the final encoder LayerNorm)
  N      hidden_states[N] as Hugging Face transformers 5.x returns it: 0 is the input of the
         first transformer layer, N >= 1 the output of layer N (un-normed in the pre-LN layout)
  all    every N from 0 to num_hidden_layers, plus last
  A comma-separated list mixes them: --layers 6,12,last

ADAPTER
  --adapter DIR loads a LoRA adapter in Hugging Face PEFT's layout (adapter_config.json +
  adapter_model.safetensors, as PEFT's save_pretrained or fadlora writes it) onto the checkpoint
  and folds it into the weights, so the adapted encoder runs at the base model's cost. Tensors
  stored beside the adapters under `fadlora.` (a detector head) are ignored.

INPUT
  Audio is decoded and resampled to 16 kHz mono. It is normalised to zero mean and unit
  variance exactly when the checkpoint's preprocessor_config.json says \"do_normalize\": true
  (as Hugging Face's Wav2Vec2FeatureExtractor); otherwise the samples in [-1, 1) are fed as
  they are. Each file runs alone, in eval mode, at its full length.";

/// Arguments of `fadlora features`.
#[derive(clap::Args)]
#[command(after_help = FEATURES_AFTER_HELP)]
pub struct FeaturesArgs {
    /// Hugging Face model directory (config.json, model.safetensors or pytorch_model.bin,
    /// preprocessor_config.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Which hidden states to write: `last`, `all`, or a comma-separated list of layer
    /// indices and `last`.
    #[arg(long, default_value = "last")]
    layers: String,
    /// Output .npy file, or directory (see OUTPUT below).
    #[arg(long)]
    out: PathBuf,
    /// Override preprocessor_config.json's `do_normalize` (needed when the file is absent).
    #[arg(long)]
    do_normalize: Option<bool>,
    /// A LoRA adapter directory in PEFT's layout to apply (merged) on the checkpoint.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Tensor backend to run on.
    #[arg(long, default_value = "flex")]
    backend: BackendKind,
    /// Audio files (WAV or FLAC).
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

const PARAMS_AFTER_HELP: &str = "\
LORA
  With --rank (or --ranks), the counts of LoRA on the --lora projections (default q,v) follow:
  trainable parameters (adapters only, every pretrained weight frozen), the total, and the
  reduction factor against full fine-tuning (which trains every parameter). They are read from
  an adapted model as PEFT's get_nb_trainable_parameters() does; nothing is allocated.
  Projections: q, k, v, o (attention output), ffn_in, ffn_out (feed-forward).
  --ranks 1,2,4,8,16,32,64 prints one row per rank, after the full fine-tuning row.";

/// Arguments of `fadlora params`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["checkpoint", "preset"])))]
#[command(after_help = PARAMS_AFTER_HELP)]
pub struct ParamsArgs {
    /// Hugging Face model directory; only its config.json is read.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A built-in configuration.
    #[arg(long, value_parser = Wav2Vec2Config::PRESETS)]
    preset: Option<String>,
    /// Comma-separated projections to adapt with LoRA (q, k, v, o, ffn_in, ffn_out).
    #[arg(long, value_name = "TARGETS")]
    lora: Option<String>,
    /// LoRA rank.
    #[arg(long, conflicts_with = "ranks")]
    rank: Option<usize>,
    /// Comma-separated LoRA ranks: one table row each.
    #[arg(long, value_delimiter = ',')]
    ranks: Option<Vec<usize>>,
    /// LoRA alpha (scaling alpha / r; does not change the counts). Default 2 x rank.
    #[arg(long)]
    alpha: Option<f64>,
    /// Comma-separated encoder layer indices to adapt (default: all).
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    /// Weight-decomposed LoRA (DoRA): adds a magnitude per output of each adapted projection.
    #[arg(long)]
    dora: bool,
    /// Comma-separated expert counts: the rank rows become mixtures of LoRA experts, one row
    /// per rank and count (each adapted projection gets that many adapters and a router of
    /// `d_in x experts` weights).
    #[arg(
        long,
        value_name = "EXPERTS",
        value_delimiter = ',',
        conflicts_with = "dora"
    )]
    moe: Option<Vec<usize>>,
    /// Add an (IA)^3 row: vectors on these targets (default k,v,ffn_out), of which
    /// `--ia3-feedforward` (default: ffn_out when it is a target) rescale their input.
    #[arg(long, value_name = "TARGETS", num_args = 0..=1, default_missing_value = "k,v,ffn_out")]
    ia3: Option<String>,
    #[arg(long, value_name = "TARGETS", requires = "ia3")]
    ia3_feedforward: Option<String>,
    /// Comma-separated adapter-layer widths: one row each (an adapter in every encoder layer).
    #[arg(long, value_name = "SIZES", value_delimiter = ',')]
    adapter: Option<Vec<usize>>,
    /// Kind of the `--adapter` rows: mms (Hugging Face's MMS attention adapter, pre-LN models)
    /// or bottleneck.
    #[arg(long, default_value = "mms", requires = "adapter")]
    adapter_kind: fadlora_model::AdapterKind,
    /// Comma-separated partial fine-tuning rows, each `top:K` or `bottom:K`: the K encoder
    /// layers at that end train whole, everything else frozen.
    #[arg(long, value_name = "END:COUNT", value_delimiter = ',')]
    partial: Option<Vec<PartialRow>>,
    /// The `--partial` rows also train the feature projection.
    #[arg(long, requires = "partial")]
    partial_feature_projection: bool,
    /// Add a layer-sum row: the front end frozen, one learned weight per hidden state
    /// (`num_hidden_layers + 1`).
    #[arg(long)]
    layer_sum: bool,
    /// Comma-separated input lengths in samples: one row each for the SLS head on a frozen
    /// front end (the head alone trains; its `fc1` is sized by the frames of the input).
    #[arg(long, value_name = "SAMPLES", value_delimiter = ',')]
    sls: Option<Vec<usize>>,
}

/// One `--partial` row: `top:4` or `bottom:2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartialRow {
    layers: fadlora_model::partial::PartialLayers,
    count: usize,
}

impl std::str::FromStr for PartialRow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (end, count) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected top:COUNT or bottom:COUNT"))?;
        Ok(PartialRow {
            layers: end.trim().parse()?,
            count: count
                .trim()
                .parse()
                .map_err(|_| format!("`{s}`: the layer count must be a whole number"))?,
        })
    }
}

/// Arguments of `fadlora bench forward`.
#[derive(clap::Args)]
pub struct BenchForwardArgs {
    /// Tensor backend to run on.
    #[arg(long, default_value = "flex")]
    backend: BackendKind,
    /// Configuration (random weights).
    #[arg(long, default_value = "tiny", value_parser = Wav2Vec2Config::PRESETS)]
    preset: String,
    /// Utterances per batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Samples per utterance (16 kHz).
    #[arg(long, default_value_t = 32_000)]
    samples: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Float type of matmuls and activations (f32, bf16, f16).
    #[arg(long, default_value_t = fadlora_model::Precision::F32)]
    precision: fadlora_model::Precision,
}

// ---------------------------------------------------------------------------------------------
// features

/// One requested output: a `hidden_states` index or the final output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Hidden(usize),
    Last,
}

impl Layer {
    fn file_tag(self) -> String {
        match self {
            Layer::Hidden(n) => format!("layer{n}"),
            Layer::Last => "last".into(),
        }
    }
}

fn parse_layers(spec: &str, num_layers: usize) -> Result<Vec<Layer>> {
    let mut layers = BTreeSet::new();
    for part in spec.split(',').map(str::trim) {
        match part {
            "last" => {
                layers.insert(Layer::Last);
            }
            "all" => {
                layers.extend((0..=num_layers).map(Layer::Hidden));
                layers.insert(Layer::Last);
            }
            n => {
                let n: usize = n.parse().with_context(|| {
                    format!("--layers: `{n}` is not `last`, `all` or a layer index")
                })?;
                ensure!(
                    n <= num_layers,
                    "--layers: index {n} out of range: the model has hidden states 0..={num_layers}"
                );
                layers.insert(Layer::Hidden(n));
            }
        }
    }
    Ok(layers.into_iter().collect())
}

/// `do_normalize` from `preprocessor_config.json`, checking the sampling rate on the way.
fn read_do_normalize(dir: &Path) -> Result<Option<bool>> {
    let path = dir.join("preprocessor_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    if let Some(rate) = json.get("sampling_rate").and_then(|v| v.as_u64()) {
        ensure!(
            rate == u64::from(fadlora_audio::TARGET_SAMPLE_RATE),
            "{} says sampling_rate {rate}; only 16000 Hz models are supported",
            path.display()
        );
    }
    // Wav2Vec2FeatureExtractor's default is do_normalize = true.
    Ok(Some(
        json.get("do_normalize")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
    ))
}

pub fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let config = Wav2Vec2Config::from_hf_json_file(args.checkpoint.join("config.json"))?;
    let layers = parse_layers(&args.layers, config.num_hidden_layers)?;
    let do_normalize = match (args.do_normalize, read_do_normalize(&args.checkpoint)?) {
        (Some(flag), _) => flag,
        (None, Some(flag)) => flag,
        (None, None) => bail!(
            "{} has no preprocessor_config.json, so whether to normalise the audio is unknown: \
             pass --do-normalize true or --do-normalize false",
            args.checkpoint.display()
        ),
    };
    let single_file = args.audio.len() == 1 && layers.len() == 1 && !args.out.is_dir();
    if !single_file {
        let mut stems = BTreeSet::new();
        for path in &args.audio {
            let stem = audio_stem(path)?;
            ensure!(
                stems.insert(stem.clone()),
                "two audio files share the stem `{stem}`; their outputs would collide in {}",
                args.out.display()
            );
        }
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
    }
    run_on(
        args.backend,
        ExtractFeatures {
            args: &args,
            layers: &layers,
            do_normalize,
            single_file,
        },
    )??;
    Ok(ExitCode::SUCCESS)
}

fn audio_stem(path: &Path) -> Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no usable file name", path.display()))
}

struct ExtractFeatures<'a> {
    args: &'a FeaturesArgs,
    layers: &'a [Layer],
    do_normalize: bool,
    single_file: bool,
}

impl BackendJob for ExtractFeatures<'_> {
    type Output = Result<()>;

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: BackendEnv,
    ) -> Result<()> {
        let args = self.args;
        let mut model = Wav2Vec2Model::<B>::from_pretrained(&args.checkpoint, &device)
            .with_context(|| format!("cannot load {}", args.checkpoint.display()))?;
        if let Some(dir) = &args.adapter {
            let (adapted, extras) = model
                .load_adapter_with_extras(dir, &device)
                .with_context(|| format!("cannot apply the adapter in {}", dir.display()))?;
            if !extras.is_empty() {
                tracing::info!(
                    "{}: ignoring {} non-adapter tensors (e.g. a detector head)",
                    dir.display(),
                    extras.len()
                );
            }
            model = adapted
                .merge_lora()
                .with_context(|| format!("cannot merge the adapter in {}", dir.display()))?;
        }
        let need_hidden = self.layers.iter().any(|l| matches!(l, Layer::Hidden(_)));
        for path in &args.audio {
            let mut wave = fadlora_audio::load_mono_16k(path)?;
            ensure!(
                model.config.num_frames(wave.len()).is_some(),
                "{}: {} samples is shorter than the model's receptive field of {} samples",
                path.display(),
                wave.len(),
                model.config.receptive_field()
            );
            if self.do_normalize {
                fadlora_audio::normalize_zero_mean_unit_variance(&mut wave);
            }
            let samples = wave.len();
            let input = Tensor::<B, 2>::from_data(TensorData::new(wave, [1, samples]), &device);
            let out = model.forward(input, need_hidden);
            let states = out.hidden_states.unwrap_or_default();
            for &layer in self.layers {
                let tensor = match layer {
                    Layer::Last => out.last_hidden_state.clone(),
                    Layer::Hidden(n) => states[n].clone(),
                };
                let [_, frames, hidden] = tensor.dims();
                let values = tensor
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("cannot read features back: {e:?}"))?;
                let target = if self.single_file {
                    args.out.clone()
                } else {
                    args.out
                        .join(format!("{}.{}.npy", audio_stem(path)?, layer.file_tag()))
                };
                write_npy_f32(&target, &[frames, hidden], &values)?;
            }
        }
        Ok(())
    }
}

/// Writes a C-order little-endian float32 array in NumPy's `.npy` format, version 1.0.
pub fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    ensure!(
        shape.iter().product::<usize>() == values.len(),
        "npy: shape {shape:?} does not hold {} values",
        values.len()
    );
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline, as numpy writes it.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// params

pub fn params(args: ParamsArgs) -> Result<ExitCode> {
    let (config, source) = match (&args.checkpoint, &args.preset) {
        (Some(dir), _) => (
            Wav2Vec2Config::from_hf_json_file(dir.join("config.json"))?,
            dir.display().to_string(),
        ),
        (None, Some(name)) => (
            Wav2Vec2Config::preset(name).with_context(|| format!("unknown preset {name}"))?,
            format!("preset {name}"),
        ),
        (None, None) => bail!("pass --checkpoint DIR or --preset NAME"),
    };
    let ranks = match (args.rank, &args.ranks) {
        (Some(rank), _) => vec![rank],
        (None, Some(ranks)) => ranks.clone(),
        (None, None) => {
            ensure!(
                args.lora.is_none()
                    && args.alpha.is_none()
                    && args.layers.is_none()
                    && !args.dora
                    && args.moe.is_none(),
                "--lora, --alpha, --layers, --dora and --moe describe LoRA adapters: give their --rank (or --ranks)"
            );
            Vec::new()
        }
    };
    // Everything is checked before anything is printed.
    let targets = parse_targets(args.lora.as_deref().unwrap_or("q,v"))?;
    let mixtures: Vec<Option<MoeConfig>> = match &args.moe {
        Some(experts) => experts
            .iter()
            .map(|&k| Some(MoeConfig::new().with_experts(k)))
            .collect(),
        None => vec![None],
    };
    let configs = ranks
        .iter()
        .flat_map(|&rank| mixtures.iter().map(move |moe| (rank, moe.clone())))
        .map(|(rank, moe)| {
            let lora = LoraConfig {
                rank,
                alpha: args.alpha.unwrap_or(2.0 * rank as f64),
                dropout: 0.0,
                targets: targets.clone(),
                layers: args.layers.clone(),
                use_rslora: false,
                use_dora: args.dora,
                moe,
            };
            lora.check(config.num_hidden_layers)?;
            Ok(lora)
        })
        .collect::<Result<Vec<_>>>()?;
    let ia3 = args
        .ia3
        .as_deref()
        .map(|targets| -> Result<Ia3Config> {
            let targets = parse_targets(targets)?;
            let feedforward = match &args.ia3_feedforward {
                Some(list) => parse_targets(list)?,
                None => targets
                    .iter()
                    .copied()
                    .filter(|t| *t == fadlora_model::LoraTarget::FfnOut)
                    .collect(),
            };
            let config = Ia3Config::new()
                .with_targets(targets)
                .with_feedforward(feedforward);
            config.check()?;
            Ok(config)
        })
        .transpose()?;
    let adapters: Vec<AdapterLayerConfig> = args
        .adapter
        .iter()
        .flatten()
        .map(|&size| AdapterLayerConfig::new(args.adapter_kind, size))
        .collect();
    for adapter in &adapters {
        ensure!(adapter.size > 0, "--adapter sizes must be at least 1");
        ensure!(
            adapter.kind != fadlora_model::AdapterKind::Mms || config.do_stable_layer_norm,
            "MMS adapters exist only in pre-LN models (do_stable_layer_norm); use --adapter-kind bottleneck"
        );
    }
    let partials: Vec<(PartialRow, bool)> = args
        .partial
        .iter()
        .flatten()
        .map(|&row| (row, args.partial_feature_projection))
        .collect();
    for (row, _) in &partials {
        ensure!(
            (1..=config.num_hidden_layers).contains(&row.count),
            "--partial {}:{}: the model has {} encoder layers, train 1 to {} of them",
            row.layers,
            row.count,
            config.num_hidden_layers,
            config.num_hidden_layers
        );
    }
    print!("{}", params_report(&config, &source)?);
    if configs.is_empty()
        && ia3.is_none()
        && adapters.is_empty()
        && partials.is_empty()
        && !args.layer_sum
        && args.sls.is_none()
    {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    print!(
        "{}",
        lora_table(
            &config,
            &configs,
            ia3.as_ref(),
            &adapters,
            &partials,
            args.layer_sum,
            args.sls.as_deref().unwrap_or_default(),
        )?
    );
    Ok(ExitCode::SUCCESS)
}

/// Parameter counts of a lazily initialised model, so no weight is ever allocated.
struct CountParams<'a>(&'a Wav2Vec2Config);

impl BackendJob for CountParams<'_> {
    type Output = ParamSummary;

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: BackendEnv,
    ) -> ParamSummary {
        ParamSummary::of(&self.0.init::<B>(&device))
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Architecture summary and per-block parameter counts, read from a lazily initialised model
/// (nothing is allocated, so the XLS-R preset costs no memory).
fn params_report(config: &Wav2Vec2Config, source: &str) -> Result<String> {
    let counts = run_on(default_backend(), CountParams(config))?;
    let layout = if config.do_stable_layer_norm {
        "pre-LN (do_stable_layer_norm = true)"
    } else {
        "post-LN (do_stable_layer_norm = false)"
    };
    let hop: usize = config.conv_stride.iter().product();
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!("wav2vec2 ({source})"));
    line(format!(
        "  encoder: {} layers, hidden {}, {} heads, FFN {}, {layout}",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size
    ));
    line(format!(
        "  feature encoder: {} convs, channels {:?}, kernels {:?}, strides {:?}, norm {}, conv bias {}",
        config.conv_dim.len(),
        config.conv_dim,
        config.conv_kernel,
        config.conv_stride,
        config.feat_extract_norm,
        config.conv_bias
    ));
    line(format!(
        "  frames: one per {hop} samples ({} ms at 16 kHz), receptive field {} samples; \
         64,600 samples -> {} frames",
        hop / 16,
        config.receptive_field(),
        config.num_frames(64_600).unwrap_or(0)
    ));
    line(format!(
        "  positional conv: kernel {}, {} groups, weight norm over dim 2",
        config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups
    ));
    line(String::new());
    line(format!("{:<28}{:>15}", "block", "parameters"));
    let mut row = |name: &str, n: usize| line(format!("{name:<28}{:>15}", thousands(n)));
    row("feature encoder", counts.feature_encoder);
    row("feature projection", counts.feature_projection);
    row("positional conv", counts.positional_conv);
    for (i, &n) in counts.encoder_layers.iter().enumerate() {
        row(&format!("encoder layer {i}"), n);
    }
    row("encoder layer norm", counts.encoder_layer_norm);
    row("total", counts.total);
    Ok(s)
}

/// Trainable and total parameters of full fine-tuning and of each LoRA configuration.
struct CountLora<'a> {
    config: &'a Wav2Vec2Config,
    loras: &'a [LoraConfig],
    ia3: Option<&'a Ia3Config>,
    adapters: &'a [AdapterLayerConfig],
    partials: &'a [(PartialRow, bool)],
}

impl BackendJob for CountLora<'_> {
    type Output = (
        fadlora_model::ParamCounts,
        Vec<fadlora_model::ParamCounts>,
        Option<fadlora_model::ParamCounts>,
        Vec<fadlora_model::ParamCounts>,
        Vec<fadlora_model::ParamCounts>,
    );

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: BackendEnv,
    ) -> Self::Output {
        // Gradients exist only on an autodiff backend: that is where `require_grad` is kept.
        // The model is lazy: freezing, adapting and counting allocate nothing.
        let model = self.config.init::<Autodiff<B>>(&device);
        let full = count_trainable(&model);
        let adapted = self
            .loras
            .iter()
            .map(|lora| count_trainable(&model.clone().with_lora(lora, &device)))
            .collect();
        let ia3 = self.ia3.map(|ia3| {
            count_trainable(
                &model
                    .clone()
                    .try_with_ia3(ia3, &device)
                    .expect("checked before counting"),
            )
        });
        let adapters = self
            .adapters
            .iter()
            .map(|adapter| {
                count_trainable(
                    &model
                        .clone()
                        .try_with_adapters(adapter, &device)
                        .expect("checked before counting"),
                )
            })
            .collect();
        let partials = self
            .partials
            .iter()
            .map(|(row, projection)| {
                count_trainable(
                    &model
                        .clone()
                        .try_with_partial(row.layers, row.count, *projection)
                        .expect("checked before counting"),
                )
            })
            .collect();
        (full, adapted, ia3, adapters, partials)
    }
}

/// Trainable parameters of an SLS head, lazily initialised (nothing is allocated). Counted on
/// an autodiff backend, where the BatchNorm's running statistics (buffers in PyTorch, not
/// parameters) are the tensors that do not train.
struct CountSls<'a>(&'a fadlora_train::sls::SlsConfig);

impl BackendJob for CountSls<'_> {
    type Output = usize;

    fn run<B: fadlora_model::ModelBackend>(self, device: B::Device, _env: BackendEnv) -> usize {
        count_trainable(&self.0.init::<Autodiff<B>>(&device)).trainable
    }
}

/// The LoRA rows of `fadlora params`: one for full fine-tuning, one per configuration.
fn lora_table(
    config: &Wav2Vec2Config,
    loras: &[LoraConfig],
    ia3: Option<&Ia3Config>,
    adapters: &[AdapterLayerConfig],
    partials: &[(PartialRow, bool)],
    layer_sum: bool,
    sls_lengths: &[usize],
) -> Result<String> {
    let (full, adapted, ia3_counts, adapter_counts, partial_counts) = run_on(
        default_backend(),
        CountLora {
            config,
            loras,
            ia3,
            adapters,
            partials,
        },
    )?;
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!(
        "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
        "fine-tuning", "targets", "rank", "alpha", "trainable", "total", "reduction"
    ));
    line(format!(
        "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
        "full",
        "all",
        "-",
        "-",
        thousands(full.trainable),
        thousands(full.total),
        "1.0x"
    ));
    for (lora, counts) in loras.iter().zip(adapted) {
        let targets: Vec<&str> = lora.targets.iter().map(|t| t.as_str()).collect();
        let layers = match &lora.layers {
            None => String::new(),
            Some(l) => format!(
                " @{}",
                l.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
            ),
        };
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            match &lora.moe {
                Some(moe) => format!("MoE-LoRA x{}", moe.experts),
                None if lora.use_dora => "DoRA".into(),
                None => "LoRA".into(),
            },
            format!("{}{layers}", targets.join(",")),
            lora.rank,
            lora.alpha,
            thousands(counts.trainable),
            thousands(counts.total),
            format!("{:.1}x", counts.reduction_vs(full.trainable))
        ));
    }
    if let (Some(ia3), Some(counts)) = (ia3, ia3_counts) {
        let targets: Vec<String> = ia3
            .targets
            .iter()
            .map(|t| {
                if ia3.feedforward.contains(t) {
                    format!("{t}(in)")
                } else {
                    t.to_string()
                }
            })
            .collect();
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            "(IA)^3",
            targets.join(","),
            "-",
            "-",
            thousands(counts.trainable),
            thousands(counts.total),
            format!("{:.1}x", counts.reduction_vs(full.trainable))
        ));
    }
    for (adapter, counts) in adapters.iter().zip(adapter_counts) {
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            "adapter",
            format!("{} x{}, every layer", adapter.kind, adapter.size),
            "-",
            "-",
            thousands(counts.trainable),
            thousands(counts.total),
            format!("{:.1}x", counts.reduction_vs(full.trainable))
        ));
    }
    for ((row, projection), counts) in partials.iter().zip(partial_counts) {
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            "partial",
            format!(
                "{} {} layer{}{}",
                row.layers,
                row.count,
                if row.count == 1 { "" } else { "s" },
                if *projection { " + projection" } else { "" }
            ),
            "-",
            "-",
            thousands(counts.trainable),
            thousands(counts.total),
            format!("{:.1}x", counts.reduction_vs(full.trainable))
        ));
    }
    if layer_sum {
        // One logit per hidden state beside the frozen front end; nothing else is added.
        let states = config.num_hidden_layers + 1;
        let counts = fadlora_model::ParamCounts {
            trainable: states,
            total: full.total + states,
        };
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            "layer-sum",
            format!("{states} hidden states"),
            "-",
            "-",
            thousands(counts.trainable),
            thousands(counts.total),
            format!("{:.1}x", counts.reduction_vs(full.trainable))
        ));
    }
    for &samples in sls_lengths {
        let frames = config.num_frames(samples).with_context(|| {
            format!(
                "--sls {samples}: shorter than the receptive field ({} samples)",
                config.receptive_field()
            )
        })?;
        ensure!(
            frames >= fadlora_train::sls::SLS_MIN_FRAMES,
            "--sls {samples}: {frames} frames, the SLS head needs at least {}",
            fadlora_train::sls::SLS_MIN_FRAMES
        );
        let head = fadlora_train::sls::SlsConfig::new()
            .with_input_width(config.hidden_size)
            .with_frames(frames);
        let trainable = run_on(default_backend(), CountSls(&head))?;
        // The head replaces the 2,050 parameters of the linear head the other rows leave out.
        line(format!(
            "{:<18}{:<28}{:>6}{:>8}{:>15}{:>15}{:>12}",
            "SLS (frozen)",
            format!("head, {frames} frames"),
            "-",
            "-",
            thousands(trainable),
            thousands(full.total + trainable),
            format!("{:.1}x", full.trainable as f64 / trainable as f64)
        ));
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// bench forward

pub fn bench_forward(args: BenchForwardArgs) -> Result<ExitCode> {
    ensure!(args.iters > 0, "--iters must be at least 1");
    ensure!(args.batch > 0, "--batch must be at least 1");
    let config = Wav2Vec2Config::preset(&args.preset)
        .with_context(|| format!("unknown preset {}", args.preset))?;
    ensure!(
        config.num_frames(args.samples).is_some(),
        "--samples {} is shorter than the receptive field of {} samples",
        args.samples,
        config.receptive_field()
    );
    let report = run_on(
        args.backend,
        BenchForward {
            args: &args,
            config,
        },
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

struct BenchForward<'a> {
    args: &'a BenchForwardArgs,
    config: Wav2Vec2Config,
}

/// Waits for the device by reading back one element: that cannot complete before every
/// queued kernel it depends on has.
fn sync<B: Backend>(t: &Tensor<B, 3>) {
    let _ = t.clone().slice(s![0..1, 0..1, 0..1]).into_data();
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e3
}

impl BackendJob for BenchForward<'_> {
    type Output = serde_json::Value;

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        env: BackendEnv,
    ) -> serde_json::Value {
        let args = self.args;
        B::seed(&device, 0);
        let model = self.config.init::<B>(&device);
        let model = fadlora_model::precision::cast_frozen(model, args.precision);
        let input = Tensor::<B, 2>::random(
            [args.batch, args.samples],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        )
        .cast(args.precision.dtype());
        let (mut total, mut conv, mut pos, mut layers) = (vec![], vec![], vec![], vec![]);
        for i in 0..args.warmup + args.iters {
            let t_total = time_ms(|| sync(&model.forward(input.clone(), false).last_hidden_state));
            // The parts, each on inputs computed beforehand and synced on its own.
            let mut features = None;
            let t_conv = time_ms(|| {
                let f = model.feature_extractor.forward(input.clone());
                sync(&f);
                features = Some(f);
            });
            let (hidden, _) = model.feature_projection.forward(features.unwrap());
            sync(&hidden);
            let t_pos = time_ms(|| sync(&model.encoder.pos_conv_embed.forward(hidden.clone())));
            let t_layers = time_ms(|| {
                let mut h = hidden.clone();
                for layer in &model.encoder.layers {
                    h = layer.forward(h);
                }
                sync(&h);
            });
            if i >= args.warmup {
                total.push(t_total);
                conv.push(t_conv);
                pos.push(t_pos);
                layers.push(t_layers);
            }
        }
        // `--iters` is at least 1 (checked before dispatch), so every sample is non-empty.
        let median = |xs: &[f64]| TimeStats::of(xs).map_or(f64::NAN, |t| t.median_ms);
        let whole = TimeStats::of(&total).expect("at least one timed iteration");
        let round = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "backend": args.backend.as_str(),
            "device": env.device_name,
            "config": args.preset,
            "dtype": args.precision.as_str(),
            "batch": args.batch,
            "samples": args.samples,
            "frames": self.config.num_frames(args.samples),
            "warmup": args.warmup,
            "iters": args.iters,
            "median_ms": round(whole.median_ms),
            "p90_ms": round(whole.p90_ms),
            "utterances_per_s": round(args.batch as f64 / (whole.median_ms / 1e3)),
            "split_ms": {
                "feature_encoder": round(median(&conv)),
                "positional_conv": round(median(&pos)),
                "transformer_layers": round(median(&layers)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_little_endian() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_npy_f32(&path, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), -6.5);
    }

    #[test]
    fn layer_lists_parse() {
        assert_eq!(parse_layers("last", 2).unwrap(), vec![Layer::Last]);
        assert_eq!(
            parse_layers("all", 2).unwrap(),
            vec![
                Layer::Hidden(0),
                Layer::Hidden(1),
                Layer::Hidden(2),
                Layer::Last
            ]
        );
        assert_eq!(
            parse_layers("2, 0,last,2", 2).unwrap(),
            vec![Layer::Hidden(0), Layer::Hidden(2), Layer::Last]
        );
        assert!(parse_layers("3", 2).is_err());
        assert!(parse_layers("first", 2).is_err());
    }

    #[test]
    fn xls_r_preset_reports_the_hugging_face_count() {
        let report = params_report(&Wav2Vec2Config::xls_r_300m(), "preset xls-r-300m").unwrap();
        let total = report.lines().find(|l| l.starts_with("total")).unwrap();
        assert!(total.ends_with("315,437,696"), "{report}");
        let layer_rows = report.lines().filter(|l| {
            l.strip_prefix("encoder layer ")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        });
        assert_eq!(layer_rows.count(), 24);
    }
}
