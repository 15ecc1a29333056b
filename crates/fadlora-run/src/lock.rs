//! The run lock: one trainer per run folder, whichever machine it runs on.
//!
//! A sweep on one machine serialises its runs itself, but a SLURM job array, a second sweep or a
//! hand-started `fadlora train` can reach the same run folder from another process or another
//! node, and two trainers in one folder would interleave their checkpoints. So every trainer
//! holds `<run folder>/.train.lock` while it works.
//!
//! The lock is a file, not an OS lock, because `flock` is not shared between the nodes of many
//! cluster filesystems, and an OS lock says nothing about who holds it. The file names its owner
//! (host, pid, SLURM task) and is created atomically (written beside it, then hard-linked into
//! place, which fails if it exists, on NFS too). The owner touches it every
//! [`LockTiming::heartbeat`]; a lock is stale, and the next trainer takes it over, when its
//! owner's process is gone (same host) or its heartbeat stopped for [`LockTiming::stale_after`]
//! (a node that died). Taking over goes through a second file (`.train.lock.break`), so two
//! trainers that find the same stale lock cannot both win.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::layout::RUN_LOCK_FILE;
use crate::RunError;

/// How often an owner proves it is alive, and how long a silent lock is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTiming {
    pub heartbeat: Duration,
    pub stale_after: Duration,
}

impl Default for LockTiming {
    /// Eight missed heartbeats: long enough for a filesystem stall, short enough that a run
    /// whose node died is retried within minutes.
    fn default() -> Self {
        LockTiming {
            heartbeat: Duration::from_secs(15),
            stale_after: Duration::from_secs(120),
        }
    }
}

/// Who holds a run lock: what the lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (Linux), so that a pid reused by
    /// another process after the owner died is not taken for the owner.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// `<array job>_<task>` (or the job ID) when the owner is a SLURM task.
    #[serde(default)]
    pub slurm_task: Option<String>,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since_unix: u64,
}

impl LockOwner {
    /// This process.
    pub fn current() -> LockOwner {
        let pid = std::process::id();
        let slurm_task = match (
            std::env::var("SLURM_ARRAY_JOB_ID"),
            std::env::var("SLURM_ARRAY_TASK_ID"),
        ) {
            (Ok(job), Ok(task)) => Some(format!("{job}_{task}")),
            _ => std::env::var("SLURM_JOB_ID").ok(),
        };
        LockOwner {
            host: host_name(),
            pid,
            start_ticks: process_start_ticks(pid),
            slurm_task,
            since_unix: unix_now(),
        }
    }

    /// `pid 123 on node7 (SLURM task 88_3)`.
    pub fn describe(&self) -> String {
        let task = self
            .slurm_task
            .as_ref()
            .map(|t| format!(" (SLURM task {t})"))
            .unwrap_or_default();
        format!("pid {} on {}{task}", self.pid, self.host)
    }
}

/// A lock file as another process sees it.
#[derive(Debug, Clone)]
pub struct LockState {
    /// `None` when the file does not parse (an owner that died while creating it).
    pub owner: Option<LockOwner>,
    /// Time since the owner last touched the file.
    pub heartbeat_age: Duration,
    /// Why the lock no longer protects anything, if it does not.
    pub stale: Option<String>,
}

/// Reads the lock of `run_dir`, if there is one, and judges whether its owner still lives.
pub fn inspect_lock(run_dir: &Path, timing: LockTiming) -> Option<LockState> {
    let path = run_dir.join(RUN_LOCK_FILE);
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    let heartbeat_age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    let owner = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<LockOwner>(&text).ok());
    let stale = match &owner {
        Some(owner) if owner.host == host_name() && !process_alive(owner) => {
            Some(format!("its process ({}) has ended", owner.describe()))
        }
        _ if heartbeat_age > timing.stale_after => Some(format!(
            "no heartbeat for {} s (its node went down or its process hung)",
            heartbeat_age.as_secs()
        )),
        None if heartbeat_age > timing.heartbeat => {
            Some("the file names no owner (its creator died while writing it)".into())
        }
        _ => None,
    };
    Some(LockState {
        owner,
        heartbeat_age,
        stale,
    })
}

