//! A run that cannot write its run lock, checkpoint, score file or record (file too large, disk full)
//! fails with an error naming the file, leaves the files of its last good state byte for byte,
//! and a later run without the limit resumes and ends as an uninterrupted run does.
//!
//! Two OS mechanisms that also bite root (chmod does not): a file-size limit (`prlimit
//! --fsize`) with SIGXFSZ ignored, so every write past it fails with EFBIG, and, where user namespaces are allowed,
//! a tmpfs of a chosen size mounted over the run folder (ENOSPC). The tmpfs cases are skipped,
//! with a note, where `unshare -Urm` is not permitted.
//!
//! `cargo test -p fadlora-cli --test disk_full -- --nocapture` prints each error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use fadlora_run::layout::RUN_LOCK_FILE;
use fadlora_run::LockOwner;

/// `fadlora train` with every file write past `bytes` failing with EFBIG (not a signal).
/// `prlimit` (util-linux), because `ulimit -f` counts whole KiB.
fn train_file_size_limited(config: &Path, bytes: u64) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"trap "" XFSZ; exec prlimit --fsize={bytes} "$0" train --config "$1" --no-progress"#
        ))
        .arg(fadlora())
        .arg(config)
        .output()
        .unwrap()
}

/// The size of the largest run lock a trainer on this host can write: its owner with every
/// number at its widest.
fn largest_lock_bytes() -> u64 {
    let widest = LockOwner {
        pid: u32::MAX,
        start_ticks: Some(u64::MAX),
        slurm_task: None,
        since_unix: u64::MAX,
        ..LockOwner::current()
    };
    serde_json::to_string(&widest).unwrap().len() as u64
}

