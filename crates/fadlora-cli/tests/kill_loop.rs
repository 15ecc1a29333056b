//! SIGKILL at random moments, again and again: a sweep (and, separately, a single `fadlora
//! train`) killed 24 times and restarted each time must still finish every run exactly once,
//! never retrain a finished run, leave only complete files, and leave no trainer running after
//! its sweep died. A seeded RNG (reproducible) orders the kills and draws their delays, which
//! scale with an epoch's measured duration: plain delays (startup, mid-epoch) and triggers that
//! fire when a checkpoint, temporary file, progress file or record appears, so kills also land
//! inside writes and between runs. Only the sweep process is killed, as the OOM killer would:
//! its trainer must die with it.
//!
//! `cargo test -p fadlora-cli --test kill_loop -- --nocapture` prints where each kill landed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;

const KILLS: usize = 24;

/// When a kill is sent, counted from the process's start.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A fixed delay (ms): short ones land in startup, longer ones mid-epoch.
    Delay(u64),
    /// As soon as an epoch folder is being written (`checkpoints/*.partial`), plus 0-1 ms.
    CheckpointWrite(u64),
    /// As soon as any temporary file of an atomic write is seen.
    TempFile,
    /// Once a `progress.json` changed (an epoch was committed), plus a few ms: the best model
    /// and the old checkpoint are being written or removed.
    EpochCommitted(u64),
    /// Once a new `record.json` appeared, plus a few ms: the sweep is writing its summary or
    /// starting the next run.
    RecordAppeared(u64),
}

/// How long a micro run takes on this machine, so the delays scale with it.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// From process start to the first epoch (ms).
    startup: u64,
    epoch: u64,
}

