//! `fadlora sweep` and `fadlora report`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fadlora_run::layout::PLAN_FILE;
use fadlora_sweep::runner::format_duration;
use fadlora_sweep::slurm::{
    self, SchedulerView, SlurmSection, Submissions, SubmitOptions, SubmitOutcome,
};
use fadlora_sweep::status::{run_statuses, tally, RunStatus};
use fadlora_sweep::{run_sweep, Experiment, Mode, Plan, RunState, SweepEvent, SweepOptions};
use fadlora_train::{BackendKind, Compiled};

#[derive(Args)]
pub struct SweepArgs {
    /// The experiment TOML (`experiments/README.md` documents it).
    experiment: PathBuf,
    /// List the runs and their state without running anything.
    #[arg(long)]
    plan: bool,
    /// Runs trained at once (CPU backend only; each gets an equal share of the cores).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Where experiment folders go: `<results>/<experiment name>/<run id>/`.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Train on this backend instead of the TOML's `base.backend` (a different backend makes
    /// different runs, with their own IDs).
    #[arg(long)]
    backend: Option<BackendKind>,
    /// Submit the unfinished runs to SLURM as one job array instead of training here (with
    /// `--plan`: print the sbatch script without submitting). Options come from the TOML's
    /// `[slurm]` table and the flags below.
    #[arg(long)]
    slurm: bool,
    /// Show each run as pending, running, finished or failed (from the results folder, and
    /// from squeue/sacct where available), without running anything.
    #[arg(long, conflicts_with_all = ["plan", "slurm"])]
    status: bool,
    #[command(flatten)]
    slurm_flags: SlurmFlags,
}

/// Overrides of the experiment's `[slurm]` table.
#[derive(Args)]
#[command(next_help_heading = "SLURM (with --slurm)")]
struct SlurmFlags {
    #[arg(long)]
    partition: Option<String>,
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    qos: Option<String>,
    /// GPUs per task (default 1 for cuda and wgpu runs, 0 for flex).
    #[arg(long)]
    gpus_per_task: Option<u32>,
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Memory per task, e.g. 64G.
    #[arg(long)]
    mem: Option<String>,
    /// Time limit per task, e.g. 24:00:00 (a task that runs out resumes when resubmitted).
    #[arg(long)]
    time: Option<String>,
    /// At most this many tasks at once (`--array=...%N`).
    #[arg(long)]
    throttle: Option<u32>,
    #[arg(long)]
    job_name: Option<String>,
    /// An extra `#SBATCH` option, e.g. `--sbatch=--constraint=a100` (repeatable).
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// A shell line the tasks run before training, e.g. `--setup 'module load cuda'` (repeatable).
    #[arg(long = "setup", value_name = "LINE", allow_hyphen_values = true)]
    setup: Vec<String>,
    /// The fadlora binary the tasks run (default: this one); it must have the runs' backend
    /// compiled in. It is copied into the results folder when submitted.
    #[arg(long)]
    trainer: Option<PathBuf>,
}

impl SlurmFlags {
    fn section(&self) -> SlurmSection {
        SlurmSection {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            gpus_per_task: self.gpus_per_task,
            cpus_per_task: self.cpus_per_task,
            mem: self.mem.clone(),
            time: self.time.clone(),
            throttle: self.throttle,
            job_name: self.job_name.clone(),
            sbatch: self.sbatch.clone(),
            setup: self.setup.clone(),
        }
    }
}

