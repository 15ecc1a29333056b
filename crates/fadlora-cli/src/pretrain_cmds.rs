//! `fadlora pretrain`: a thin wrapper over `fadlora-pretrain`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use fadlora_pretrain::{
    pretrain as run_pretraining, PretrainConfig, PretrainOptions, PretrainOutcome,
};
use fadlora_train::{BackendKind, Compiled};

#[derive(clap::Args)]
pub struct PretrainArgs {
    /// The pretraining TOML (`fadlora_pretrain::config` documents every key).
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

pub fn pretrain(args: PretrainArgs) -> Result<ExitCode> {
    let mut config = PretrainConfig::load(&args.config)?;
    if let Some(backend) = args.backend {
        config.backend = backend;
    }
    if let Some(dir) = args.output_dir {
        config.output_dir = dir;
    }
    config.backend.ensure_compiled()?;
    let options = PretrainOptions {
        progress: !args.no_progress,
        interrupt_after_steps: None,
    };
    let outcome = run_pretraining(&config, &options)
        .with_context(|| format!("pretraining {}", args.config.display()))?;
    let PretrainOutcome::Finished(record) = outcome else {
        bail!("pretraining stopped before its budget was used");
    };
    println!(
        "{}: {} steps on {} utterances ({:.1} min) in {:.0} s; {} parameters",
        record.name.as_deref().unwrap_or("pretraining"),
        record.steps,
        record.train_utterances,
        record.train_minutes,
        record.wall_seconds,
        record.parameters
    );
    println!(
        "targets: {} clusters ({} used on the training audio, majority {:.1}%, perplexity {:.1})",
        record.clusters,
        record.train_labels.used_clusters,
        100.0 * record.train_labels.majority_fraction,
        record.train_labels.perplexity
    );
    println!(
        "held-out masked accuracy {:.1}% against a majority-cluster rate of {:.1}%",
        100.0 * record.final_valid_masked_accuracy,
        100.0 * record.valid_majority_rate
    );
    if let Some(t) = &record.step_time {
        println!("step {:.1} ms median, {:.1} ms p90", t.median_ms, t.p90_ms);
    }
    println!("model: {}", record.model_dir.display());
    println!(
        "record: {}",
        config
            .output_dir
            .join(fadlora_run::layout::RECORD_FILE)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}
