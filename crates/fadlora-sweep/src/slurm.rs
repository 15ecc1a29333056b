//! A plan's unfinished runs as one SLURM job array: the scheduler does the scheduling.
//!
//! `fadlora sweep EXP --slurm` writes `<results>/<experiment>/slurm/submit-NNN.sbatch`, whose
//! array task `i` runs `fadlora train` on the `i`-th run it lists, into the same run folder a
//! local sweep would use. Nothing else is needed to make that safe: the trainer takes the run's
//! lock ([`fadlora_run::lock`]), resumes from its last checkpoint and writes its record last and
//! atomically. The submissions file says which task trained which run, so `--status` can find a
//! task in the scheduler's queue and a resubmission can leave queued and running runs alone.
//!
//! The binary the tasks run is copied into `slurm/bin/` (named by a hash of its bytes) before
//! submission: a rebuild while the array waits in the queue, possibly with another backend,
//! cannot change what the tasks run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use fadlora_run::layout::{
    LOG_FILE, RUN_CONFIG_FILE, SLURM_DIR, SLURM_EXIT_FILE, SLURM_LOGS_DIR, SLURM_SUBMISSIONS_FILE,
};
use fadlora_run::{write_atomic, Plan, PlannedRun};
use serde::{Deserialize, Serialize};

use crate::runner::{lock_experiment, prepare_run_dir};
use crate::status::{run_statuses, RunStatus};
use crate::SweepError;

/// The `[slurm]` table of an experiment TOML; `fadlora sweep --slurm` flags override each key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// `--partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default)]
    pub qos: Option<String>,
    /// GPUs per task (`--gres=gpu:N`). Default: 1 when the runs train on cuda or wgpu, else 0.
    #[serde(default)]
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`; the trainer uses that many threads on the CPU backend.
    #[serde(default)]
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `"64G"`.
    #[serde(default)]
    pub mem: Option<String>,
    /// `--time`, e.g. `"24:00:00"` or `"2-00:00:00"`. A task that runs out resumes from its
    /// last epoch checkpoint when the run is submitted again.
    #[serde(default)]
    pub time: Option<String>,
    /// At most this many tasks of the array at once (`--array=...%N`).
    #[serde(default)]
    pub throttle: Option<u32>,
    /// `--job-name`; default `fadlora-<experiment>`.
    #[serde(default)]
    pub job_name: Option<String>,
    /// Further `#SBATCH` options, one per entry, e.g. `"--constraint=a100"`.
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before training, e.g. `"module load cuda/12.4"`.
    #[serde(default)]
    pub setup: Vec<String>,
}

impl SlurmSection {
    /// `self` with every key that `flags` sets replaced (lists are appended).
    pub fn overridden_by(mut self, flags: SlurmSection) -> SlurmSection {
        macro_rules! take {
            ($($field:ident),*) => { $( if flags.$field.is_some() { self.$field = flags.$field; } )* };
        }
        take!(
            partition,
            account,
            qos,
            gpus_per_task,
            cpus_per_task,
            mem,
            time,
            throttle,
            job_name
        );
        self.sbatch.extend(flags.sbatch);
        self.setup.extend(flags.setup);
        self
    }

    /// The first key that would make sbatch refuse the script (or the script break), with why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let single_line = |key: &'static str, value: &str| {
            if value.contains(['\n', '\r']) || value.trim().is_empty() {
                Err((key, format!("`{value}` must be one non-empty line")))
            } else {
                Ok(())
            }
        };
        for (key, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("job_name", &self.job_name),
        ] {
            if let Some(v) = value {
                single_line(key, v)?;
                if v.contains(char::is_whitespace) {
                    return Err((key, format!("`{v}` must not contain spaces")));
                }
            }
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err((
                    "mem",
                    format!("`{mem}` is not a SLURM memory size: write e.g. \"64G\" or \"8000M\""),
                ));
            }
        }
        if let Some(time) = &self.time {
            if !is_slurm_time(time) {
                return Err((
                    "time",
                    format!("`{time}` is not a SLURM time limit: write minutes, \"HH:MM:SS\" or \"D-HH:MM:SS\""),
                ));
            }
        }
        if self.throttle == Some(0) {
            return Err((
                "throttle",
                "must be at least 1 (tasks running at once)".into(),
            ));
        }
        if self.cpus_per_task == Some(0) {
            return Err(("cpus_per_task", "must be at least 1".into()));
        }
        for line in &self.sbatch {
            single_line("sbatch", line)?;
            if !line.trim_start().starts_with('-') {
                return Err((
                    "sbatch",
                    format!("`{line}` is not an sbatch option: write it as on the command line, e.g. \"--constraint=a100\""),
                ));
            }
        }
        for line in &self.setup {
            if line.contains(['\n', '\r']) {
                return Err(("setup", "one shell line per entry".into()));
            }
        }
        Ok(())
    }
}

