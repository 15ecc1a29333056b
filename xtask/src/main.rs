//! `cargo xtask`: project automation. It stays thin: it orchestrates `cargo` and the
//! `fadlora` binary (and, for corpus building, external audio tools), so it never has to
//! compile a tensor backend itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "fadlora project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Corpus tools.
    Dataset {
        #[command(subcommand)]
        command: DatasetTask,
    },
    /// Benchmarks that print JSON (built in release mode).
    Bench {
        #[command(subcommand)]
        command: BenchTask,
    },
}

#[derive(Subcommand)]
enum DatasetTask {
    /// Build the mini corpus from Asterisk prompts and TTS/vocoder spoofs
    /// (runs datasets/build/build_mini_corpus.py; `-- --help` lists its options).
    Build {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchTask {
    /// wav2vec2 forward pass; arguments go to `fadlora bench forward`.
    Forward {
        /// Backend to benchmark; selects the cargo feature the binary is built with.
        #[arg(long, default_value = "flex")]
        backend: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// One training step; arguments go to `fadlora bench step`.
    Step {
        /// Backend to benchmark; selects the cargo feature the binary is built with.
        #[arg(long, default_value = "flex")]
        backend: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

fn feature_for_backend(backend: &str) -> Result<&'static str> {
    Ok(match backend {
        "flex" | "cpu" => "flex",
        "cuda" => "cuda",
        "wgpu" => "wgpu",
        other => bail!("unknown backend `{other}` (expected flex, cuda or wgpu)"),
    })
}

/// Builds `fadlora` in release with only the benchmarked backend compiled in, then runs
/// `fadlora bench <which>`.
fn run_bench(root: &Path, which: &str, backend: &str, args: &[String]) -> Result<()> {
    let feature = feature_for_backend(backend)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(root)
        .args(["run", "--quiet", "--release", "-p", "fadlora-cli"])
        .args(["--no-default-features", "--features", feature, "--"])
        .args(["bench", which, "--backend", backend])
        .args(args))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Task::Dataset {
            command: DatasetTask::Build { args },
        } => {
            let script = root.join("datasets/build/build_mini_corpus.py");
            run(Command::new("python3")
                .arg(&script)
                .args(&args)
                .current_dir(&root))
            .context("python3 is needed to run the corpus builder")
        }
        Task::Bench {
            command: BenchTask::Forward { backend, args },
        } => run_bench(&root, "forward", &backend, &args),
        Task::Bench {
            command: BenchTask::Step { backend, args },
        } => run_bench(&root, "step", &backend, &args),
    }
}