/// The lock of one run folder, held until dropped. A thread keeps its heartbeat.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    contents: String,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl RunLock {
    /// Takes the lock of `run_dir` (which must exist), taking over a stale one.
    pub fn acquire(run_dir: &Path, timing: LockTiming) -> Result<RunLock, RunError> {
        let path = run_dir.join(RUN_LOCK_FILE);
        let owner = LockOwner::current();
        let contents = serde_json::to_string(&owner).expect("a lock owner serialises");
        // A second round only after a stale lock (or a takeover abandoned by a killed trainer)
        // was removed, a third after both; another round would mean a race with another
        // trainer doing the same, which then holds the lock.
        for _ in 0..3 {
            match create_exclusive(&path, &contents) {
                Ok(()) => return Ok(Self::start(path, contents, timing)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(RunError::io(&path, e)),
            }
            let Some(state) = inspect_lock(run_dir, timing) else {
                continue; // released between the two calls
            };
            match &state.stale {
                Some(reason) => {
                    tracing::warn!(lock = %path.display(), "taking over a stale run lock: {reason}");
                    break_stale_lock(run_dir, &state, timing)?;
                }
                None => return Err(locked(run_dir, &state)),
            }
        }
        match inspect_lock(run_dir, timing) {
            Some(state) => Err(locked(run_dir, &state)),
            None => Err(RunError::Invalid(format!(
                "{}: the run lock changed hands repeatedly; try again",
                path.display()
            ))),
        }
    }

    fn start(path: PathBuf, contents: String, timing: LockTiming) -> RunLock {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = {
            let path = path.clone();
            let contents = contents.clone();
            let lost = lost.clone();
            std::thread::Builder::new()
                .name("run-lock-heartbeat".into())
                .spawn(move || loop {
                    match stopped.recv_timeout(timing.heartbeat) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    if std::fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    let touched = std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                    if let Err(e) = touched {
                        tracing::warn!(lock = %path.display(), "run lock heartbeat failed: {e}");
                    }
                })
                .ok()
        };
        RunLock {
            path,
            contents,
            lost,
            stop: Some(stop),
            heartbeat,
        }
    }

    /// Fails when another trainer took the lock over (this process was silent for longer than
    /// `stale_after`, e.g. suspended): what this one writes from now on would mix two runs.
    pub fn check_held(&self) -> Result<(), RunError> {
        let ours = std::fs::read_to_string(&self.path).ok().as_deref() == Some(&self.contents);
        if self.lost.load(Ordering::SeqCst) || !ours {
            return Err(RunError::Invalid(format!(
                "{}: another trainer took this run over while this one was silent; stopping without writing",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
        if std::fs::read_to_string(&self.path).ok().as_deref() == Some(self.contents.as_str()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn locked(run_dir: &Path, state: &LockState) -> RunError {
    let holder = state
        .owner
        .as_ref()
        .map_or_else(|| "another process".to_string(), LockOwner::describe);
    RunError::Invalid(format!(
        "{} is being trained by {holder} (last heartbeat {} s ago); two trainers in one run folder would mix their checkpoints. If that process is gone, its lock ({RUN_LOCK_FILE}) is taken over once it goes stale.",
        run_dir.display(),
        state.heartbeat_age.as_secs()
    ))
}

/// Writes `contents` to a file beside `path` and hard-links it into place: the lock appears
/// complete or not at all, and the link fails if a lock is already there.
fn create_exclusive(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut staged = tempfile::Builder::new()
        .prefix(".train.lock.")
        .suffix(crate::fs::TEMP_SUFFIX)
        .tempfile_in(dir)?;
    // Through the plain file: NamedTempFile's own writer adds its random name to errors, and
    // the caller names the lock.
    std::io::Write::write_all(staged.as_file_mut(), contents.as_bytes())?;
    staged.as_file().sync_all()?;
    std::fs::hard_link(staged.path(), path)
}

/// Removes a stale lock unless someone else is already taking it over. The breaker file is
/// itself honoured for one heartbeat only, and not at all once its owner's process has ended
/// (on this host), so a trainer that died mid-takeover blocks nobody.
fn break_stale_lock(run_dir: &Path, seen: &LockState, timing: LockTiming) -> Result<(), RunError> {
    let breaker = run_dir.join(format!("{RUN_LOCK_FILE}.break"));
    let owner = LockOwner::current();
    let contents = serde_json::to_string(&owner).expect("a lock owner serialises");
    if let Err(e) = create_exclusive(&breaker, &contents) {
        if e.kind() != ErrorKind::AlreadyExists {
            return Err(RunError::io(&breaker, e));
        }
        if breaker_abandoned(&breaker, timing) {
            let _ = std::fs::remove_file(&breaker);
        }
        return Ok(()); // the caller tries again and finds whatever the other taker left
    }
    // Remove the lock only if it is still the stale one this process judged.
    if let Some(now) = inspect_lock(run_dir, timing) {
        if now.stale.is_some() && now.owner == seen.owner {
            let _ = std::fs::remove_file(run_dir.join(RUN_LOCK_FILE));
        }
    }
    let _ = std::fs::remove_file(&breaker);
    Ok(())
}

/// Whether a takeover in progress was given up: older than one heartbeat, or its owner's
/// process ended. Killing a trainer during its takeover once left the breaker behind, and the
/// next trainer then refused the run, naming the dead owner of the stale lock.
fn breaker_abandoned(breaker: &Path, timing: LockTiming) -> bool {
    let old = std::fs::metadata(breaker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > timing.heartbeat);
    let dead = std::fs::read_to_string(breaker)
        .ok()
        .and_then(|text| serde_json::from_str::<LockOwner>(&text).ok())
        .is_some_and(|owner| owner.host == host_name() && !process_alive(&owner));
    old || dead
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The short host name, as SLURM and `hostname -s` print it.
pub fn host_name() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    full.split('.').next().unwrap_or(&full).to_string()
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces): the state is
/// the first, the start time the twentieth.
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

fn process_start_ticks(pid: u32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the owner's process still runs on this host. Without `/proc` (not Linux) only the
/// heartbeat can tell, so the process counts as alive.
fn process_alive(owner: &LockOwner) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    let Some(fields) = proc_stat_fields(owner.pid) else {
        return false;
    };
    // A zombie has exited; its parent has not collected it yet.
    let zombie = matches!(fields.first().map(String::as_str), Some("Z" | "X"));
    let same_process = match (owner.start_ticks, fields.get(19)) {
        (Some(ticks), Some(now)) => now.parse::<u64>().ok() == Some(ticks),
        _ => true,
    };
    !zombie && same_process
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> LockTiming {
        LockTiming {
            heartbeat: Duration::from_millis(50),
            stale_after: Duration::from_millis(400),
        }
    }

    fn write_foreign_lock(dir: &Path, owner: &LockOwner, age: Duration) {
        let path = dir.join(RUN_LOCK_FILE);
        std::fs::write(&path, serde_json::to_string(owner).unwrap()).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_second_trainer_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), fast()).unwrap();
        let err = RunLock::acquire(dir.path(), fast())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is being trained by pid"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        first.check_held().unwrap();
        drop(first);
        assert!(!dir.path().join(RUN_LOCK_FILE).exists());
        RunLock::acquire(dir.path(), fast()).unwrap();
    }

    #[test]
    fn the_heartbeat_keeps_a_long_run_from_going_stale() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path(), fast()).unwrap();
        std::thread::sleep(fast().stale_after * 2);
        let state = inspect_lock(dir.path(), fast()).unwrap();
        assert!(state.stale.is_none(), "{:?}", state.stale);
        assert!(state.heartbeat_age < fast().stale_after);
        assert!(RunLock::acquire(dir.path(), fast()).is_err());
        drop(lock);
    }

    #[test]
    fn a_lock_whose_process_ended_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = LockOwner {
            pid,
            start_ticks: Some(1),
            ..LockOwner::current()
        };
        write_foreign_lock(dir.path(), &dead, Duration::ZERO);
        let state = inspect_lock(dir.path(), LockTiming::default()).unwrap();
        assert!(state.stale.unwrap().contains("has ended"));
        let lock = RunLock::acquire(dir.path(), LockTiming::default()).unwrap();
        lock.check_held().unwrap();
    }

    /// A trainer killed while taking over a stale lock leaves its breaker file behind; the
    /// next trainer takes the lock at once rather than refusing the run for a heartbeat.
    #[test]
    fn a_takeover_abandoned_by_a_dead_trainer_blocks_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let dead = |_| {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            LockOwner {
                pid,
                start_ticks: Some(1),
                ..LockOwner::current()
            }
        };
        write_foreign_lock(dir.path(), &dead(0), Duration::ZERO);
        let breaker = dir.path().join(format!("{RUN_LOCK_FILE}.break"));
        std::fs::write(&breaker, serde_json::to_string(&dead(1)).unwrap()).unwrap();
        let lock = RunLock::acquire(dir.path(), LockTiming::default()).unwrap();
        lock.check_held().unwrap();
        assert!(!breaker.exists());
    }

    #[test]
    fn a_silent_lock_from_another_node_is_honoured_until_stale() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = LockOwner {
            host: "some-other-node".into(),
            pid: 1,
            start_ticks: None,
            slurm_task: Some("77_3".into()),
            since_unix: 0,
        };
        write_foreign_lock(dir.path(), &elsewhere, Duration::from_millis(100));
        let err = RunLock::acquire(dir.path(), fast())
            .unwrap_err()
            .to_string();
        assert!(err.contains("SLURM task 77_3"), "{err}");
        assert!(err.contains("some-other-node"), "{err}");
        write_foreign_lock(dir.path(), &elsewhere, Duration::from_secs(5));
        let state = inspect_lock(dir.path(), fast()).unwrap();
        assert!(state.stale.unwrap().contains("no heartbeat"));
        RunLock::acquire(dir.path(), fast()).unwrap();
    }

    #[test]
    fn a_trainer_whose_lock_was_taken_over_stops() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path(), fast()).unwrap();
        let usurper = LockOwner {
            host: "other".into(),
            pid: 9,
            start_ticks: None,
            slurm_task: None,
            since_unix: 1,
        };
        write_foreign_lock(dir.path(), &usurper, Duration::ZERO);
        let err = lock.check_held().unwrap_err().to_string();
        assert!(err.contains("took this run over"), "{err}");
        drop(lock);
        // Dropping must not remove the new owner's lock.
        assert!(dir.path().join(RUN_LOCK_FILE).exists());
    }

    #[test]
    fn many_contenders_for_one_stale_lock_leave_exactly_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = LockOwner {
            host: "dead-node".into(),
            pid: 1,
            start_ticks: None,
            slurm_task: None,
            since_unix: 0,
        };
        write_foreign_lock(dir.path(), &elsewhere, Duration::from_secs(60));
        let barrier = std::sync::Barrier::new(8);
        let winners: Vec<RunLock> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        RunLock::acquire(dir.path(), fast()).ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(winners.len(), 1);
    }
}
