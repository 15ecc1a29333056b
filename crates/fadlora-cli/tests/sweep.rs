//! `fadlora sweep` end to end on a micro model: a sweep killed mid-run loses nothing, the next
//! one skips what finished and resumes what did not, and the summary holds every run once;
//! `fadlora report` then writes every table and figure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mini_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/mini")
        .canonicalize()
        .unwrap()
}

/// Any organisers'-style ASV score file: min t-DCF needs only its three score sets.
fn asv_scores() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/eer/asv_large_random.scores")
        .canonicalize()
        .unwrap()
}

/// Three runs (full fine-tuning, LoRA q+v r2 and r4) of a two-layer, 32-wide wav2vec2 on 4+4
/// utterances per split: a few seconds each, several epochs, so a kill can land mid-run.
fn micro_experiment(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
name = "micro"
description = "sweep test"
[base]
backend = "flex"
[base.data]
dataset = "asvspoof2019:{}"
eval_split = "eval"
crop_samples = 8000
max_per_class = 4
asv_scores = "{}"
[base.model]
preset = "micro"
[base.optim]
lr = 1e-3
[base.train]
batch_size = 4
epochs = 4
timing_warmup_steps = 1
[sweep]
ranks = [2, 4]
full_finetune = true
[[reference.figures]]
group = "lora-q+v-r4"
metric = "eval_eer_percent"
value = 1.30
source = "a published table"
"#,
        mini_corpus().display(),
        asv_scores().display()
    );
    let path = dir.join("micro.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep_command(experiment: &Path, results: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fadlora"));
    command
        .arg("sweep")
        .arg(experiment)
        .arg("--results")
        .arg(results);
    command
}