/// `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS` (sbatch's `--time` forms).
fn is_slurm_time(text: &str) -> bool {
    let numbers = |s: &str, max_parts: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max_parts
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    match text.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(text, 3),
    }
}

/// Every submission of an experiment: `slurm/submissions.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Submissions {
    pub submissions: Vec<Submission>,
}

/// One `sbatch` of a job array. Array task `i` trains `runs[i]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub number: usize,
    pub job_id: String,
    /// The script, relative to `slurm/`.
    pub script: String,
    pub runs: Vec<String>,
    /// The frozen binary the tasks run.
    pub trainer: PathBuf,
    pub submitted_unix: u64,
}

impl Submissions {
    pub fn path(plan_dir: &Path) -> PathBuf {
        plan_dir.join(SLURM_DIR).join(SLURM_SUBMISSIONS_FILE)
    }

    /// The submissions so far (none when the experiment was never submitted).
    pub fn load(plan_dir: &Path) -> Result<Submissions, SweepError> {
        let path = Self::path(plan_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SweepError::Corrupt {
                path,
                message: format!("does not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Submissions::default()),
            Err(e) => Err(SweepError::io(&path, e)),
        }
    }

    fn save(&self, plan_dir: &Path) -> Result<(), SweepError> {
        let json = serde_json::to_string_pretty(self).expect("submissions serialise");
        write_atomic(&Self::path(plan_dir), json.as_bytes())?;
        Ok(())
    }

    /// `<job>_<task>` of the latest submission that included `run_id`.
    pub fn last_task_of(&self, run_id: &str) -> Option<String> {
        self.submissions.iter().rev().find_map(|s| {
            s.runs
                .iter()
                .position(|r| r == run_id)
                .map(|i| format!("{}_{i}", s.job_id))
        })
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.submissions.iter().map(|s| s.job_id.clone()).collect()
    }
}

/// Where a task stands in the scheduler's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
}

/// What `squeue` and `sacct` said about an experiment's jobs; either may be unavailable (no
/// SLURM on this machine, or a cluster without accounting).
#[derive(Debug, Clone, Default)]
pub struct SchedulerView {
    queue: Option<HashMap<String, TaskState>>,
    accounting: Option<HashMap<String, (String, String)>>,
}

impl SchedulerView {
    /// Nothing known: status from the results folder alone.
    pub fn unavailable() -> Self {
        SchedulerView::default()
    }

    /// `queue`: `<job>_<task>` -> state; `accounting`: `<job>_<task>` -> (state, exit code).
    pub fn from_parts(
        queue: Option<HashMap<String, TaskState>>,
        accounting: Option<HashMap<String, (String, String)>>,
    ) -> Self {
        SchedulerView { queue, accounting }
    }

    /// Asks `squeue` (this user's jobs) and `sacct` (the given jobs) on this machine.
    pub fn query(job_ids: &[String]) -> Self {
        let queue = command_lines(Command::new("squeue").args([
            "--me",
            "--noheader",
            "--array",
            "--format=%i|%T",
        ]))
        .map(|lines| parse_squeue(&lines));
        let accounting = if job_ids.is_empty() {
            None
        } else {
            command_lines(Command::new("sacct").args([
                "--noheader",
                "--parsable2",
                "--format=JobID,State,ExitCode",
                &format!("--jobs={}", job_ids.join(",")),
            ]))
            .map(|lines| parse_sacct(&lines))
        };
        SchedulerView { queue, accounting }
    }

    pub fn has_queue(&self) -> bool {
        self.queue.is_some()
    }

    pub fn queue_state(&self, task: &str) -> Option<TaskState> {
        self.queue.as_ref()?.get(task).copied()
    }

    /// `(state, exit code)` of a task that ended, from accounting.
    pub fn accounting(&self, task: &str) -> Option<(String, String)> {
        self.accounting.as_ref()?.get(task).cloned()
    }
}

/// The lines a command printed, or `None` when it is missing or failed.
fn command_lines(command: &mut Command) -> Option<Vec<String>> {
    let output = command.output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// `12_3|PENDING` lines; a task the scheduler has ended is absent.
pub fn parse_squeue(lines: &[String]) -> HashMap<String, TaskState> {
    lines
        .iter()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            let state = match state {
                "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED"
                | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => TaskState::Queued,
                "RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING"
                | "RESIZING" => TaskState::Running,
                _ => return None,
            };
            Some((id.to_string(), state))
        })
        .collect()
}