impl Timing {
    /// Runs `command` (a `fadlora train` of `out`) to the end, noting when its first epoch was
    /// committed: that minus an epoch is its startup.
    fn measure(mut command: Command, out: &Path) -> Timing {
        let start = Instant::now();
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let drain = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
        let mut first_epoch = None;
        while child.try_wait().unwrap().is_none() {
            if first_epoch.is_none() && out.join("progress.json").is_file() {
                first_epoch = Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let stderr = drain.join().unwrap();
        assert!(child.wait().unwrap().success(), "{stderr}");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("record.json")).unwrap()).unwrap();
        let epochs: Vec<f64> = record["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["wall_seconds"].as_f64().unwrap() * 1e3)
            .collect();
        let epoch = (epochs.iter().sum::<f64>() / epochs.len() as f64).max(1.0);
        let first_epoch = first_epoch.expect("an epoch was committed").as_secs_f64() * 1e3;
        Timing {
            startup: (first_epoch - epoch).max(epoch) as u64,
            epoch: epoch as u64,
        }
    }

    /// When a trigger that did not fire gives up and kills anyway: mid-run.
    fn give_up(&self, trigger: Trigger) -> Duration {
        let ms = match trigger {
            Trigger::RecordAppeared(_) => 60 * (self.startup + self.epoch),
            Trigger::EpochCommitted(_) => self.startup + 3 * self.epoch,
            _ => self.startup + 2 * self.epoch,
        };
        Duration::from_millis(ms)
    }
}

/// The triggers of the 24 kills, in an order shuffled by `rng`: each phase a fixed number of
/// times, so every run of the test covers all of them and progress per kill stays bounded
/// (a mid-run delay trains at most two epochs, a record trigger finishes at most one run).
fn schedule(rng: &mut Rng, t: Timing, with_records: bool) -> Vec<Trigger> {
    let mut slots: Vec<u8> = [(0, 4), (1, 5), (2, 5), (3, 3), (4, 5), (5, 2)]
        .into_iter()
        .flat_map(|(kind, n)| std::iter::repeat_n(kind, n))
        .map(|kind| if kind == 5 && !with_records { 4 } else { kind })
        .collect();
    assert_eq!(slots.len(), KILLS);
    for i in (1..slots.len()).rev() {
        slots.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    slots
        .into_iter()
        .map(|kind| match kind {
            0 => Trigger::Delay(rng.range(0, t.startup)),
            1 => Trigger::Delay(rng.range(t.startup, t.startup + 2 * t.epoch)),
            2 => Trigger::CheckpointWrite(rng.range(0, 2)),
            3 => Trigger::TempFile,
            4 => Trigger::EpochCommitted(rng.range(0, 8)),
            _ => Trigger::RecordAppeared(rng.range(0, 40)),
        })
        .collect()
}

/// What is on disk for one run folder, cheap enough to take every few milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
struct RunView {
    record: bool,
    progress: Option<(SystemTime, usize)>,
    partial_epoch: Option<String>,
    temp: Vec<String>,
}

fn view_run(dir: &Path) -> RunView {
    let record = dir.join("record.json").is_file();
    let progress = std::fs::metadata(dir.join("progress.json"))
        .and_then(|m| m.modified())
        .ok()
        .map(|t| {
            let epochs = std::fs::read_to_string(dir.join("progress.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["epochs_done"].as_u64())
                .unwrap_or(0) as usize;
            (t, epochs)
        });
    let partial_epoch = std::fs::read_dir(dir.join("checkpoints"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".partial"));
    let mut temp = Vec::new();
    for sub in ["", "best", "scores", "best/adapter"] {
        for entry in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if is_temporary(&path) {
                temp.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    RunView {
        record,
        progress,
        partial_epoch,
        temp,
    }
}

/// A record as first seen: its bytes, modification time, and how many trainer invocations its
/// run's `train.log` showed then.
struct FirstSeen {
    bytes: Vec<u8>,
    mtime: SystemTime,
    invocations: usize,
}

fn invocations(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.starts_with("== ")).count())
        .unwrap_or(0)
}

/// Remembers each record the first time it is seen, and checks it on every later look.
#[derive(Default)]
struct Records {
    seen: BTreeMap<PathBuf, FirstSeen>,
}

impl Records {
    fn look(&mut self, dir: &Path, log: Option<&Path>) {
        let path = dir.join("record.json");
        let Ok(meta) = std::fs::metadata(&path) else {
            assert!(
                !self.seen.contains_key(&path),
                "{} disappeared",
                path.display()
            );
            return;
        };
        let mtime = meta.modified().unwrap();
        match self.seen.get(&path) {
            Some(first) => assert_eq!(
                first.mtime,
                mtime,
                "{} was rewritten: a finished run was trained again",
                path.display()
            ),
            None => {
                let bytes = std::fs::read(&path).unwrap();
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| {
                    panic!("{} does not parse when it appears: {e}", path.display())
                });
                self.seen.insert(
                    path,
                    FirstSeen {
                        bytes,
                        mtime,
                        invocations: log.map(invocations).unwrap_or(0),
                    },
                );
            }
        }
    }

    fn check_final(&self, dir: &Path, log: Option<&Path>) {
        let path = dir.join("record.json");
        let first = self
            .seen
            .get(&path)
            .unwrap_or_else(|| panic!("{} never appeared", path.display()));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            first.bytes,
            "{} changed",
            path.display()
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            first.mtime,
            "{} was rewritten",
            path.display()
        );
        if let Some(log) = log {
            assert_eq!(
                invocations(log),
                first.invocations,
                "{}: a trainer was started for a finished run",
                log.display()
            );
        }
    }
}

/// Waits until `trigger` fires (or `give_up` passes), calling `poll` every few ms, and kills
/// the process then; returns what fired, or the exit status if the process ended by itself.
fn wait_for_trigger(
    child: &mut Child,
    trigger: Trigger,
    give_up: Duration,
    mut poll: impl FnMut() -> Vec<(PathBuf, RunView)>,
) -> (String, Option<std::process::ExitStatus>) {
    let start = Instant::now();
    let before = poll();
    let extra = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (
                format!("ended by itself after {:?}", start.elapsed()),
                Some(status),
            );
        }
        let now = poll();
        let fired = match trigger {
            Trigger::Delay(ms) => {
                (start.elapsed() >= Duration::from_millis(ms)).then(|| format!("after {ms} ms"))
            }
            Trigger::CheckpointWrite(ms) => now
                .iter()
                .find_map(|(_, v)| v.partial_epoch.clone())
                .map(|p| {
                    extra(ms);
                    format!("{p} seen, +{ms} ms")
                }),
            Trigger::TempFile => now
                .iter()
                .find_map(|(_, v)| v.temp.first().cloned())
                .map(|t| format!("{t} seen")),
            Trigger::EpochCommitted(ms) => now
                .iter()
                .zip(&before)
                .find(|((_, a), (_, b))| a.progress.is_some() && a.progress != b.progress)
                .map(|((_, v), _)| {
                    extra(ms);
                    format!("epoch {} committed, +{ms} ms", v.progress.unwrap().1)
                }),
            Trigger::RecordAppeared(ms) => now
                .iter()
                .zip(&before)
                .find(|((_, a), (_, b))| a.record && !b.record)
                .map(|(_, _)| {
                    extra(ms);
                    format!("a record appeared, +{ms} ms")
                }),
        };
        let fired = fired.or_else(|| {
            (start.elapsed() > give_up).then(|| format!("gave up waiting after {give_up:?}"))
        });
        if let Some(fired) = fired {
            kill_and_reap(child);
            return (fired, None);
        }
        // Writes of the micro model's files take about a millisecond: those triggers poll
        // without pause.
        if !matches!(trigger, Trigger::CheckpointWrite(_) | Trigger::TempFile) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where a kill landed, from the run folders just before the signal. `section` gives what the
/// current process logged for a run folder, `None` when it has not started that run's trainer.
fn phase(
    views: &[(PathBuf, RunView)],
    epochs: usize,
    section: impl Fn(&Path) -> Option<String>,
) -> String {
    let Some((index, (dir, v))) = views.iter().enumerate().find(|(_, (_, v))| !v.record) else {
        return "all runs finished: sweep wrapping up (summary)".into();
    };
    let run = format!("run {}/{}", index + 1, views.len());
    let epochs_done = v.progress.map_or(0, |p| p.1);
    let Some(section) = section(dir) else {
        return if index > 0 {
            format!("between runs (run {index} finished, {run}'s trainer not started)")
        } else {
            "sweep startup (plan, lock)".into()
        };
    };
    if let Some(t) = v.temp.first() {
        return format!("{run}: atomic write in flight ({t})");
    }
    if let Some(p) = &v.partial_epoch {
        return format!("{run}: writing checkpoint {p}");
    }
    if !section.contains("detector built") {
        return format!("{run}: trainer startup (data, model; {epochs_done} epochs done)");
    }
    if epochs_done == epochs {
        return format!("{run}: final scoring and record");
    }
    format!("{run}: training epoch {}", epochs_done + 1)
}

/// The part of `log` after its last `== ` header, if that header contains `marker`.
fn last_section(log: &Path, marker: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let last = text.rsplit("== ").next()?;
    last.lines()
        .next()
        .is_some_and(|header| header.contains(marker))
        .then(|| last.to_string())
}

/// The same tensors (names, types, shapes, bytes) in two safetensors files.
fn same_tensors(a: &[u8], b: &[u8]) -> Result<(), String> {
    let (a, b) = (
        safetensors::SafeTensors::deserialize(a).map_err(|e| e.to_string())?,
        safetensors::SafeTensors::deserialize(b).map_err(|e| e.to_string())?,
    );
    let (mut names_a, mut names_b) = (a.names(), b.names());
    names_a.sort();
    names_b.sort();
    if names_a != names_b {
        return Err(format!("tensors {names_a:?} vs {names_b:?}"));
    }
    for name in names_a {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        if x.dtype() != y.dtype() || x.shape() != y.shape() || x.data() != y.data() {
            return Err(format!(
                "tensor {name} differs from the uninterrupted run's"
            ));
        }
    }
    Ok(())
}

fn kill_and_reap(child: &mut Child) {
    // SIGKILL to the one process, as the OOM killer does: its children are not signalled.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_sweep_killed_24_times_finishes_every_run_exactly_once_with_complete_files() {
    let tmp = tempfile::tempdir().unwrap();
    // Enough epochs that 24 kills land before the runs are done.
    let epochs = 16;
    let calibration = tmp.path().join("calibration");
    let config = tmp.path().join("calibration.toml");
    std::fs::write(&config, micro_run_toml(&calibration, 4, Some(2))).unwrap();
    let mut command = Command::new(fadlora());
    command
        .args(["train", "--no-progress", "--config"])
        .arg(&config);
    let timing = Timing::measure(command, &calibration);
    let experiment = tmp.path().join("killed.toml");
    std::fs::write(
        &experiment,
        micro_experiment_toml("killed", epochs, &[2, 4]),
    )
    .unwrap();
    let results = tmp.path().join("results");
    let exp_dir = results.join("killed");
    let sweep = || {
        let mut command = Command::new(fadlora());
        command
            .arg("sweep")
            .arg(&experiment)
            .arg("--results")
            .arg(&results);
        command
    };
    let out = sweep().arg("--plan").output().unwrap();
    assert!(out.status.success());
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("pending"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{}", String::from_utf8_lossy(&out.stdout));
    let dirs: Vec<PathBuf> = ids.iter().map(|id| exp_dir.join(id)).collect();
    let views =
        || -> Vec<(PathBuf, RunView)> { dirs.iter().map(|d| (d.clone(), view_run(d))).collect() };

    let triggers = schedule(&mut Rng::new(0x5eed_0001), timing, true);
    let mut records = Records::default();
    let mut outputs = String::new();
    let mut kills = 0;
    let mut attempt = 0;
    let started = Instant::now();
    println!(
        "sweep kill loop: {} runs x {epochs} epochs, {KILLS} kills; {timing:?} (ms)",
        ids.len()
    );
    for trigger in triggers {
        attempt += 1;
        let log = tmp.path().join(format!("sweep-{attempt}.out"));
        let mut child = sweep()
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let give_up = timing.give_up(trigger);
        let (fired, ended) = wait_for_trigger(&mut child, trigger, give_up, || {
            let v = views();
            for (dir, _) in &v {
                records.look(dir, Some(&dir.join("train.log")));
            }
            v
        });
        if let Some(status) = ended {
            outputs.push_str(&std::fs::read_to_string(&log).unwrap());
            println!("attempt {attempt}: {trigger:?}: sweep {fired} ({status}), no kill");
            assert!(
                status.success(),
                "{}",
                std::fs::read_to_string(&log).unwrap()
            );
            break;
        }
        kills += 1;
        // Read after the kill: the folders as the kill left them.
        let marker = format!("(sweep pid {})", child.id());
        let landed = phase(&views(), epochs, |dir| {
            last_section(&dir.join("train.log"), &marker)
        });
        let orphans = survivors(tmp.path());
        assert!(
            orphans.is_empty(),
            "kill {kills}: processes outlived the sweep: {orphans:?}"
        );
        outputs.push_str(&std::fs::read_to_string(&log).unwrap());
        let finished = views().iter().filter(|(_, v)| v.record).count();
        println!(
            "kill {kills:2} at {:6.1}s: {trigger:?}, {fired} -> {landed}; {finished}/{} runs finished",
            started.elapsed().as_secs_f64(),
            ids.len()
        );
        for (dir, _) in views() {
            records.look(&dir, Some(&dir.join("train.log")));
        }
    }

    assert_eq!(kills, KILLS, "the runs finished before every kill landed");
    // Then once more, uninterrupted, until every run is finished.
    let out = sweep().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    outputs.push_str(&stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "final sweep: {}",
        stdout
            .lines()
            .find(|l| l.contains("run(s) trained"))
            .unwrap_or("?")
    );
    for dir in &dirs {
        records.look(dir, Some(&dir.join("train.log")));
    }

    for (id, dir) in ids.iter().zip(&dirs) {
        records.check_final(dir, Some(&dir.join("train.log")));
        let record = check_finished_run_dir(dir).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(record["epochs"].as_array().unwrap().len(), epochs, "{id}");
        // The sweep reported the run finished at most once (a kill can fall between the record
        // and the line), and never started a trainer for it once finished.
        let reported = outputs.matches(&format!("{id} finished in")).count();
        assert!(reported <= 1, "{id} reported finished {reported} times");
        let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
        println!(
            "{id}: finished once (record untouched since it appeared); {} trainer invocation(s), {} resumed",
            invocations(&dir.join("train.log")),
            log.matches("resuming ").count()
        );
    }
    // The summary: every run once.
    let summary = std::fs::read_to_string(exp_dir.join("summary.csv")).unwrap();
    let mut rows: Vec<&str> = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().trim_matches('"'))
        .collect();
    rows.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(rows, expected, "summary.csv rows");
    // Every file of the experiment folder is complete, and nothing temporary is left.
    for path in walk(&exp_dir) {
        assert!(!is_temporary(&path), "left behind: {}", path.display());
        if path.is_file() {
            check_file(&path).unwrap();
        }
    }
    println!(
        "{kills} kills, no trainer outlived its sweep; all {} runs finished exactly once; summary.csv has each run once; {} files checked complete",
        ids.len(),
        walk(&exp_dir).iter().filter(|p| p.is_file()).count()
    );
}

#[test]
fn a_train_killed_24_times_resumes_to_the_result_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Enough epochs that 24 kills land before the run is done.
    let epochs = 40;
    let write_config = |name: &str| {
        let out = tmp.path().join(name);
        let config = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&config, micro_run_toml(&out, epochs, Some(2))).unwrap();
        (config, out)
    };

