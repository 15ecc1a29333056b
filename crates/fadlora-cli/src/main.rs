//! `fadlora`: the command-line front end. Each subcommand lives in its own module.

mod data_check;
mod model_cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "fadlora", version, about = "Fake audio detection with LoRA-adapted wav2vec2")]
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FADLORA_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