fn run_ids(results: &Path) -> Vec<String> {
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("micro/plan.json")).unwrap())
            .unwrap();
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn summary_ids(results: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(results.join("micro/summary.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let id_col = header
        .iter()
        .position(|h| *h == "id")
        .expect("an id column");
    lines
        .map(|l| {
            l.split(',')
                .nth(id_col)
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_sweep_resumes_without_redoing_or_losing_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let experiment = micro_experiment(tmp.path());
    let results = tmp.path().join("results");

    // --plan lists the runs and trains nothing.
    let out = sweep_command(&experiment, &results)
        .arg("--plan")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("pending").count(), 3, "{stdout}");
    assert!(
        stdout.contains("lora-q+v-r4 eval_eer_percent = 1.3 (a published table)"),
        "{stdout}"
    );
    assert!(!results.join("micro").exists(), "--plan writes nothing");

    // First sweep: killed once run 1 has finished and run 2 has checkpointed an epoch.
    let mut first = sweep_command(&experiment, &results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("plan.json", Duration::from_secs(60), || {
        results.join("micro/plan.json").is_file()
    });
    let ids = run_ids(&results);
    assert_eq!(ids.len(), 3);
    let dir = |i: usize| results.join("micro").join(&ids[i]);
    wait_for(
        "run 2 to checkpoint an epoch",
        Duration::from_secs(300),
        || dir(1).join("progress.json").is_file(),
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        dir(0).join("record.json").is_file(),
        "run 1 finished before the kill"
    );
    let interrupted = !dir(1).join("record.json").is_file();
    assert!(
        interrupted,
        "run 2 was killed mid-run (4 epochs; killed after its first)"
    );
    assert!(!dir(2).join("record.json").is_file());
    // The trainer died with the sweep: nothing moves in run 2's folder afterwards.
    let progress = std::fs::read(dir(1).join("progress.json")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::read(dir(1).join("progress.json")).unwrap(),
        progress,
        "an orphaned trainer kept training after the sweep was killed"
    );
    assert_eq!(summary_ids(&results), vec![ids[0].clone()]);
    let record_1 = std::fs::read(dir(0).join("record.json")).unwrap();
    let mtime_1 = std::fs::metadata(dir(0).join("record.json"))
        .unwrap()
        .modified()
        .unwrap();

    // Second sweep: skips run 1, resumes run 2, runs run 3.
    let out = sweep_command(&experiment, &results).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} finished earlier: skipped", ids[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} resuming after epoch", ids[1])),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{} started", ids[2])), "{stdout}");
    assert!(stdout.contains("2 run(s) trained, 1 skipped"), "{stdout}");
    assert_eq!(std::fs::read(dir(0).join("record.json")).unwrap(), record_1);
    assert_eq!(
        std::fs::metadata(dir(0).join("record.json"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime_1,
        "a finished run was redone"
    );
    let log = std::fs::read_to_string(dir(1).join("train.log")).unwrap();
    assert!(log.contains("resuming"), "{log}");
    let record_2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir(1).join("record.json")).unwrap())
            .unwrap();
    assert_eq!(
        record_2["epochs"].as_array().unwrap().len(),
        4,
        "every epoch, once"
    );
    // The eval min t-DCF in the record is what `fadlora eer` computes from the score file,
    // against a protocol of just the scored utterances (the run used 4 per class).
    let protocol = std::fs::read_to_string(
        mini_corpus().join("ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt"),
    )
    .unwrap();
    let scored = std::fs::read_to_string(dir(1).join("scores/eval.txt")).unwrap();
    let mut csv = String::from("path,label,id\n");
    for id in scored.lines().filter_map(|l| l.split_whitespace().next()) {
        let line = protocol
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap();
        let key = line.split_whitespace().last().unwrap();
        csv.push_str(&format!("{id}.flac,{key},{id}\n"));
    }
    let labels = tmp.path().join("eval_labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .args(["eer", "--json", "--scores"])
        .arg(dir(1).join("scores/eval.txt"))
        .arg("--protocol")
        .arg(format!("csv:{}", labels.display()))
        .arg("--asv-scores")
        .arg(asv_scores())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recorded = record_2["eval"]["min_tdcf"]
        .as_f64()
        .expect("eval min t-DCF recorded");
    assert!((recorded - eer["min_tdcf"].as_f64().unwrap()).abs() < 1e-12);
    assert!(
        record_2["dev"].get("min_tdcf").is_none(),
        "dev has no ASV scores"
    );
    // LoRA runs also leave their selected adapters in PEFT's layout.
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(dir(1).join("best/adapter").join(file).is_file(), "{file}");
    }
    assert!(
        !dir(0).join("best/adapter").exists(),
        "full fine-tuning has no adapters"
    );
    let mut summary = summary_ids(&results);
    summary.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(summary, expected, "every run exactly once");

    // Third sweep: nothing to do.
    let out = sweep_command(&experiment, &results).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 run(s) trained, 3 skipped"), "{stdout}");

    // Adding a rank runs only the new run.
    let text = std::fs::read_to_string(&experiment)
        .unwrap()
        .replace("ranks = [2, 4]", "ranks = [2, 4, 8]");
    std::fs::write(&experiment, text).unwrap();
    let out = sweep_command(&experiment, &results).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 run(s) trained, 3 skipped"), "{stdout}");
    assert_eq!(summary_ids(&results).len(), 4);

    // The report has every table and figure.
    let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .arg("report")
        .arg("micro")
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = results.join("micro/report");
    for name in [
        "report.md",
        "summary.md",
        "summary.csv",
        "summary.tex",
        "runs.md",
        "runs.csv",
        "runs.tex",
        "eer_vs_rank.png",
        "eer_vs_rank.svg",
        "eer_vs_params.png",
        "eer_vs_params.svg",
        "memory_time.png",
        "memory_time.svg",
        "det.png",
        "det.svg",
        "learning_curves.png",
        "learning_curves.svg",
        "breakdown.md",
        "breakdown.csv",
        "paired.md",
        "paired.csv",
    ] {
        let len = std::fs::metadata(report.join(name))
            .unwrap_or_else(|_| panic!("report/{name} missing"))
            .len();
        assert!(len > 0, "report/{name} is empty");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("randomly initialised"), "{md}");
    assert!(md.contains("Eval min t-DCF"), "{md}");
    // The trainer recorded every interval and per-attack EER: the report made none itself.
    assert!(md.contains("## Per-attack and per-condition EER"), "{md}");
    assert!(!md.contains("computed here from"), "{md}");
    // The experiment's published figure went through plan.json into the report.
    assert!(md.contains("## Published figures"), "{md}");
    assert!(
        md.contains("| lora-q+v-r4 | eval_eer_percent | 1.30 |"),
        "{md}"
    );
    assert!(record_2["eval"]["eer_ci"]["low_percent"].is_number());
    assert!(!record_2["eval"]["breakdown"].as_array().unwrap().is_empty());
}

#[test]
fn a_second_sweep_on_the_same_folder_is_refused_while_one_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let experiment = micro_experiment(tmp.path());
    let results = tmp.path().join("results");
    let mut first = sweep_command(&experiment, &results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first sweep to start", Duration::from_secs(60), || {
        results.join("micro/plan.json").is_file()
    });
    let out = sweep_command(&experiment, &results).output().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("another sweep is running"), "{stderr}");
}