/// `12_3|TIMEOUT|0:0` lines of whole tasks (not their `.batch` or `.0` steps).
pub fn parse_sacct(lines: &[String]) -> HashMap<String, (String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let mut fields = line.trim().split('|');
            let (id, state, exit) = (fields.next()?, fields.next()?, fields.next()?);
            if id.contains('.') {
                return None;
            }
            // `CANCELLED by 1000` -> `CANCELLED`
            let state = state.split_whitespace().next().unwrap_or(state);
            Some((id.to_string(), (state.to_string(), exit.to_string())))
        })
        .collect()
}

/// What `--slurm` is to do, after the flags.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub slurm: SlurmSection,
    /// The `fadlora` binary the tasks run (frozen into `slurm/bin/` on submission).
    pub trainer: PathBuf,
    /// Whether the runs need a GPU (the default of `gpus_per_task`).
    pub gpu_backend: bool,
    /// Only render the script (`--plan --slurm`): nothing is written or submitted.
    pub dry_run: bool,
}

#[derive(Debug)]
pub enum SubmitOutcome {
    /// Every run is finished, queued or running.
    NothingToSubmit { statuses: Vec<RunStatus> },
    /// `--plan --slurm`: the script a submission would use.
    Script {
        script: String,
        runs: Vec<String>,
        statuses: Vec<RunStatus>,
    },
    Submitted {
        job_id: String,
        script_path: PathBuf,
        runs: Vec<String>,
        statuses: Vec<RunStatus>,
    },
}