pub fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let mut experiment = Experiment::load(&args.experiment, fadlora_train::config::MODEL_RULES)?;
    if let Some(backend) = args.backend {
        experiment.base.backend = backend;
    }
    let plan = experiment.plan(&args.results)?;
    if args.status {
        return status(&plan);
    }
    if args.slurm {
        return submit_to_slurm(&experiment, &plan, &args);
    }
    if args.plan {
        print_plan(&plan);
        let stray = plan.stray_run_dirs();
        if !stray.is_empty() {
            println!(
                "\n{} run folder(s) in {} are not in this plan (an earlier version of the TOML); they are kept and left out of the summary.",
                stray.len(),
                plan.dir.display()
            );
        }
        if let Err(err) = experiment.check_inputs(&plan) {
            println!("\nnot ready to run: {err}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    experiment.check_inputs(&plan)?;
    let backend = experiment.base.backend;
    backend.ensure_compiled()?;
    if args.jobs > 1 && backend != BackendKind::Flex {
        bail!(
            "--jobs {} needs the flex (CPU) backend: runs on one {} device go one after another",
            args.jobs,
            backend.as_str()
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = SweepOptions {
        trainer: std::env::current_exe().context("locating the fadlora binary")?,
        jobs: args.jobs.max(1),
        threads_per_job: (args.jobs > 1).then(|| (cores / args.jobs).max(1)),
    };
    let total = plan.runs.len();
    println!(
        "{}: {} run(s) in {} ({} job(s) at once, {} backend)",
        plan.experiment,
        total,
        plan.dir.display(),
        options.jobs,
        backend.as_str()
    );
    let started = Instant::now();
    let mut summary_error = None;
    let outcome = run_sweep(&plan, &options, |event| match event {
        SweepEvent::Skipped { index, run } => {
            println!(
                "[{}/{total}] {} finished earlier: skipped",
                index + 1,
                run.id
            );
        }
        SweepEvent::Started {
            index,
            run,
            resuming_after,
        } => match resuming_after {
            Some(epochs) => println!(
                "[{}/{total}] {} resuming after epoch {epochs}",
                index + 1,
                run.id
            ),
            None => println!("[{}/{total}] {} started", index + 1, run.id),
        },
        SweepEvent::Finished {
            index,
            run,
            record,
            seconds,
        } => {
            let eval = record
                .eval
                .as_ref()
                .map(|e| format!(", eval EER {:.3}%", e.eer_percent))
                .unwrap_or_default();
            println!(
                "[{}/{total}] {} finished in {}: dev EER {:.3}%{eval}; {} trainable [{}]",
                index + 1,
                run.id,
                format_duration(std::time::Duration::from_secs_f64(seconds)),
                record.dev.eer_percent,
                record.params.trainable,
                format_duration(started.elapsed()),
            );
            // The summary is rebuilt from the records on disk, so it holds every finished run
            // once, whatever happened to earlier sweeps.
            if let Err(err) = fadlora_report::write_summary(&plan) {
                summary_error = Some(err);
            }
        }
        SweepEvent::Failed {
            index,
            run,
            reason,
            log_tail,
        } => {
            println!("[{}/{total}] {} FAILED: {reason}", index + 1, run.id);
            for line in log_tail.lines() {
                println!("    | {line}");
            }
        }
    })?;
    let summary = fadlora_report::write_summary(&plan)?;
    if let Some(err) = summary_error {
        eprintln!("warning: the summary could not be updated during the sweep: {err}");
    }
    println!(
        "\n{} run(s) trained, {} skipped as finished, {} failed, in {}; summary: {}",
        outcome.finished,
        outcome.skipped,
        outcome.failed.len(),
        format_duration(started.elapsed()),
        summary.display()
    );
    if !outcome.failed.is_empty() {
        bail!(
            "{} run(s) failed ({}); their train.log says why. Run the sweep again to retry them: finished runs are kept.",
            outcome.failed.len(),
            outcome.failed.join(", ")
        );
    }
    println!("next: fadlora report {}", plan.experiment);
    Ok(ExitCode::SUCCESS)
}

/// `--status`: one line per run, and the log tail of each failed one.
fn status(plan: &Plan) -> Result<ExitCode> {
    let submissions = Submissions::load(&plan.dir)?;
    let scheduler = SchedulerView::query(&submissions.job_ids());
    let statuses = run_statuses(plan, &submissions, &scheduler);
    print_statuses(plan, &statuses);
    if !scheduler.has_queue() && !submissions.submissions.is_empty() {
        println!("(squeue does not answer on this machine: queued and ended SLURM tasks cannot be told apart)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_statuses(plan: &Plan, statuses: &[RunStatus]) {
    println!(
        "{}: {} run(s) in {}",
        plan.experiment,
        plan.runs.len(),
        plan.dir.display()
    );
    let width = plan.runs.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for (run, status) in plan.runs.iter().zip(statuses) {
        println!("  {:<width$}  {}", run.id, status.describe());
        if let RunStatus::Failed { log_tail, .. } = status {
            for line in log_tail.lines() {
                println!("  {:<width$}    | {line}", "");
            }
        }
    }
    let counts = tally(statuses);
    let count = |label| counts.get(label).copied().unwrap_or(0);
    println!(
        "{} finished, {} running, {} pending, {} failed",
        count("finished"),
        count("running"),
        count("pending"),
        count("failed")
    );
}

/// `--slurm` (and `--plan --slurm`).
fn submit_to_slurm(experiment: &Experiment, plan: &Plan, args: &SweepArgs) -> Result<ExitCode> {
    let slurm = experiment
        .slurm
        .clone()
        .overridden_by(args.slurm_flags.section());
    if let Err((key, message)) = slurm.check() {
        bail!("--{}: {message}", key.replace('_', "-"));
    }
    let backend = experiment.base.backend;
    let trainer = match &args.slurm_flags.trainer {
        Some(path) => path.clone(),
        None => {
            // Planning needs no backend; the tasks do.
            if !args.plan {
                backend.ensure_compiled().context(
                    "the SLURM tasks would run this binary: build it with the runs' backend, or name one with --trainer",
                )?;
            }
            std::env::current_exe().context("locating the fadlora binary")?
        }
    };
    if !args.plan {
        experiment.check_inputs(plan)?;
    }
    let options = SubmitOptions {
        slurm,
        trainer,
        gpu_backend: backend != BackendKind::Flex,
        dry_run: args.plan,
    };
    match slurm::submit(plan, &options)? {
        SubmitOutcome::NothingToSubmit { statuses } => {
            print_statuses(plan, &statuses);
            println!("nothing to submit: every run is finished, queued or running");
        }
        SubmitOutcome::Script { script, runs, .. } => {
            println!(
                "# --plan --slurm: {} run(s) would be submitted; nothing was written or submitted\n",
                runs.len()
            );
            print!("{script}");
        }
        SubmitOutcome::Submitted {
            job_id,
            script_path,
            runs,
            statuses,
        } => {
            let skipped = statuses.iter().filter(|s| !s.needs_training()).count();
            println!(
                "{}: submitted {} run(s) as SLURM job array {job_id} ({}); {skipped} finished, queued or running run(s) left alone",
                plan.experiment,
                runs.len(),
                script_path.display()
            );
            println!("job id: {job_id}");
            println!(
                "next: fadlora sweep {} --status   (then: fadlora report {})",
                experiment.source.display(),
                plan.experiment
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &Plan) {
    println!(
        "{}: {} run(s) -> {}",
        plan.experiment,
        plan.runs.len(),
        plan.dir.display()
    );
    if !plan.description.is_empty() {
        println!("{}", plan.description);
    }
    let rows: Vec<[String; 9]> = plan
        .runs
        .iter()
        .map(|run| {
            let a = &run.axes;
            let state = match plan.state(run) {
                RunState::Pending => "pending".to_string(),
                RunState::Partial { epochs_done } => format!("partial ({epochs_done} epochs)"),
                RunState::Finished => "finished".to_string(),
            };
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            [
                run.id.clone(),
                if a.dora {
                    "dora".to_string()
                } else if a.experts.is_some() {
                    "moe-lora".to_string()
                } else {
                    a.mode.to_string()
                },
                a.targets_label(),
                opt(a.rank.map(|r| r.to_string())),
                opt(a.alpha.map(|v| format!("{v}"))),
                a.layers_label(),
                a.crop_samples.to_string(),
                a.seed.to_string(),
                state,
            ]
        })
        .collect();
    let header = [
        "run id", "mode", "targets", "rank", "alpha", "layers", "samples", "seed", "state",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    let count = |mode: Mode| plan.runs.iter().filter(|r| r.axes.mode == mode).count();
    let dora = plan.runs.iter().filter(|r| r.axes.dora).count();
    let moe = plan
        .runs
        .iter()
        .filter(|r| r.axes.experts.is_some())
        .count();
    let mut totals = format!(
        "{} LoRA run(s), {} full fine-tuning run(s)",
        count(Mode::Lora) - dora - moe,
        count(Mode::Full)
    );
    // Experiments without the other methods print what they always printed.
    for (n, what) in [
        (count(Mode::Probe), "probe"),
        (dora, "DoRA"),
        (moe, "MoE-LoRA"),
        (count(Mode::Ia3), "(IA)^3"),
        (count(Mode::Adapter), "adapter"),
        (count(Mode::Partial), "partial"),
        (count(Mode::LayerSum), "layer-sum"),
        (count(Mode::Frozen), "SLS (frozen front end)"),
    ] {
        if n > 0 {
            totals.push_str(&format!(", {n} {what} run(s)"));
        }
    }
    println!("{totals}");
    if !plan.published.is_empty() {
        println!("published figures the report sets beside the measured ones:");
        for f in &plan.published {
            println!(
                "  {} {} = {} ({})",
                f.group,
                f.metric.as_str(),
                f.value,
                f.source
            );
        }
    }
}

#[derive(Args)]
pub struct ReportArgs {
    /// Experiment names (folders of the results directory); all of them when left out.
    experiments: Vec<String>,
    /// The results directory the sweeps wrote into.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let names = if args.experiments.is_empty() {
        let entries = std::fs::read_dir(&args.results)
            .with_context(|| format!("reading {}", args.results.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(PLAN_FILE).is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names.is_empty() {
            bail!(
                "no experiment in {}: run `fadlora sweep EXPERIMENT.toml` first",
                args.results.display()
            );
        }
        names
    } else {
        args.experiments.clone()
    };
    for name in &names {
        let dir = args.results.join(name);
        if !dir.join(PLAN_FILE).is_file() {
            bail!(
                "{} has no {PLAN_FILE}: no sweep of an experiment named `{name}` has run there",
                dir.display()
            );
        }
        let files = fadlora_report::write_report(&dir)
            .with_context(|| format!("writing the report of {name}"))?;
        println!(
            "{name}: {} file(s) in {}",
            files.files.len(),
            files.dir.display()
        );
        for note in &files.notes {
            println!("  note: {note}");
        }
        println!("  {}", files.dir.join("report.md").display());
    }
    Ok(ExitCode::SUCCESS)
}
