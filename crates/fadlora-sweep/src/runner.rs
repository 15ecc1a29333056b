//! Runs a plan: one `fadlora train` process per run.
//!
//! A process per run, rather than training in this process, because peak RSS (the CPU memory
//! figure of a run record) is a per-process high-water mark, because a run that crashes or runs
//! out of memory must not take the sweep down, and because GPU memory is only fully returned
//! when the process ends. Each child is told to die with the sweep (Linux `PR_SET_PDEATHSIG`),
//! so a killed sweep never leaves a trainer writing into a run folder behind it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use fadlora_run::layout::{LOCK_FILE, LOG_FILE, RECORD_FILE, RUN_CONFIG_FILE};
use fadlora_run::{read_record, write_atomic, Plan, PlannedRun, RunRecord, RunState};

use crate::SweepError;

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The `fadlora` binary that trains each run (`fadlora train --config run.toml`).
    pub trainer: PathBuf,
    /// Runs trained at once.
    pub jobs: usize,
    /// `RAYON_NUM_THREADS` for each trainer (CPU runs side by side should split the cores).
    pub threads_per_job: Option<usize>,
}

/// What the runner reports, as it happens. `index` is the run's position in the plan.
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// Already finished in an earlier sweep: not run again.
    Skipped { index: usize, run: &'a PlannedRun },
    Started {
        index: usize,
        run: &'a PlannedRun,
        /// Epochs already checkpointed by an interrupted invocation, which this one resumes.
        resuming_after: Option<usize>,
    },
    Finished {
        index: usize,
        run: &'a PlannedRun,
        record: Box<RunRecord>,
        seconds: f64,
    },
    Failed {
        index: usize,
        run: &'a PlannedRun,
        reason: String,
        /// The last lines of the run's `train.log`.
        log_tail: String,
    },
}

#[derive(Debug, Default)]
pub struct SweepOutcome {
    pub skipped: usize,
    pub finished: usize,
    /// IDs of the runs that failed in this sweep.
    pub failed: Vec<String>,
}

/// Trains every unfinished run of `plan`, `options.jobs` at a time, calling `on_event` on this
/// thread for each start, finish, failure and skip. A failed run does not stop the others.
pub fn run_sweep(
    plan: &Plan,
    options: &SweepOptions,
    mut on_event: impl FnMut(SweepEvent<'_>),
) -> Result<SweepOutcome, SweepError> {
    std::fs::create_dir_all(&plan.dir).map_err(|e| SweepError::io(&plan.dir, e))?;
    let _lock = lock_experiment(&plan.dir)?;
    fadlora_run::fs::remove_stale_temporaries(&plan.dir);
    plan.save()?;

    let mut outcome = SweepOutcome::default();
    let mut queue = VecDeque::new();
    for (index, run) in plan.runs.iter().enumerate() {
        match plan.state(run) {
            RunState::Finished => {
                outcome.skipped += 1;
                on_event(SweepEvent::Skipped { index, run });
            }
            state => queue.push_back((index, state)),
        }
    }
    let queue = Mutex::new(queue);
    let (tx, rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            let tx = tx.clone();
            let queue = &queue;
            scope.spawn(move || loop {
                let Some((index, state)) =
                    queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                else {
                    break;
                };
                let run = &plan.runs[index];
                let resuming_after = match state {
                    RunState::Partial { epochs_done } => Some(epochs_done),
                    _ => None,
                };
                if tx
                    .send(Message::Started {
                        index,
                        resuming_after,
                    })
                    .is_err()
                {
                    break;
                }
                let started = Instant::now();
                let result = train_run(plan, run, options).map(Box::new);
                let seconds = started.elapsed().as_secs_f64();
                if tx
                    .send(Message::Done {
                        index,
                        result,
                        seconds,
                    })
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(tx);
        for message in rx {
            match message {
                Message::Started {
                    index,
                    resuming_after,
                } => on_event(SweepEvent::Started {
                    index,
                    run: &plan.runs[index],
                    resuming_after,
                }),
                Message::Done {
                    index,
                    result,
                    seconds,
                } => {
                    let run = &plan.runs[index];
                    match result {
                        Ok(record) => {
                            outcome.finished += 1;
                            on_event(SweepEvent::Finished {
                                index,
                                run,
                                record,
                                seconds,
                            });
                        }
                        Err(reason) => {
                            outcome.failed.push(run.id.clone());
                            on_event(SweepEvent::Failed {
                                index,
                                run,
                                reason,
                                log_tail: log_tail(&plan.run_dir(run).join(LOG_FILE), 15),
                            });
                        }
                    }
                }
            }
        }
    });
    Ok(outcome)
}

enum Message {
    Started {
        index: usize,
        resuming_after: Option<usize>,
    },
    Done {
        index: usize,
        result: Result<Box<RunRecord>, String>,
        seconds: f64,
    },
}

/// Holds an exclusive lock on `<dir>/.sweep.lock` while the sweep runs, so two sweeps never
/// train the same run folder at once. The OS drops the lock when the process ends, however
/// it ends.
pub(crate) fn lock_experiment(dir: &Path) -> Result<File, SweepError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SweepError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SweepError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(SweepError::io(&path, e)),
    }
}

/// Makes a run folder ready for `fadlora train --config <run folder>/run.toml`: writes the run
/// TOML and moves aside a record that does not parse (a schema change, a damaged disk), which
/// would otherwise make the trainer report the run complete and leave it without a record
/// forever.
pub(crate) fn prepare_run_dir(plan: &Plan, run: &PlannedRun) -> Result<PathBuf, SweepError> {
    let dir = plan.run_dir(run);
    std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
    write_atomic(&dir.join(RUN_CONFIG_FILE), run.config.to_toml().as_bytes())?;
    let record_path = dir.join(RECORD_FILE);
    if record_path.is_file() && read_record(&dir).is_none() {
        let aside = dir.join(format!("{RECORD_FILE}.unreadable"));
        std::fs::rename(&record_path, &aside).map_err(|e| SweepError::io(&aside, e))?;
    }
    Ok(dir)
}

/// Trains one run in a child process; `Err` says why it has no record.
fn train_run(plan: &Plan, run: &PlannedRun, options: &SweepOptions) -> Result<RunRecord, String> {
    let open_log = || -> Result<File, SweepError> {
        let dir = prepare_run_dir(plan, run)?;
        let log_path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| SweepError::io(&log_path, e))?;
        let _ = writeln!(
            log,
            "== {} --config {} (sweep pid {})",
            options.trainer.display(),
            dir.join(RUN_CONFIG_FILE).display(),
            std::process::id()
        );
        Ok(log)
    };
    let log = open_log().map_err(|e| e.to_string())?;
    let dir = plan.run_dir(run);
    let stderr = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(&options.trainer);
    command
        .arg("train")
        .arg("--config")
        .arg(dir.join(RUN_CONFIG_FILE))
        .arg("--no-progress")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    if let Some(threads) = options.threads_per_job {
        command.env("RAYON_NUM_THREADS", threads.to_string());
    }
    die_with_parent(&mut command);
    let status = command
        .status()
        .map_err(|e| format!("cannot start {}: {e}", options.trainer.display()))?;
    // The record decides, not the exit status: it is written last and atomically, so a run
    // that has one is finished (and the next sweep will treat it so).
    read_record(&dir).ok_or_else(|| format!("trainer {status}; no record written"))
}

/// The child gets SIGKILL when the thread that spawned it ends: a worker thread lives until
/// its child exits, so this happens only when the sweep process itself dies.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The sweep died between fork and prctl: do not train as an orphan.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the sweep exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How long a sweep has been going, for progress lines.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