/// Submits the runs of `plan` that need training (never trained, failed, or interrupted and not
/// queued or running) as one job array.
pub fn submit(plan: &Plan, options: &SubmitOptions) -> Result<SubmitOutcome, SweepError> {
    // Two submissions at once would each see the other's runs as unsubmitted.
    let _lock = if options.dry_run {
        None
    } else {
        std::fs::create_dir_all(&plan.dir).map_err(|e| SweepError::io(&plan.dir, e))?;
        Some(lock_experiment(&plan.dir)?)
    };
    let submissions = Submissions::load(&plan.dir)?;
    let scheduler = SchedulerView::query(&submissions.job_ids());
    if !options.dry_run && !scheduler.has_queue() {
        return Err(SweepError::Invalid(
            "`squeue` does not answer on this machine: --slurm submits from a machine of the cluster (its login node) with the SLURM commands on PATH".into(),
        ));
    }
    let statuses = run_statuses(plan, &submissions, &scheduler);
    let runs: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| s.needs_training())
        .map(|(r, _)| r)
        .collect();
    if runs.is_empty() {
        return Ok(SubmitOutcome::NothingToSubmit { statuses });
    }
    let run_ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let number = submissions.submissions.len() + 1;
    let trainer = if options.dry_run {
        frozen_trainer_path(&plan.dir, &options.trainer)?
    } else {
        freeze_trainer(&plan.dir, &options.trainer)?
    };
    let script = sbatch_script(plan, &runs, options, &trainer, number);
    if options.dry_run {
        return Ok(SubmitOutcome::Script {
            script,
            runs: run_ids,
            statuses,
        });
    }

    fadlora_run::fs::remove_stale_temporaries(&plan.dir);
    plan.save()?;
    for run in &runs {
        prepare_run_dir(plan, run)?;
    }
    let slurm_dir = plan.dir.join(SLURM_DIR);
    let logs = slurm_dir.join(SLURM_LOGS_DIR);
    std::fs::create_dir_all(&logs).map_err(|e| SweepError::io(&logs, e))?;
    let script_name = format!("submit-{number:03}.sbatch");
    let script_path = slurm_dir.join(&script_name);
    write_atomic(&script_path, script.as_bytes())?;
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script_path)
        .output()
        .map_err(|e| SweepError::Invalid(format!("cannot run sbatch: {e}")))?;
    if !output.status.success() {
        return Err(SweepError::Invalid(format!(
            "sbatch refused {}: {}",
            script_path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // `--parsable` prints `<job id>` or `<job id>;<cluster>`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let job_id = stdout
        .trim()
        .split(';')
        .next()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            SweepError::Invalid(format!(
                "sbatch printed no job ID for {}: `{}`",
                script_path.display(),
                stdout.trim()
            ))
        })?
        .to_string();
    let mut submissions = submissions;
    submissions.submissions.push(Submission {
        number,
        job_id: job_id.clone(),
        script: script_name,
        runs: run_ids.clone(),
        trainer,
        submitted_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    // sbatch has accepted the array: losing this file now would lose which task trains what,
    // so a failure to write it is reported with the job ID.
    submissions.save(&plan.dir).map_err(|e| {
        SweepError::Invalid(format!(
            "job {job_id} was submitted but {} could not be written: {e}",
            Submissions::path(&plan.dir).display()
        ))
    })?;
    Ok(SubmitOutcome::Submitted {
        job_id,
        script_path,
        runs: run_ids,
        statuses,
    })
}

/// The batch script of one submission: array task `i` trains `runs[i]`.
pub fn sbatch_script(
    plan: &Plan,
    runs: &[&PlannedRun],
    options: &SubmitOptions,
    trainer: &Path,
    number: usize,
) -> String {
    let s = &options.slurm;
    let logs = plan.dir.join(SLURM_DIR).join(SLURM_LOGS_DIR);
    let mut out = String::new();
    let mut sbatch = |option: String| {
        let _ = writeln!(out, "#SBATCH {option}");
    };
    let mut lines = Vec::new();
    let job_name = s
        .job_name
        .clone()
        .unwrap_or_else(|| format!("fadlora-{}", plan.experiment));
    lines.push(format!("--job-name={job_name}"));
    let throttle = s.throttle.map(|n| format!("%{n}")).unwrap_or_default();
    lines.push(format!(
        "--array=0-{}{throttle}",
        runs.len().saturating_sub(1)
    ));
    lines.push(format!("--output={}/%A_%a.out", logs.display()));
    if let Ok(cwd) = std::env::current_dir() {
        lines.push(format!("--chdir={}", cwd.display()));
    }
    for (flag, value) in [
        ("partition", &s.partition),
        ("account", &s.account),
        ("qos", &s.qos),
        ("mem", &s.mem),
        ("time", &s.time),
    ] {
        if let Some(v) = value {
            lines.push(format!("--{flag}={v}"));
        }
    }
    if let Some(cpus) = s.cpus_per_task {
        lines.push(format!("--cpus-per-task={cpus}"));
    }
    let gpus = s
        .gpus_per_task
        .unwrap_or(if options.gpu_backend { 1 } else { 0 });
    if gpus > 0 {
        lines.push(format!("--gres=gpu:{gpus}"));
    }
    lines.extend(s.sbatch.iter().map(|l| l.trim().to_string()));

    let header = format!(
        "#!/bin/bash\n\
         # fadlora sweep --slurm: experiment `{}`, submission {number}, {} run(s).\n\
         # Array task i trains runs[i] with `fadlora train` into the run folder\n\
         #   {}/<run id>/\n\
         # as a local sweep would: the trainer's run lock, epoch checkpoints and atomic record\n\
         # make a task that is resubmitted (after a failure, a time limit or scancel) resume\n\
         # where it stopped.\n",
        plan.experiment,
        runs.len(),
        plan.dir.display()
    );
    let mut script = header;
    for line in lines {
        sbatch(line);
    }
    script.push_str(&out);
    script.push_str("\nset -uo pipefail\n");
    if !s.setup.is_empty() {
        script.push_str("\n# setup (from [slurm] setup)\n");
        for line in &s.setup {
            script.push_str(line);
            script.push('\n');
        }
    }
    let _ = write!(
        script,
        "\nexperiment_dir={}\nfadlora={}\nruns=(\n",
        sh_quote(&plan.dir.display().to_string()),
        sh_quote(&trainer.display().to_string())
    );
    for run in runs {
        let _ = writeln!(script, "    {}", sh_quote(&run.id));
    }
    let _ = write!(
        script,
        r#")

run_id=${{runs[$SLURM_ARRAY_TASK_ID]}}
run_dir="$experiment_dir/$run_id"
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
# The CPU backend uses as many threads as the task was given cores.
if [ -n "${{SLURM_CPUS_PER_TASK:-}}" ]; then export RAYON_NUM_THREADS="$SLURM_CPUS_PER_TASK"; fi

echo "== SLURM task $task on $(hostname) at $(date -Is): $fadlora train --config $run_dir/{config}" >> "$run_dir/{log}"
"$fadlora" train --config "$run_dir/{config}" --no-progress >> "$run_dir/{log}" 2>&1
code=$?
# How this task ended, for `fadlora sweep --status` (a task killed by SLURM writes nothing).
printf '%s %s\n' "$task" "$code" > "$run_dir/.{exit}.tmp" && mv -f "$run_dir/.{exit}.tmp" "$run_dir/{exit}"
exit "$code"
"#,
        config = RUN_CONFIG_FILE,
        log = LOG_FILE,
        exit = SLURM_EXIT_FILE,
    );
    script
}

/// `'text'` for a POSIX shell, whatever the text holds.
fn sh_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@%".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `slurm/bin/fadlora-<hash of the binary's bytes>`.
fn frozen_trainer_path(plan_dir: &Path, trainer: &Path) -> Result<PathBuf, SweepError> {
    let bytes = std::fs::read(trainer).map_err(|e| SweepError::io(trainer, e))?;
    // FNV-1a: stable across builds of this tool, unlike std's hasher.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Ok(plan_dir
        .join(SLURM_DIR)
        .join("bin")
        .join(format!("fadlora-{hash:016x}")))
}

fn freeze_trainer(plan_dir: &Path, trainer: &Path) -> Result<PathBuf, SweepError> {
    let frozen = frozen_trainer_path(plan_dir, trainer)?;
    if !frozen.is_file() {
        let dir = frozen.parent().expect("frozen binaries live in slurm/bin");
        std::fs::create_dir_all(dir).map_err(|e| SweepError::io(dir, e))?;
        let bytes = std::fs::read(trainer).map_err(|e| SweepError::io(trainer, e))?;
        write_atomic(&frozen, &bytes)?;
        set_executable(&frozen)?;
    }
    Ok(frozen)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<(), SweepError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| SweepError::io(path, e))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<(), SweepError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_in_every_sbatch_form_are_accepted_and_others_refused() {
        for ok in ["30", "30:00", "24:00:00", "2-00", "2-12:00", "2-12:00:00"] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in ["", "1h", "24:00:00:00", "2-", "-1", "1:2:3:4", "a-10"] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_table_and_extend_its_lists() {
        let table = SlurmSection {
            partition: Some("gpu".into()),
            time: Some("10:00".into()),
            sbatch: vec!["--constraint=a100".into()],
            ..Default::default()
        };
        let flags = SlurmSection {
            time: Some("2:00:00".into()),
            sbatch: vec!["--exclusive".into()],
            ..Default::default()
        };
        let merged = table.overridden_by(flags);
        assert_eq!(merged.partition.as_deref(), Some("gpu"));
        assert_eq!(merged.time.as_deref(), Some("2:00:00"));
        assert_eq!(merged.sbatch, ["--constraint=a100", "--exclusive"]);
    }

    #[test]
    fn bad_keys_are_named() {
        let bad = |s: SlurmSection| s.check().unwrap_err().0;
        let mem = SlurmSection {
            mem: Some("lots".into()),
            ..Default::default()
        };
        assert_eq!(bad(mem), "mem");
        let line = SlurmSection {
            sbatch: vec!["constraint=a100".into()],
            ..Default::default()
        };
        assert_eq!(bad(line), "sbatch");
        let throttle = SlurmSection {
            throttle: Some(0),
            ..Default::default()
        };
        assert_eq!(bad(throttle), "throttle");
        let partition = SlurmSection {
            partition: Some("gpu\n#SBATCH --x".into()),
            ..Default::default()
        };
        assert_eq!(bad(partition), "partition");
    }

    #[test]
    fn squeue_and_sacct_lines_become_task_states() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let queue = parse_squeue(&lines(&["12_0|RUNNING", "12_1|PENDING", "13|COMPLETED"]));
        assert_eq!(queue.get("12_0"), Some(&TaskState::Running));
        assert_eq!(queue.get("12_1"), Some(&TaskState::Queued));
        assert_eq!(queue.get("13"), None);
        let acct = parse_sacct(&lines(&[
            "12_0|TIMEOUT|0:0",
            "12_0.batch|CANCELLED|0:15",
            "12_1|CANCELLED by 1000|0:0",
        ]));
        assert_eq!(acct["12_0"], ("TIMEOUT".into(), "0:0".into()));
        assert_eq!(acct["12_1"].0, "CANCELLED");
        assert_eq!(acct.len(), 2);
    }

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(sh_quote("/a/b-c_1.toml"), "/a/b-c_1.toml");
        assert_eq!(sh_quote("/my results/x"), "'/my results/x'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_latest_submission_of_a_run_names_its_task() {
        let sub = |job: &str, runs: &[&str]| Submission {
            number: 0,
            job_id: job.into(),
            script: String::new(),
            runs: runs.iter().map(|r| r.to_string()).collect(),
            trainer: PathBuf::new(),
            submitted_unix: 0,
        };
        let all = Submissions {
            submissions: vec![sub("10", &["a", "b", "c"]), sub("11", &["c"])],
        };
        assert_eq!(all.last_task_of("b").as_deref(), Some("10_1"));
        assert_eq!(all.last_task_of("c").as_deref(), Some("11_0"));
        assert_eq!(all.last_task_of("d"), None);
    }
}
