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
    /// Train every run of an experiment TOML: builds `fadlora` in release with the backend the
    /// experiment names and runs `fadlora sweep` (`--plan`, `--jobs N`, `--results DIR`, ...).
    /// `--plan`, `--status` and `--plan --slurm` build only the CPU binary, which can plan any
    /// experiment; `--slurm` builds the backend's binary, which the SLURM tasks run.
    Sweep {
        /// The experiment TOML, e.g. experiments/quickstart.toml.
        experiment: PathBuf,
        /// Backend to build and train with, instead of the TOML's `base.backend`.
        #[arg(long)]
        backend: Option<String>,
        /// List the runs and their state without training.
        #[arg(long)]
        plan: bool,
        /// Runs trained at once (CPU backend only).
        #[arg(long)]
        jobs: Option<usize>,
        /// Results directory (default: results/ at the workspace root).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Submit the unfinished runs to SLURM as a job array (with --plan: print the script).
        #[arg(long)]
        slurm: bool,
        /// Show each run as pending, running, finished or failed.
        #[arg(long)]
        status: bool,
        /// Further `fadlora sweep` options, e.g. `-- --partition gpu --time 24:00:00`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Tables and figures for finished sweeps: runs `fadlora report` (release build).
    Report {
        /// Experiment names under the results directory (all when left out).
        experiments: Vec<String>,
        /// Results directory (default: results/ at the workspace root).
        #[arg(long)]
        results: Option<PathBuf>,
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
        /// Backend to benchmark (default flex); selects the cargo feature the binary is built
        /// with. Like `--torch`, it may come anywhere among the arguments.
        #[arg(long)]
        backend: Option<String>,
        /// Also run tools/bench/torch_forward.py with this Python (torch + transformers
        /// installed) on the same arguments, and print both results with their ratio.
        #[arg(long, value_name = "PYTHON")]
        torch: Option<PathBuf>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// One training step; arguments go to `fadlora bench step`.
    Step {
        /// Backend to benchmark (default flex); selects the cargo feature the binary is built
        /// with. Like `--torch`, it may come anywhere among the arguments.
        #[arg(long)]
        backend: Option<String>,
        /// Also run tools/bench/torch_step.py with this Python (torch + transformers + peft
        /// installed) on the same arguments, and print both results with their ratio.
        #[arg(long, value_name = "PYTHON")]
        torch: Option<PathBuf>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `fadlora detect` throughput against `eval` of the same model on the same files;
    /// arguments go to `fadlora bench detect` (`--checkpoint RUN --dataset SPEC [--split S]`).
    Detect {
        /// Backend to benchmark (default flex); selects the cargo feature the binary is built
        /// with.
        #[arg(long)]
        backend: Option<String>,
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

/// Builds `fadlora` in release with only the benchmarked backend compiled in and runs
/// `fadlora bench <which>`; with `torch`, runs the PyTorch twin of the benchmark right after,
/// on the same machine and arguments, and reports the ratio of the medians.
/// Removes every `--name VALUE` and `--name=VALUE` from `args` and returns the last value:
/// options of xtask's own that clap left among the trailing arguments, because they came after
/// the first argument meant for `fadlora`.
fn take_option(args: &mut Vec<String>, name: &str) -> Result<Option<String>> {
    let mut value = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut iter = std::mem::take(args).into_iter();
    while let Some(arg) = iter.next() {
        if arg == name {
            value = Some(
                iter.next()
                    .with_context(|| format!("{name} needs a value"))?,
            );
        } else if let Some(v) = arg.strip_prefix(&format!("{name}=")) {
            value = Some(v.to_string());
        } else {
            rest.push(arg);
        }
    }
    *args = rest;
    Ok(value)
}

fn bench(
    root: &Path,
    which: &str,
    backend: Option<String>,
    torch: Option<PathBuf>,
    mut args: Vec<String>,
) -> Result<()> {
    let backend = take_option(&mut args, "--backend")?
        .or(backend)
        .unwrap_or_else(|| "flex".into());
    let torch = take_option(&mut args, "--torch")?
        .map(PathBuf::from)
        .or(torch);
    if torch.is_some() && !root.join(format!("tools/bench/torch_{which}.py")).is_file() {
        bail!("`bench {which}` has no PyTorch twin (--torch)");
    }
    let (backend, torch, args) = (backend.as_str(), torch.as_deref(), &args[..]);
    let feature = feature_for_backend(backend)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ours = capture_json(
        Command::new(cargo)
            .current_dir(root)
            .args(["run", "--quiet", "--release", "-p", "fadlora-cli"])
            .args(["--no-default-features", "--features", feature, "--"])
            .args(["bench", which, "--backend", backend])
            .args(args),
    )?;
    let Some(python) = torch else {
        println!("{ours}");
        return Ok(());
    };
    let script = root.join(format!("tools/bench/torch_{which}.py"));
    let mut twin = Command::new(python);
    twin.arg(&script);
    if backend == "flex" {
        // As many threads as fadlora's rayon pool.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        twin.args(["--device", "cpu", "--threads", &threads.to_string()]);
    } else {
        // cubecl runs f32 matmuls on TF32 tensor cores: the same-precision twin must too.
        twin.args(["--device", "cuda", "--tf32"]);
    }
    let theirs = capture_json(twin.args(args))?;
    let median_key = if which == "step" {
        "step_ms_median"
    } else {
        "median_ms"
    };
    let median = |v: &serde_json::Value| v[median_key].as_f64();
    let ratio = match (median(&ours), median(&theirs)) {
        (Some(a), Some(b)) if b > 0.0 => serde_json::json!(a / b),
        _ => bail!("both benchmarks must report `{median_key}`"),
    };
    let combined = serde_json::json!({
        "fadlora": ours,
        "pytorch": theirs,
        "median_ratio_fadlora_over_pytorch": ratio,
    });
    println!("{}", serde_json::to_string_pretty(&combined)?);
    Ok(())
}

/// Runs a benchmark command that prints one JSON object on stdout and parses it.
fn capture_json(command: &mut Command) -> Result<serde_json::Value> {
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} exited with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'))
        .with_context(|| format!("{command:?} printed no JSON object:\n{stdout}"))?;
    serde_json::from_str(json).with_context(|| format!("{command:?} printed invalid JSON"))
}

/// `cargo run --release -p fadlora-cli` with only `feature` compiled in, from the workspace root
/// (so `results/` lands there), with `args` after `--`.
fn fadlora(root: &Path, feature: &str, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(root)
        // Not --quiet: the first release build takes minutes and should show its progress.
        .args(["run", "--release", "-p", "fadlora-cli"])
        .args(["--no-default-features", "--features", feature, "--"])
        .args(args))
}

/// The backend an experiment TOML trains on (`base.backend`; flex when absent or when the
/// file does not parse, which `fadlora sweep` then reports with its line).
fn experiment_backend(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let backend = toml::from_str::<toml::Table>(&text).ok().and_then(|value| {
        value
            .get("base")
            .and_then(|b| b.get("backend"))
            .and_then(|b| b.as_str())
            .map(String::from)
    });
    Ok(backend.unwrap_or_else(|| "flex".into()))
}

struct SweepTask {
    experiment: PathBuf,
    backend: Option<String>,
    plan: bool,
    jobs: Option<usize>,
    results: Option<PathBuf>,
    slurm: bool,
    status: bool,
    extra: Vec<String>,
}

/// The cargo feature of the binary a sweep command needs: listing runs, showing their state and
/// rendering a SLURM script never touch a device, so the CPU build (quick to compile, and
/// shared with `report`) does for them whatever the experiment trains on.
fn sweep_feature(task: &SweepTask, backend: &str) -> Result<&'static str> {
    if task.plan || task.status {
        Ok("flex")
    } else {
        feature_for_backend(backend)
    }
}

fn sweep(root: &Path, task: SweepTask) -> Result<()> {
    // The binary runs from the workspace root; relative paths mean the caller's directory.
    let cwd = std::env::current_dir()?;
    let experiment = cwd.join(&task.experiment);
    let backend = match task.backend.clone() {
        Some(b) => b,
        None => experiment_backend(&experiment)?,
    };
    let feature = sweep_feature(&task, &backend)?;
    let mut args = vec![
        "sweep".to_string(),
        experiment.display().to_string(),
        "--backend".to_string(),
        backend,
    ];
    for (flag, set) in [
        ("--plan", task.plan),
        ("--slurm", task.slurm),
        ("--status", task.status),
    ] {
        if set {
            args.push(flag.into());
        }
    }
    if let Some(jobs) = task.jobs {
        args.extend(["--jobs".into(), jobs.to_string()]);
    }
    if let Some(results) = task.results {
        args.extend(["--results".into(), cwd.join(results).display().to_string()]);
    }
    args.extend(task.extra);
    fadlora(root, feature, &args)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Task::Sweep {
            experiment,
            backend,
            plan,
            jobs,
            results,
            slurm,
            status,
            extra,
        } => sweep(
            &root,
            SweepTask {
                experiment,
                backend,
                plan,
                jobs,
                results,
                slurm,
                status,
                extra,
            },
        ),
        Task::Report {
            experiments,
            results,
        } => {
            let mut args = vec!["report".to_string()];
            args.extend(experiments);
            if let Some(results) = results {
                let results = std::env::current_dir()?.join(results);
                args.extend(["--results".into(), results.display().to_string()]);
            }
            fadlora(&root, "flex", &args)
        }
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
            command:
                BenchTask::Forward {
                    backend,
                    torch,
                    args,
                },
        } => bench(&root, "forward", backend, torch, args),
        Task::Bench {
            command:
                BenchTask::Step {
                    backend,
                    torch,
                    args,
                },
        } => bench(&root, "step", backend, torch, args),
        Task::Bench {
            command: BenchTask::Detect { backend, args },
        } => bench(&root, "detect", backend, None, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planning_and_status_build_the_cpu_binary_whatever_the_backend() {
        let task = |plan, slurm, status| SweepTask {
            experiment: PathBuf::from("x.toml"),
            backend: None,
            plan,
            jobs: None,
            results: None,
            slurm,
            status,
            extra: Vec::new(),
        };
        assert_eq!(
            sweep_feature(&task(true, false, false), "cuda").unwrap(),
            "flex"
        );
        assert_eq!(
            sweep_feature(&task(true, true, false), "cuda").unwrap(),
            "flex"
        );
        assert_eq!(
            sweep_feature(&task(false, false, true), "wgpu").unwrap(),
            "flex"
        );
        assert_eq!(
            sweep_feature(&task(false, true, false), "cuda").unwrap(),
            "cuda"
        );
        assert_eq!(
            sweep_feature(&task(false, false, false), "cuda").unwrap(),
            "cuda"
        );
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_options_are_taken_from_anywhere_among_the_forwarded_arguments() {
        let mut args = strings(&["--preset", "tiny", "--backend", "wgpu", "--batch=2"]);
        assert_eq!(
            take_option(&mut args, "--backend").unwrap().as_deref(),
            Some("wgpu")
        );
        assert_eq!(args, strings(&["--preset", "tiny", "--batch=2"]));
        let mut args = strings(&["--torch=/usr/bin/python3", "--iters", "3"]);
        assert_eq!(
            take_option(&mut args, "--torch").unwrap().as_deref(),
            Some("/usr/bin/python3")
        );
        assert_eq!(args, strings(&["--iters", "3"]));
        assert!(take_option(&mut strings(&["--backend"]), "--backend").is_err());
        let mut untouched = strings(&["--backend-x", "1"]);
        assert_eq!(take_option(&mut untouched, "--backend").unwrap(), None);
        assert_eq!(untouched, strings(&["--backend-x", "1"]));
    }
}
