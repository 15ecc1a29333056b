//! Two trainers never work in one run folder: `fadlora train` refuses a run whose lock a live
//! process holds (a SLURM task, a sweep, another shell), takes over the lock of one that died,
//! and leaves no lock behind when it finishes. Also `fadlora sweep --plan --slurm` and
//! `--status`, which need neither a scheduler nor a trained run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{fadlora, micro_experiment_toml, micro_run_toml, train_command};
use fadlora_run::layout::{RECORD_FILE, RUN_LOCK_FILE};
use fadlora_run::LockOwner;

fn write_lock(run_dir: &Path, pid: u32) {
    std::fs::create_dir_all(run_dir).unwrap();
    let owner = LockOwner {
        pid,
        start_ticks: None,
        slurm_task: Some("314_1".into()),
        ..LockOwner::current()
    };
    std::fs::write(
        run_dir.join(RUN_LOCK_FILE),
        serde_json::to_string(&owner).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_run_locked_by_a_live_trainer_is_refused_and_one_left_by_a_dead_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("run.toml");
    std::fs::write(&config, micro_run_toml(&out, 1, Some(2))).unwrap();

    // A live process on this host holds the lock.
    let mut holder = Command::new("sleep").arg("60").spawn().unwrap();
    write_lock(&out, holder.id());
    let refused = train_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!("is being trained by pid {}", holder.id()))
            && stderr.contains("SLURM task 314_1"),
        "{stderr}"
    );
    assert!(!out.join(RECORD_FILE).exists());
    assert!(
        !out.join("config.toml").exists(),
        "a refused trainer must not write"
    );

    // The holder dies: its lock is stale at once and the next trainer takes over.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let ran = train_command(&config).output().unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(out.join(RECORD_FILE).is_file());
    assert!(
        !out.join(RUN_LOCK_FILE).exists(),
        "a finished trainer leaves no lock"
    );
}

fn sweep(experiment: &Path, results: &Path, extra: &[&str]) -> String {
    let output = Command::new(fadlora())
        .arg("sweep")
        .arg(experiment)
        .arg("--results")
        .arg(results)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn planning_a_slurm_submission_and_asking_for_status_need_no_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = dir.path().join("micro.toml");
    std::fs::write(&experiment, micro_experiment_toml("micro", 2, &[2, 4])).unwrap();
    let results = dir.path().join("results");

    let script = sweep(
        &experiment,
        &results,
        &["--plan", "--slurm", "--partition", "cpu", "--throttle", "1"],
    );
    assert!(script.contains("#SBATCH --array=0-2%1"), "{script}");
    assert!(script.contains("#SBATCH --partition=cpu"), "{script}");
    assert!(
        !script.contains("--gres"),
        "flex runs need no GPU: {script}"
    );
    assert!(!results.exists(), "--plan --slurm must not write anything");

    let status = sweep(&experiment, &results, &["--status"]);
    let pending = status.lines().filter(|l| l.ends_with(" pending")).count();
    assert_eq!(pending, 3, "{status}");
    assert!(
        status.contains("0 finished, 0 running, 3 pending, 0 failed"),
        "{status}"
    );
}
