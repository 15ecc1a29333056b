//! `fadlora`: the command-line front end. Each subcommand lives in its own module.

mod data_check;
mod detect_cmd;
mod model_cmds;
mod pretrain_cmds;
mod sweep_cmds;
mod train_cmds;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// glibc's allocator returns every block over its mmap threshold (a few MiB: most activations)
/// to the kernel when freed, so each training step paid page faults and zeroing for all of its
/// activations again; mimalloc keeps and reuses them (measured 15-20% of a CPU step).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fadlora",
    version,
    about = "Fake audio detection with LoRA-adapted wav2vec2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Extract wav2vec2 hidden states from audio files.
    Features(model_cmds::FeaturesArgs),
    /// Print a wav2vec2 architecture summary and parameter counts.
    Params(model_cmds::ParamsArgs),
    /// Train a detector from a run TOML.
    Train(train_cmds::TrainArgs),
    /// Pretrain a wav2vec2 front end by masked prediction of MFCC k-means targets
    /// (HuBERT's first iteration) from a pretraining TOML; ends with a Hugging Face folder.
    Pretrain(pretrain_cmds::PretrainArgs),
    /// Score a dataset with a trained detector and report its EER.
    Eval(train_cmds::EvalArgs),
    /// Score audio files, folders or lists of files with a trained detector: sliding windows
    /// over each whole file, a score per window and per file; unreadable files are listed with
    /// their error (exit status 2) and do not stop the others.
    Detect(detect_cmd::DetectArgs),
    /// Compute the EER (and min t-DCF) of a score file, like the ASVspoof evaluation script.
    Eer(train_cmds::EerArgs),
    /// Train every run of an experiment TOML (a grid over LoRA rank, targets, length, seeds),
    /// skipping finished runs and resuming interrupted ones.
    Sweep(sweep_cmds::SweepArgs),
    /// Tables and figures of finished sweeps (`<results>/<experiment>/report/`).
    Report(sweep_cmds::ReportArgs),
    /// Micro-benchmarks that print one JSON object (driven by `cargo xtask bench`).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Decode every file of a dataset and report counts, durations and bad files.
    Check(data_check::DataCheckArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Forward pass of the wav2vec2 encoder.
    Forward(model_cmds::BenchForwardArgs),
    /// One training step (forward + backward + optimizer).
    Step(train_cmds::BenchStepArgs),
    /// `detect` throughput (files/s) against `eval` of the same model on the same files.
    Detect(detect_cmd::BenchDetectArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // symphonia logs every stream it opens at info level.
            EnvFilter::try_from_env("FADLORA_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,symphonia=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data {
            command: DataCommand::Check(args),
        } => data_check::run(args),
        Command::Features(args) => model_cmds::features(args),
        Command::Params(args) => model_cmds::params(args),
        Command::Bench {
            command: BenchCommand::Forward(args),
        } => model_cmds::bench_forward(args),
        Command::Train(args) => train_cmds::train(args),
        Command::Pretrain(args) => pretrain_cmds::pretrain(args),
        Command::Eval(args) => train_cmds::eval(args),
        Command::Detect(args) => detect_cmd::detect(args),
        Command::Eer(args) => train_cmds::eer(args),
        Command::Sweep(args) => sweep_cmds::sweep(args),
        Command::Report(args) => sweep_cmds::report(args),
        Command::Bench {
            command: BenchCommand::Step(args),
        } => train_cmds::bench_step(args),
        Command::Bench {
            command: BenchCommand::Detect(args),
        } => detect_cmd::bench_detect(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message before
/// it already ends with (library errors often print their source inline as well).
fn error_chain(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
