//! `fadlora train | eval | eer | bench step`: thin wrappers over `fadlora-train`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use fadlora_data::DatasetSpec;
use fadlora_model::Precision;
use fadlora_run::{LoraSection, LoraTarget};
use fadlora_train::backend::default_backend;
use fadlora_train::bench::{bench_step as run_bench_step, BenchStepConfig};
use fadlora_train::infer::evaluate_checkpoint_subset;
use fadlora_train::scores::{
    evaluate_scores, read_asv_scores, read_protocol, read_score_file, write_score_file,
    ProtocolFilter,
};
use fadlora_train::{load_run_config, BackendKind, TrainOptions, TrainOutcome};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The run TOML (see `fadlora_train::config` for every key).
    #[arg(long)]
    config: PathBuf,
    /// Override the TOML's `backend` (flex, cuda, wgpu; must be compiled in).
    #[arg(long)]
    backend: Option<BackendKind>,
    /// Override the TOML's `output_dir`.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// No progress bar (logs only).
    #[arg(long)]
    no_progress: bool,
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let mut config = load_run_config(&args.config)?;
    if let Some(backend) = args.backend {
        config.backend = backend;
    }
    if let Some(dir) = args.output_dir {
        config.output_dir = dir;
    }
    let options = TrainOptions {
        progress: !args.no_progress,
        interrupt_after_epochs: None,
    };
    let outcome = fadlora_train::train(&config, &options)
        .with_context(|| format!("training {}", args.config.display()))?;
    let TrainOutcome::Finished(record) = outcome else {
        bail!("training stopped before its budget was used");
    };
    let out = &config.output_dir;
    println!(
        "{} ({}, {}): {} of {} parameters trainable; best epoch {} of {}",
        record.name.as_deref().unwrap_or("run"),
        record.mode,
        record.backend,
        record.params.trainable,
        record.params.total,
        record.best_epoch,
        record.epochs.len()
    );
    println!(
        "dev (split `{}`): EER {:.6}%",
        record.dev.split, record.dev.eer_percent
    );
    if let Some(eval) = &record.eval {
        println!(
            "eval (split `{}`): EER {:.6}%",
            eval.split, eval.eer_percent
        );
    }
    if let Some(t) = &record.step_time {
        println!(
            "step {:.1} ms median, {:.1} ms p90; train {:.2} utt/s, eval {:.2} utt/s; peak memory {} ({})",
            t.median_ms,
            t.p90_ms,
            record.train_utt_per_s,
            record.eval_utt_per_s,
            record
                .memory
                .peak_mem_bytes
                .map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            record.memory.kind
        );
    }
    println!(
        "record: {}",
        out.join(fadlora_train::train::RECORD_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A training output folder (or its `best/`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The dataset (`asvspoof2019:DIR`, `itw:DIR`, `csv:FILE`, or a bare path).
    #[arg(long)]
    dataset: String,
    /// Which split to score; all utterances when absent.
    #[arg(long)]
    split: Option<String>,
    /// ASVspoof 2021 keys: keep only this subset (`eval`, `progress`, `hidden_track`), as an
    /// `[[eval_sets]]` entry's `subset` does.
    #[arg(long)]
    subset: Option<String>,
    /// Where to write the `utt_id score` file.
    #[arg(long)]
    scores: Option<PathBuf>,
    #[arg(long, default_value_t = default_backend())]
    backend: BackendKind,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let spec = DatasetSpec::parse(&args.dataset)?;
    let set = evaluate_checkpoint_subset(
        &args.checkpoint,
        &spec,
        args.split.as_deref(),
        args.subset.as_deref(),
        args.backend,
        args.batch_size,
        [0.1, 0.9],
    )?;
    if let Some(path) = &args.scores {
        write_score_file(path, &set.scores)?;
    }
    let n_bona = set
        .scores
        .iter()
        .filter(|s| s.label == fadlora_data::Label::Bonafide)
        .count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "eer_percent": set.eer.eer * 100.0,
                "threshold": set.eer.threshold,
                "n_bonafide": n_bona,
                "n_spoof": set.scores.len() - n_bona,
                "utt_per_s": set.utt_per_s(),
            })
        );
    } else {
        println!(
            "{} trials ({n_bona} bona fide): EER {:.6}% at threshold {}; {:.2} utt/s",
            set.scores.len(),
            set.eer.eer * 100.0,
            set.eer.threshold,
            set.utt_per_s()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct EerArgs {
    /// Score file: `utt_id score` per line, higher = more bona fide.
    #[arg(long)]
    scores: PathBuf,
    /// Ground truth: a protocol/key file (ASVspoof 2019, 2021 LA/DF, 5), a CSV list, or a
    /// dataset (`asvspoof2019:DIR`, `asvspoof5:DIR`, `itw:DIR`, ...).
    #[arg(long)]
    protocol: String,
    /// ASV scores (`[id] target|nontarget|spoof score`) for the 2019 min t-DCF.
    #[arg(long)]
    asv_scores: Option<PathBuf>,
    /// Keep only this split of a multi-split protocol.
    #[arg(long)]
    split: Option<String>,
    /// ASVspoof 2021 keys: keep only this subset (the challenge reports `eval`).
    #[arg(long)]
    subset: Option<String>,
    /// Print `{"eer_percent", "threshold", "min_tdcf", "min_dcf", "act_dcf", "cllr",
    /// "min_cllr", "n_bonafide", "n_spoof"}`.
    #[arg(long)]
    json: bool,
}

pub fn eer(args: EerArgs) -> Result<ExitCode> {
    let scores = read_score_file(&args.scores)?;
    let protocol = read_protocol(&args.protocol)
        .with_context(|| format!("reading the protocol {}", args.protocol))?;
    let asv = args
        .asv_scores
        .as_deref()
        .map(read_asv_scores)
        .transpose()?;
    let report = evaluate_scores(
        &scores,
        &protocol,
        &ProtocolFilter {
            split: args.split,
            subset: args.subset,
        },
        asv.as_ref(),
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "eer_percent": report.eer_percent,
                "threshold": report.threshold,
                "min_tdcf": report.min_tdcf,
                "min_dcf": report.min_dcf,
                "act_dcf": report.act_dcf,
                "cllr": report.cllr,
                "min_cllr": report.min_cllr,
                "n_bonafide": report.n_bonafide,
                "n_spoof": report.n_spoof,
            })
        );
    } else {
        println!(
            "EER: {:.9} % (threshold {}, {} bona fide, {} spoof)",
            report.eer_percent, report.threshold, report.n_bonafide, report.n_spoof
        );
        if let Some(t) = report.min_tdcf {
            println!("min t-DCF: {t:.9}");
        }
        // actDCF and Cllr take scores as natural-log likelihood ratios; say so, since most
        // detectors' raw scores are not calibrated.
        println!(
            "ASVspoof 5 Track 1 (Pspoof 0.05, Cmiss 1, Cfa 10): minDCF {:.9}, actDCF {:.9}",
            report.min_dcf, report.act_dcf
        );
        println!(
            "Cllr {:.9} bits, minCllr {:.9} bits (actDCF and Cllr read scores as natural-log LLRs)",
            report.cllr, report.min_cllr
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Lora,
}

#[derive(clap::Args)]
pub struct BenchStepArgs {
    #[arg(long, default_value = "tiny")]
    preset: String,
    #[arg(long, default_value_t = default_backend())]
    backend: BackendKind,
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    mode: Mode,
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// LoRA alpha (default 2 * rank, as tools/bench/torch_step.py).
    #[arg(long)]
    alpha: Option<f64>,
    /// Comma-separated LoRA targets among q, k, v, o, ffn_in, ffn_out.
    #[arg(long, default_value = "q,v")]
    targets: String,
    /// With `--mode lora`: a mixture of this many LoRA experts per target (soft routing,
    /// load-balancing weight 0.01, as `[lora.moe]`'s defaults).
    #[arg(long)]
    experts: Option<usize>,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 32_000)]
    samples: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Float type of matmuls and activations (f32, bf16, f16); master weights stay f32.
    #[arg(long, default_value_t = Precision::F32)]
    precision: Precision,
}

pub fn bench_step(args: BenchStepArgs) -> Result<ExitCode> {
    let lora = match args.mode {
        Mode::Full => None,
        Mode::Lora => Some(LoraSection {
            rank: args.rank,
            alpha: args.alpha,
            dropout: 0.0,
            targets: args
                .targets
                .split(',')
                .map(|t| t.parse::<LoraTarget>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?,
            layers: None,
            use_rslora: false,
            use_dora: false,
            moe: args.experts.map(|experts| fadlora_run::MoeSection {
                experts,
                ..Default::default()
            }),
        }),
    };
    let result = run_bench_step(&BenchStepConfig {
        preset: args.preset,
        backend: args.backend,
        lora,
        batch: args.batch,
        samples: args.samples,
        warmup: args.warmup,
        iters: args.iters,
        seed: args.seed,
        precision: args.precision,
    })?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}
