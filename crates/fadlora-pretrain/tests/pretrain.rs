//! `fadlora pretrain` end to end on the micro model and a few bundled bona fide utterances:
//! the masked loss falls, a run interrupted at a checkpoint and resumed ends exactly as an
//! uninterrupted one, and the exported model loads as a Hugging Face checkpoint.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use fadlora_model::Wav2Vec2Model;
use fadlora_pretrain::{
    pretrain, PretrainConfig, PretrainOptions, PretrainOutcome, PretrainRecord,
};

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/mini")
        .canonicalize()
        .unwrap()
}

/// Bona fide utterances of the mini corpus: 10 from train (pretraining), 4 from dev (valid).
fn write_manifest(dir: &Path) -> PathBuf {
    let mut rows = vec!["path,label,speaker,system,split".to_string()];
    for (split, folder, protocol, take, name) in [
        (
            "train",
            "ASVspoof2019_LA_train",
            "ASVspoof2019.LA.cm.train.trn.txt",
            10,
            "train",
        ),
        (
            "dev",
            "ASVspoof2019_LA_dev",
            "ASVspoof2019.LA.cm.dev.trl.txt",
            4,
            "valid",
        ),
    ] {
        let _ = split;
        let text =
            std::fs::read_to_string(mini().join("ASVspoof2019_LA_cm_protocols").join(protocol))
                .unwrap();
        for line in text.lines().filter(|l| l.ends_with("bonafide")).take(take) {
            let id = line.split_whitespace().nth(1).unwrap();
            let path = mini().join(folder).join("flac").join(format!("{id}.flac"));
            rows.push(format!("{},bonafide,-,-,{name}", path.display()));
        }
    }
    let path = dir.join("pretrain.csv");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

fn config(dir: &Path, out: &str, steps: u64) -> PretrainConfig {
    let text = format!(
        r#"
name = "micro_hubert"
output_dir = "{out}"
seed = 3
[data]
manifest = "{manifest}"
valid_split = "valid"
crop_samples = 8000
[model]
preset = "micro"
[targets]
clusters = 8
fit_frames = 2000
max_iterations = 20
[mask]
mask_time_prob = 0.5
mask_time_length = 4
[optim]
lr = 2e-3
weight_decay = 0.0
[train]
batch_size = 4
valid_batch_size = 4
max_steps = {steps}
eval_every = 4
timing_warmup_steps = 1
export = "f32"
"#,
        out = dir.join(out).display(),
        manifest = write_manifest(dir).display(),
    );
    PretrainConfig::parse(&text, &dir.join("pretrain.toml")).unwrap()
}

fn finished(outcome: PretrainOutcome) -> PretrainRecord {
    match outcome {
        PretrainOutcome::Finished(record) => *record,
        PretrainOutcome::Interrupted { steps } => panic!("interrupted at {steps}"),
    }
}

#[test]
fn the_masked_loss_falls_and_the_export_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "run", 24);
    let record = finished(pretrain(&cfg, &PretrainOptions::default()).unwrap());
    assert_eq!(record.steps, 24);
    assert_eq!(record.history.len(), 6);
    let first = &record.history[0];
    let last = record.history.last().unwrap();
    println!(
        "train loss {:.3} -> {:.3}, valid loss {:.3} -> {:.3}, accuracy {:.3} -> {:.3} (majority {:.3})",
        first.train_loss,
        last.train_loss,
        first.valid_loss,
        last.valid_loss,
        first.valid_masked_accuracy,
        last.valid_masked_accuracy,
        record.valid_majority_rate
    );
    assert!(last.train_loss < first.train_loss, "{:?}", record.history);
    assert!(record.train_labels.used_clusters > 1);
    assert!(record.valid_majority_rate > 0.0 && record.valid_majority_rate < 1.0);
    let model = Wav2Vec2Model::<Flex>::from_pretrained(&record.model_dir, &Default::default());
    assert!(model.is_ok(), "{:?}", model.err());
    assert!(record.model_dir.join("model.safetensors").is_file());
    // The model folder carries its own record and targets.
    let copied: PretrainRecord = serde_json::from_slice(
        &std::fs::read(record.model_dir.join("pretraining_record.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(copied, record);
    assert_eq!(
        std::fs::read(record.model_dir.join("targets.json")).unwrap(),
        std::fs::read(record.model_dir.parent().unwrap().join("targets.json")).unwrap()
    );
    // Finished: a second invocation does nothing and returns the same record.
    let again = finished(pretrain(&cfg, &PretrainOptions::default()).unwrap());
    assert_eq!(again, record);
}

#[test]
fn a_resumed_run_ends_exactly_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let straight = config(dir.path(), "straight", 12);
    let whole = finished(pretrain(&straight, &PretrainOptions::default()).unwrap());

    let split = config(dir.path(), "split", 12);
    let options = PretrainOptions {
        progress: false,
        interrupt_after_steps: Some(4),
    };
    match pretrain(&split, &options).unwrap() {
        PretrainOutcome::Interrupted { steps } => assert_eq!(steps, 4),
        PretrainOutcome::Finished(_) => panic!("the first invocation should stop at step 4"),
    }
    let resumed = finished(pretrain(&split, &PretrainOptions::default()).unwrap());
    let logs = |r: &PretrainRecord| {
        r.history
            .iter()
            .map(|l| (l.step, l.train_loss, l.valid_loss, l.valid_masked_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(&resumed), logs(&whole));
    let weights =
        |r: &PretrainRecord| std::fs::read(r.model_dir.join("model.safetensors")).unwrap();
    assert!(
        weights(&resumed) == weights(&whole),
        "the exported weights differ"
    );
}

#[test]
fn bad_settings_name_their_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "output_dir = \"x\"\n[data]\nmanifest = \"m.csv\"\n[model]\npreset = \"micro\"\n[mask]\nmask_time_prob = 0.0\n[train]\nmax_steps = 3\n";
    let err = PretrainConfig::parse(text, &dir.path().join("p.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("p.toml:7") && err.contains("mask.mask_time_prob"),
        "{err}"
    );
    let err = PretrainConfig::parse(
        &text.replace(
            "[mask]\nmask_time_prob = 0.0\n",
            "[targets]\nclusterz = 3\n",
        ),
        &dir.path().join("p.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("clusterz"), "{err}");
}
