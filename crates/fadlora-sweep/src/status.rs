//! What each run of a plan is doing: read from the results folder (records, run locks, SLURM
//! exit files) and, when the SLURM commands are there, from the scheduler's queue and
//! accounting.
//!
//! The folder decides: a run with a record is finished whatever the scheduler says, and a run
//! whose trainer holds a live lock is running. The scheduler only tells what the folder cannot:
//! a task still waiting in the queue, and why a task ended without a record.

use std::collections::HashMap;
use std::path::Path;

use fadlora_run::layout::{LOG_FILE, SLURM_EXIT_FILE};
use fadlora_run::{inspect_lock, LockTiming, Plan, PlannedRun, RunState};

use crate::runner::log_tail;
use crate::slurm::{SchedulerView, Submissions, TaskState};

/// The state of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Finished,
    /// A trainer holds the run's lock (or the scheduler reports its task running and the
    /// trainer has not started yet).
    Running {
        /// `SLURM task 12_3 on node7`, or `pid 4242 on node7` for a trainer outside SLURM.
        by: String,
        epochs_done: usize,
    },
    /// Waiting in the SLURM queue as this array task.
    Queued {
        task: String,
        epochs_done: usize,
    },
    /// Its last SLURM task ended without a record.
    Failed {
        task: String,
        /// `exit code 1`, `TIMEOUT`, or why nothing is known.
        reason: String,
        /// The last lines of the run's `train.log`.
        log_tail: String,
        epochs_done: usize,
    },
    /// Not finished and nobody is at it: the next `--slurm` (or local sweep) trains it,
    /// resuming after `epochs_done` epochs.
    Pending {
        epochs_done: usize,
        /// The task it was last submitted as, when the scheduler cannot say what became of it.
        submitted_as: Option<String>,
    },
}

impl RunStatus {
    /// Whether a new submission should include the run.
    pub fn needs_training(&self) -> bool {
        matches!(self, RunStatus::Failed { .. } | RunStatus::Pending { .. })
    }

    pub fn label(&self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Running { .. } => "running",
            RunStatus::Queued { .. } => "pending",
            RunStatus::Failed { .. } => "failed",
            RunStatus::Pending { .. } => "pending",
        }
    }

    /// One line: the label and what is known beside it.
    pub fn describe(&self) -> String {
        let epochs = |n: usize| {
            if n == 0 {
                String::new()
            } else {
                format!(", {n} epoch(s) checkpointed")
            }
        };
        match self {
            RunStatus::Finished => "finished".into(),
            RunStatus::Running { by, epochs_done } => {
                format!("running ({by}{})", epochs(*epochs_done))
            }
            RunStatus::Queued { task, epochs_done } => {
                format!("pending (queued as SLURM task {task}{})", epochs(*epochs_done))
            }
            RunStatus::Failed {
                task,
                reason,
                epochs_done,
                ..
            } => format!("failed (SLURM task {task}: {reason}{})", epochs(*epochs_done)),
            RunStatus::Pending {
                epochs_done,
                submitted_as,
            } => match submitted_as {
                Some(task) => format!(
                    "pending (submitted as SLURM task {task}, which the scheduler no longer lists; sacct unavailable{})",
                    epochs(*epochs_done)
                ),
                None if *epochs_done > 0 => format!("pending{}", epochs(*epochs_done)),
                None => "pending".into(),
            },
        }
    }
}

/// The status of every run of `plan`, in plan order.
pub fn run_statuses(
    plan: &Plan,
    submissions: &Submissions,
    scheduler: &SchedulerView,
) -> Vec<RunStatus> {
    plan.runs
        .iter()
        .map(|run| run_status(plan, run, submissions, scheduler))
        .collect()
}

fn run_status(
    plan: &Plan,
    run: &PlannedRun,
    submissions: &Submissions,
    scheduler: &SchedulerView,
) -> RunStatus {
    let dir = plan.run_dir(run);
    let epochs_done = match plan.state(run) {
        RunState::Finished => return RunStatus::Finished,
        RunState::Partial { epochs_done } => epochs_done,
        RunState::Pending => 0,
    };
    if let Some(lock) = inspect_lock(&dir, LockTiming::default()) {
        if lock.stale.is_none() {
            let by = match lock.owner {
                Some(owner) => match &owner.slurm_task {
                    Some(task) => format!("SLURM task {task} on {}", owner.host),
                    None => owner.describe(),
                },
                None => "a trainer starting up".into(),
            };
            return RunStatus::Running { by, epochs_done };
        }
    }
    let Some(task) = submissions.last_task_of(&run.id) else {
        return RunStatus::Pending {
            epochs_done,
            submitted_as: None,
        };
    };
    match scheduler.queue_state(&task) {
        Some(TaskState::Queued) => {
            return RunStatus::Queued { task, epochs_done };
        }
        Some(TaskState::Running) => {
            return RunStatus::Running {
                by: format!("SLURM task {task}, starting"),
                epochs_done,
            };
        }
        None => {}
    }
    let failed = |reason: String| RunStatus::Failed {
        reason,
        log_tail: log_tail(&dir.join(LOG_FILE), 10),
        task: task.clone(),
        epochs_done,
    };
    if let Some(code) = recorded_exit(&dir, &task) {
        return failed(if code == 0 {
            "exit code 0 but no record".into()
        } else {
            format!("exit code {code}")
        });
    }
    if let Some((state, exit)) = scheduler.accounting(&task) {
        return failed(format!("{state}, exit code {exit}"));
    }
    if scheduler.has_queue() {
        // Gone from the queue with neither an exit file nor accounting: the batch script was
        // killed before it could write one.
        return failed(
            "ended without an exit status (cancelled, out of time or its node failed)".into(),
        );
    }
    RunStatus::Pending {
        epochs_done,
        submitted_as: Some(task),
    }
}

/// The exit code that the batch script of `task` wrote, if it was the last one to end here.
fn recorded_exit(run_dir: &Path, task: &str) -> Option<i32> {
    let text = std::fs::read_to_string(run_dir.join(SLURM_EXIT_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    (fields.next()? == task)
        .then(|| fields.next()?.parse().ok())
        .flatten()
}

/// How many runs are in each state, for a summary line.
pub fn tally(statuses: &[RunStatus]) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for status in statuses {
        *counts.entry(status.label()).or_insert(0) += 1;
    }
    counts
}