/// Whether `unshare -Urm` can mount a tmpfs here (user namespaces may be disabled, or refused
/// by a container's seccomp profile).
fn tmpfs_available(scratch: &Path) -> bool {
    let probe = scratch.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs \"$0\"",
        ])
        .arg(&probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `fadlora train` with the run folder on a tmpfs holding `state` plus `headroom_kib` KiB:
/// the folder's files are copied in, the trainer runs, and what it left is copied back to `out`
/// (the tmpfs ends with the namespace).
fn train_on_small_tmpfs(
    config: &Path,
    mount_point: &Path,
    state: &Path,
    headroom_kib: u64,
    out: &Path,
) -> Output {
    std::fs::create_dir_all(mount_point).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let script = format!(
        r#"set -e
mount -t tmpfs -o size=64m tmpfs "$2"
cp -a "$3/." "$2/"
used=$(df -k --output=used "$2" | tail -n 1)
mount -o remount,size=$((used + {headroom_kib}))k "$2"
echo "tmpfs: ${{used}} KiB used, {headroom_kib} KiB free" >&2
set +e
"$0" train --config "$1" --no-progress
rc=$?
cp -a "$2/." "$4/"
exit $rc"#
    );
    Command::new("unshare")
        .args(["-Urm", "bash", "-c", &script])
        .arg(fadlora())
        .arg(config)
        .arg(mount_point)
        .arg(state)
        .arg(out)
        .output()
        .unwrap()
}

/// A full fine-tuning run of `epochs` epochs, stopped by SIGKILL just after its first epoch was
/// committed (before the second epoch writes anything): the "previous good state".
fn run_killed_after_first_epoch(config: &Path, out: &Path) {
    let mut child = train_command(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Committed, and best/ updated after the commit: then the second epoch trains for a while
    // without writing anything.
    wait_for(
        "the first epoch's progress.json and best/",
        Duration::from_secs(300),
        || {
            out.join("progress.json").is_file()
                && out.join("best/detector.json").is_file()
                && temporaries(out).is_empty()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("progress.json")).unwrap()).unwrap();
    assert_eq!(progress["epochs_done"], 1, "killed after the first epoch");
    assert!(temporaries(out).is_empty(), "{:?}", temporaries(out));
}

fn copy_dir(from: &Path, to: &Path) {
    for path in walk(from) {
        let target = to.join(path.strip_prefix(from).unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Makes `dir` hold exactly the files of `state` (a run folder saved from `dir` itself: a run
/// folder belongs to its `output_dir`, so every case works in the same place).
fn restore(state: &Path, dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    copy_dir(state, dir);
}

/// The run's config file, for the run folder `out`.
fn config_for(tmp: &Path, out: &Path, epochs: usize) -> PathBuf {
    let config = tmp.join("run.toml");
    std::fs::write(&config, micro_run_toml(out, epochs, None)).unwrap();
    config
}

/// Everything about a finished run that must not depend on interruptions.
fn results_of(record: &serde_json::Value) -> serde_json::Value {
    let mut epochs = record["epochs"].clone();
    for e in epochs.as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("wall_seconds");
    }
    serde_json::json!({
        "epochs": epochs,
        "best_epoch": record["best_epoch"],
        "dev": [record["dev"]["eer_percent"], record["dev"]["loss"]],
        "eval": [record["eval"]["eer_percent"], record["eval"]["loss"], record["eval"]["min_tdcf"]],
    })
}

/// Checks a failed invocation: it failed, named `file` in its error with `os_error`, and left
/// `dir` byte for byte as `before`, with nothing temporary. Then a run without the limit
/// finishes with `expected` results. Returns the error line.
fn check_failure(
    case: &str,
    out: &Output,
    file: &str,
    os_error: &str,
    dir: &Path,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{case}: the run succeeded\n{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{case}: no error line\n{stderr}"))
        .to_string();
    assert!(
        error.contains(file) && error.contains(os_error),
        "{case}: the error does not name {file} ({os_error}): {error}"
    );
    assert!(
        temporaries(dir).is_empty(),
        "{case}: left behind {:?}",
        temporaries(dir)
    );
    assert!(
        !dir.join(RUN_LOCK_FILE).exists(),
        "{case}: the failed trainer left its run lock"
    );
    let after = snapshot(dir);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "{case}: files changed by the failed run: {changed:?}"
    );
    println!("{case}: {error}");
    println!(
        "{case}: exit {}, {} file(s) byte-identical to the last good state, nothing temporary",
        out.status,
        after.len()
    );
    error
}

fn resume_and_compare(case: &str, config: &Path, dir: &Path, expected: &serde_json::Value) {
    let out = train_command(config).output().unwrap();
    assert!(
        out.status.success(),
        "{case}: resuming without the limit failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = check_finished_run_dir(dir).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(&results_of(&record), expected, "{case}: resumed results");
    println!("{case}: resumed without the limit: finished, results equal the uninterrupted run's");
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_naming_it_and_keeps_the_previous_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let epochs = 3;
    let run = tmp.path().join("run");
    let config = config_for(tmp.path(), &run, epochs);
    run_killed_after_first_epoch(&config, &run);
    let first = tmp.path().join("after-epoch-1");
    copy_dir(&run, &first);
    let good = snapshot(&first);
    let size = |name: &str| good[&PathBuf::from("checkpoints/epoch-0001").join(name)].len() as u64;
    let (trainable, optimizer) = (size("trainable.safetensors"), size("optimizer.mpk"));
    println!("epoch checkpoint: trainable.safetensors {trainable} B, optimizer.mpk {optimizer} B");

    // The reference: the same run, resumed and finished with no limit.
    let out = train_command(&config).output().unwrap();
    assert!(out.status.success());
    let expected = results_of(&check_finished_run_dir(&run).unwrap());

    // The next epoch's checkpoint cannot be written whole: first the parameters, then (with
    // the parameters fitting) the optimizer state's last bytes.
    let cases = [
        ("EFBIG trainable", trainable - 1, "trainable.safetensors"),
        ("EFBIG optimizer", optimizer - 1, "optimizer.mpk"),
    ];
    for (case, bytes, file) in cases {
        restore(&first, &run);
        let out = train_file_size_limited(&config, bytes);
        check_failure(case, &out, file, "File too large", &run, &good);
        resume_and_compare(case, &config, &run, &expected);
    }

    let case = "ENOSPC checkpoint";
    if !tmpfs_available(tmp.path()) {
        println!("{case}: skipped, `unshare -Urm` cannot mount a tmpfs here");
        return;
    }
    let left = tmp.path().join("left-on-tmpfs");
    // Room for the progress file and less than the parameters.
    let headroom = (trainable / 1024 / 2).max(8);
    assert!(headroom * 1024 < trainable);
    restore(&first, &run);
    let out = train_on_small_tmpfs(&config, &run, &first, headroom, &left);
    check_failure(
        case,
        &out,
        "trainable.safetensors",
        "No space left",
        &left,
        &good,
    );
    restore(&left, &run);
    resume_and_compare(case, &config, &run, &expected);
}

#[test]
fn a_record_or_score_file_that_cannot_be_written_fails_naming_it_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let epochs = 2;
    let run = tmp.path().join("run");
    let config = config_for(tmp.path(), &run, epochs);
    let out = train_command(&config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = check_finished_run_dir(&run).unwrap();
    let expected = results_of(&record);
    let record_len = std::fs::metadata(run.join("record.json")).unwrap().len();
    let scores_len = std::fs::metadata(run.join("scores/eval.txt"))
        .unwrap()
        .len();
    println!("record.json {record_len} B, scores/eval.txt {scores_len} B");
    // Every epoch done, scores written, the record not yet: what a kill just before the
    // record's rename leaves. Only the final scoring runs again.
    std::fs::remove_file(run.join("record.json")).unwrap();
    let scored = tmp.path().join("scored");
    copy_dir(&run, &scored);
    let good = snapshot(&scored);

    // A limit of 0 fails the first file a trainer writes, its run lock. One just above the
    // largest lock this host can write lets the lock through and fails the first file the
    // final scoring writes, the dev scores; 1 KiB lets the score files through and fails the
    // record.
    let dev_len = std::fs::metadata(run.join("scores/dev.txt")).unwrap().len();
    let lock_max = largest_lock_bytes();
    assert!(lock_max < dev_len && scores_len < 1024 && record_len > 1024);
    let cases = [
        ("EFBIG run lock", 0, RUN_LOCK_FILE),
        ("EFBIG score file", lock_max, "scores/dev.txt"),
        ("EFBIG record", 1024, "record.json"),
    ];
    for (case, bytes, file) in cases {
        restore(&scored, &run);
        let out = train_file_size_limited(&config, bytes);
        check_failure(case, &out, file, "File too large", &run, &good);
        resume_and_compare(case, &config, &run, &expected);
    }

    let case = "ENOSPC score file";
    if !tmpfs_available(tmp.path()) {
        println!("{case}: skipped, `unshare -Urm` cannot mount a tmpfs here");
        return;
    }
    let left = tmp.path().join("left-on-tmpfs");
    restore(&scored, &run);
    // One 4 KiB page free: room for the run lock, none for the dev scores.
    let out = train_on_small_tmpfs(&config, &run, &scored, 4, &left);
    check_failure(case, &out, "scores/dev.txt", "No space left", &left, &good);
    restore(&left, &run);
    resume_and_compare(case, &config, &run, &expected);
}