    // The reference: the same run, never interrupted.
    let (reference_config, reference) = write_config("reference");
    let timing = Timing::measure(train_command(&reference_config), &reference);

    let (config, run) = write_config("killed");
    let triggers = schedule(&mut Rng::new(0x5eed_0002), timing, false);
    let mut records = Records::default();
    let mut kills = 0;
    let mut attempt = 0;
    let started = Instant::now();
    println!("train kill loop: LoRA run of {epochs} epochs, {KILLS} kills; {timing:?} (ms)");
    let runs = [run.clone()];
    let views =
        || -> Vec<(PathBuf, RunView)> { runs.iter().map(|d| (d.clone(), view_run(d))).collect() };
    let log = tmp.path().join("killed.log");
    for trigger in triggers {
        attempt += 1;
        let marker = format!("attempt {attempt}");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, format!("== {marker}\n").as_bytes())
            })
            .unwrap();
        let mut child = train_command(&config)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let (fired, ended) = wait_for_trigger(&mut child, trigger, timing.give_up(trigger), || {
            let v = views();
            records.look(&run, None);
            v
        });
        if let Some(status) = ended {
            println!("attempt {attempt}: {trigger:?}: train {fired} ({status}), no kill");
            assert!(
                status.success(),
                "{}",
                std::fs::read_to_string(&log).unwrap()
            );
            break;
        }
        kills += 1;
        let landed = phase(&views(), epochs, |_| last_section(&log, &marker));
        assert!(survivors(&config).is_empty());
        let landed = landed.replace("run 1/1: ", "");
        println!(
            "kill {kills:2} at {:6.1}s: {trigger:?}, {fired} -> {landed}",
            started.elapsed().as_secs_f64()
        );
        records.look(&run, None);
    }
    assert_eq!(kills, KILLS, "the run finished before every kill landed");
    let out = train_command(&config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    records.look(&run, None);
    records.check_final(&run, None);
    let record = check_finished_run_dir(&run).unwrap();
    let expected = check_finished_run_dir(&reference).unwrap();

    // Resuming continues exactly where the killed invocation's last checkpoint stood: every
    // epoch's metrics and every score equal the uninterrupted run's.
    let metrics = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("wall_seconds");
                e
            })
            .collect()
    };
    assert_eq!(metrics(&record), metrics(&expected));
    for split in ["dev", "eval"] {
        for key in ["eer_percent", "loss", "threshold", "min_tdcf"] {
            assert_eq!(record[split][key], expected[split][key], "{split}.{key}");
        }
    }
    for file in [
        "scores/dev.txt",
        "scores/eval.txt",
        "best/trainable.safetensors",
        "best/base.safetensors",
        "best/detector.json",
        "best/adapter/adapter_model.safetensors",
        "best/adapter/adapter_config.json",
    ] {
        let (a, b) = (
            std::fs::read(run.join(file)).unwrap(),
            std::fs::read(reference.join(file)).unwrap(),
        );
        if file.ends_with(".safetensors") {
            // burn-store writes its header metadata from a HashMap: the bytes vary between
            // processes, the tensors must not.
            same_tensors(&a, &b).unwrap_or_else(|e| panic!("{file}: {e}"));
        } else {
            assert!(a == b, "{file} differs from the uninterrupted run's");
        }
    }
    let log = std::fs::read_to_string(&log).unwrap();
    println!(
        "{kills} kills; finished once, {} resumed invocation(s); epochs, scores and best model equal the uninterrupted run's",
        log.matches("resuming ").count()
    );
}
