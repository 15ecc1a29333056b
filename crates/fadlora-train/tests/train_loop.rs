//! End-to-end training on the bundled mini corpus with a micro wav2vec2 on the CPU backend.

use std::path::{Path, PathBuf};

use fadlora_model::LoraTarget;
use fadlora_run::EpochLog;
use fadlora_train::{train, RunConfig, RunRecord, TrainOptions, TrainOutcome};

mod common;

fn mini_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mini")
}

/// A run TOML for the micro network (width 32, 2 layers, 16-channel convolutions) on the first
/// `per_class` utterances of each class of each split, 8,000-sample crops.
/// Training crops are the first samples (`train_crop = "first"`), so the same inputs come back
/// every epoch and memorisation is possible in a few dozen steps. (Seeds 1, 2 and 3 bring the
/// training loss below 0.01 in 25 epochs; seed 7 draws a slow start and needs more.)
fn micro_run(out: &Path, per_class: usize, epochs: usize, extra: &str) -> RunConfig {
    let text = format!(
        r#"
name = "micro"
backend = "flex"
seed = 1
output_dir = "{out}"

[data]
dataset = "asvspoof2019:{corpus}"
eval_split = "eval"
crop_samples = 8000
train_crop = "first"
max_per_class = {per_class}

[model]
preset = "micro"

[optim]
kind = "adamw"
lr = 3e-3
weight_decay = 0.0
schedule = "constant"
grad_clip_norm = 5.0

[train]
batch_size = 4
epochs = {epochs}
score_train = true
timing_warmup_steps = 1
{extra}
"#,
        out = out.display(),
        corpus = mini_corpus().display(),
    );
    fadlora_train::parse_run_config(&text, Path::new("micro.toml")).expect("valid run TOML")
}

/// The whole eval split scored again from a finished run's folder, as `fadlora eval` does.
fn score_eval_again(run: &Path, config: &RunConfig) -> fadlora_train::scores::ScoredSet {
    let spec = fadlora_data::DatasetSpec::parse(&config.data.dataset).unwrap();
    fadlora_train::infer::evaluate_checkpoint(
        run,
        &spec,
        Some("eval"),
        config.backend,
        4,
        [0.5, 0.5],
    )
    .unwrap()
}

/// The eval scores a finished run wrote (`expected` of them, when given) come back, within
/// `tolerance`, when `best/` scores the eval split again as `fadlora eval` does.
fn assert_best_scores_again(
    run: &Path,
    config: &RunConfig,
    record: &RunRecord,
    expected: Option<usize>,
    tolerance: f64,
) {
    let scored = score_eval_again(run, config);
    let run_scores = fadlora_train::scores::read_score_file(
        &run.join(&record.eval.as_ref().unwrap().scores_file),
    )
    .unwrap();
    assert!(!run_scores.is_empty());
    if let Some(n) = expected {
        assert_eq!(run_scores.len(), n);
    }
    for (id, score) in &run_scores {
        let again = scored.scores.iter().find(|s| &s.id == id).unwrap().score;
        assert!(
            (again - score).abs() < tolerance,
            "{id}: {score} vs {again}"
        );
    }
}

/// Trains `config` until its first epoch is checkpointed, then stops as a killed run would.
fn train_one_epoch_then_stop(config: &RunConfig) {
    let interrupted = train(
        config,
        &TrainOptions {
            interrupt_after_epochs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        interrupted,
        TrainOutcome::Interrupted { epochs_done: 1 }
    ));
}

fn finished(outcome: TrainOutcome) -> RunRecord {
    match outcome {
        TrainOutcome::Finished(record) => *record,
        TrainOutcome::Interrupted { epochs_done } => panic!("interrupted after {epochs_done}"),
    }
}

/// Every file under `dir` with its modification time, sorted by path.
fn modification_times(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                out.push((entry.path(), meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() > 3, "a finished run folder: {out:?}");
    out
}

/// (epoch, steps, train loss, train EER, dev loss, dev EER, lr).
type EpochMetrics = (usize, u64, f64, Option<f64>, f64, f64, f64);

/// Everything about an epoch that must be reproducible (not its wall time).
fn metrics(history: &[EpochLog]) -> Vec<EpochMetrics> {
    history
        .iter()
        .map(|e| {
            (
                e.epoch,
                e.steps,
                e.train_loss,
                e.train_eer_percent,
                e.dev_loss,
                e.dev_eer_percent,
                e.lr,
            )
        })
        .collect()
}

#[test]
fn micro_model_overfits_a_handful_of_utterances() {
    let dir = tempfile::tempdir().unwrap();
    // Balanced class weights: with [0.1, 0.9] a micro model first spends its steps on the
    // class prior.
    let config = micro_run(dir.path(), 4, 25, "class_weights = [0.5, 0.5]");
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    let first = &record.epochs[0];
    let last = record.epochs.last().unwrap();
    for e in &record.epochs {
        eprintln!(
            "epoch {:2}: train loss {:.4} train EER {:?} dev EER {:.2}",
            e.epoch, e.train_loss, e.train_eer_percent, e.dev_eer_percent
        );
    }
    assert!(
        last.train_loss < 0.5 * first.train_loss,
        "training loss did not fall: {} -> {}",
        first.train_loss,
        last.train_loss
    );
    assert_eq!(
        last.train_eer_percent,
        Some(0.0),
        "train EER did not reach 0"
    );
    // Full fine-tuning: everything trains; the record carries the measurements.
    assert_eq!(record.mode, fadlora_run::Mode::Full);
    assert_eq!(record.params.trainable, record.params.total);
    assert!(record.memory.peak_mem_bytes.unwrap() > 0);
    assert!(record.step_time.unwrap().median_ms > 0.0);
    assert!(record.train_utt_per_s > 0.0 && record.eval_utt_per_s > 0.0);
    assert_eq!(record.dev.n_bonafide + record.dev.n_spoof, 8);
    let eval = record.eval.as_ref().unwrap();
    assert_eq!(eval.n_bonafide + eval.n_spoof, 8);
    // Score files are complete and give the recorded EER back.
    let scores =
        fadlora_train::scores::read_score_file(&dir.path().join(&eval.scores_file)).unwrap();
    assert_eq!(scores.len(), 8);
    let protocol =
        fadlora_train::scores::read_protocol(&format!("asvspoof2019:{}", mini_corpus().display()))
            .unwrap();
    let filter = fadlora_train::scores::ProtocolFilter {
        split: None,
        subset: None,
    };
    // The protocol holds every split; compare on the scored subset only.
    let scored: std::collections::HashSet<_> = scores.iter().map(|(id, _)| id.clone()).collect();
    let subset: Vec<_> = protocol
        .into_iter()
        .filter(|u| scored.contains(&u.id))
        .collect();
    let report = fadlora_train::scores::evaluate_scores(&scores, &subset, &filter, None).unwrap();
    assert_eq!(report.eer_percent, eval.eer_percent);
    // The record carries the EER's bootstrap interval and one EER per attack of the protocol,
    // each against every bona fide trial of the split.
    let ci = eval.eer_ci.expect("an EER interval");
    assert!(ci.low_percent <= eval.eer_percent && eval.eer_percent <= ci.high_percent);
    let attacks: std::collections::BTreeSet<&str> =
        subset.iter().filter_map(|u| u.system.as_deref()).collect();
    let recorded: std::collections::BTreeSet<&str> =
        eval.breakdown.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(recorded, attacks);
    for e in &eval.breakdown {
        assert_eq!(
            (e.factor.as_str(), e.n_bonafide),
            ("attack", eval.n_bonafide)
        );
        assert!(e.eer_ci.is_some());
    }
    // The record on disk is the one returned.
    let on_disk: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("record.json")).unwrap())
            .unwrap();
    assert_eq!(metrics(&on_disk.epochs), metrics(&record.epochs));
}

#[test]
fn same_seed_gives_identical_metrics_and_resume_reaches_the_same_end() {
    let epochs = 3;
    let extra = "";
    // Reference: uninterrupted.
    let a = tempfile::tempdir().unwrap();
    let ra = finished(
        train(
            &micro_run(a.path(), 3, epochs, extra),
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    // Same seed again, other folder: identical metrics.
    let b = tempfile::tempdir().unwrap();
    let rb = finished(
        train(
            &micro_run(b.path(), 3, epochs, extra),
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    assert_eq!(metrics(&ra.epochs), metrics(&rb.epochs));
    assert_eq!(ra.dev, SplitNoFile::strip(&rb.dev, &ra.dev));
    // Interrupted after the first epoch, then resumed: the same final metrics.
    let c = tempfile::tempdir().unwrap();
    let config = micro_run(c.path(), 3, epochs, extra);
    train_one_epoch_then_stop(&config);
    assert!(!c.path().join("record.json").exists());
    let rc = finished(train(&config, &TrainOptions::default()).unwrap());
    assert_eq!(metrics(&ra.epochs), metrics(&rc.epochs));
    assert_eq!(ra.dev.eer_percent, rc.dev.eer_percent);
    assert_eq!(ra.dev.loss, rc.dev.loss);
    assert_eq!(
        ra.eval.as_ref().unwrap().eer_percent,
        rc.eval.as_ref().unwrap().eer_percent
    );
    assert_eq!(
        std::fs::read_to_string(a.path().join("scores/eval.txt")).unwrap(),
        std::fs::read_to_string(c.path().join("scores/eval.txt")).unwrap()
    );
    // A finished run is not trained again: no file of its folder is written (a retrain would
    // rewrite the checkpoints, scores and record even if it reproduced every metric).
    let stamps_before = modification_times(c.path());
    let again = finished(train(&config, &TrainOptions::default()).unwrap());
    assert_eq!(metrics(&again.epochs), metrics(&rc.epochs));
    assert_eq!(modification_times(c.path()), stamps_before);
    // Another configuration in the same folder is refused.
    let changed = micro_run(c.path(), 3, epochs + 1, extra);
    let err = train(&changed, &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("different configuration"), "{err}");
}

/// RawBoost on the training utterances (`[data] augment`): the same seed gives the same losses,
/// also across an interruption, and the augmentation changes what the model trains on.
#[test]
fn rawboost_runs_are_reproducible_and_change_the_training_input() {
    let epochs = 2;
    let augmented = |out: &Path| {
        let mut config = micro_run(out, 3, epochs, "");
        config.data.augment = Some("rawboost:5".parse().unwrap());
        config
    };
    let a = tempfile::tempdir().unwrap();
    let ra = finished(train(&augmented(a.path()), &TrainOptions::default()).unwrap());
    let b = tempfile::tempdir().unwrap();
    let rb = finished(train(&augmented(b.path()), &TrainOptions::default()).unwrap());
    assert_eq!(metrics(&ra.epochs), metrics(&rb.epochs));
    assert!(std::fs::read_to_string(a.path().join("config.toml"))
        .unwrap()
        .contains("augment = \"rawboost:5\""));

    // Resumed after the first epoch: the second sees the augmentation of the uninterrupted run.
    let c = tempfile::tempdir().unwrap();
    let config = augmented(c.path());
    train_one_epoch_then_stop(&config);
    let rc = finished(train(&config, &TrainOptions::default()).unwrap());
    assert_eq!(metrics(&ra.epochs), metrics(&rc.epochs));

    // Without augmentation the same seed trains on the same first crops in the same order from
    // the same initialisation: only the inputs differ, and so does the first epoch's loss.
    let p = tempfile::tempdir().unwrap();
    let plain = finished(
        train(
            &micro_run(p.path(), 3, epochs, ""),
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    assert_ne!(plain.epochs[0].train_loss, ra.epochs[0].train_loss);

    // Evaluation is never augmented: the eval scores the run wrote are those of its best
    // checkpoint on the files as they are, as `fadlora eval` computes them again.
    assert_best_scores_again(a.path(), &augmented(a.path()), &ra, None, 1e-5);
}

/// Split results compare equal when everything but the file name matches.
struct SplitNoFile;
impl SplitNoFile {
    fn strip(
        r: &fadlora_run::SplitResult,
        like: &fadlora_run::SplitResult,
    ) -> fadlora_run::SplitResult {
        fadlora_run::SplitResult {
            scores_file: like.scores_file.clone(),
            ..r.clone()
        }
    }
}

#[test]
fn a_bf16_lora_run_trains_and_its_checkpoint_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = micro_run(dir.path(), 4, 2, "");
    config.precision = fadlora_model::Precision::Bf16;
    config.lora = Some(fadlora_train::config::LoraSection {
        rank: 4,
        alpha: None,
        dropout: 0.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
        layers: None,
        use_rslora: false,
        use_dora: false,
        moe: None,
    });
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    assert_eq!(record.config.precision, fadlora_model::Precision::Bf16);
    assert!(record.epochs.iter().all(|e| e.train_loss.is_finite()));
    // Inference rebuilds the detector in bf16 (every front-end weight in bf16, the head f32)
    // and scores the eval split again, as `fadlora eval` does.
    let scored = score_eval_again(dir.path(), &config);
    let spec = fadlora_data::DatasetSpec::parse(&config.data.dataset).unwrap();
    // `eval` scores the whole split (the run scored the first 4 of each class).
    let all_eval = fadlora_data::DatasetSpec::load(&spec)
        .unwrap()
        .into_iter()
        .filter(|u| u.split == fadlora_data::Split::parse("eval"))
        .count();
    assert_eq!(scored.scores.len(), all_eval);
    assert!(scored.scores.iter().all(|s| s.score.is_finite()));
}

/// Parameters of the detector saved in `best/` and of a fresh build of the same structure
/// from the same source, by path, computed on the backend's turn (building seeds the backend
/// RNG, which other tests' runs use).
struct TrainedAndFresh<'a>(&'a Path);

type Params = std::collections::BTreeMap<String, Vec<f32>>;

impl fadlora_train::BackendJob for TrainedAndFresh<'_> {
    type Output = (Params, Params);

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: fadlora_train::BackendEnv,
    ) -> Self::Output {
        let params = |module: &fadlora_train::Detector<B>| -> Params {
            common::snapshot(module)
                .into_iter()
                .map(|(path, data)| (path, data.convert::<f32>().to_vec().unwrap()))
                .collect()
        };
        let (trained, info) =
            fadlora_train::checkpoint::load_detector::<B>(&self.0.join("best"), &device).unwrap();
        let fresh = info.config.build::<B>(&info.source, &device).unwrap();
        (params(&trained), params(&fresh))
    }
}

#[test]
fn a_probe_trains_the_head_alone_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 3, "[probe]\nlayer = 1");
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    assert_eq!(record.mode, fadlora_run::Mode::Probe);
    // micro: width 32 -> Linear(32, 2).
    assert_eq!(record.params.trainable, 32 * 2 + 2);
    assert!(record.params.total > 100 * record.params.trainable);
    assert!(record.epochs.iter().all(|e| e.train_loss.is_finite()));

    // Checkpoints hold the head alone; the random front end is kept once in best/.
    let tensor_names = |file: &Path| {
        let bytes = std::fs::read(file).unwrap();
        let mut names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        names.sort();
        names
    };
    let head = [
        "head.MeanLinear.linear.bias",
        "head.MeanLinear.linear.weight",
    ];
    assert_eq!(
        tensor_names(&dir.path().join("best/trainable.safetensors")),
        head
    );
    let last_epoch = dir
        .path()
        .join("checkpoints/epoch-0003/trainable.safetensors");
    assert_eq!(tensor_names(&last_epoch), head);
    let base = tensor_names(&dir.path().join("best/base.safetensors"));
    assert!(base.iter().all(|n| n.starts_with("wav2vec2.")), "{base:?}");
    assert!(!dir.path().join("best/adapter").exists());

    // best/ rebuilds the backbone exactly as it was initialised, with a trained head.
    let (trained, fresh) =
        fadlora_train::run_on(config.backend, TrainedAndFresh(dir.path())).unwrap();
    assert_eq!(
        trained.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    for (path, values) in &trained {
        if path.starts_with("wav2vec2.") {
            assert!(
                values == &fresh[path],
                "{path} differs from its initial value"
            );
        } else {
            assert!(values != &fresh[path], "{path} did not train");
        }
    }

    // The eval scores of the run (its in-memory backbone) come back from best/ (the initial
    // backbone): the backbone did not move in training.
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-5);
}

#[test]
fn runs_from_a_checkpoint_are_reproducible() {
    // The head and adapters of a run on a pretrained backbone come from the run seed like
    // everything else, so two invocations of the same run agree exactly.
    let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/wav2vec2/stable_layer/safetensors_parametrizations");
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let mut config = micro_run(
            &dir.path().join(name),
            2,
            1,
            "[lora]\nrank = 2\ntargets = [\"q\", \"v\"]\n",
        );
        config.model.preset = None;
        config.model.checkpoint = Some(checkpoint.clone());
        finished(train(&config, &TrainOptions::default()).unwrap())
    };
    let (first, second) = (run("first"), run("second"));
    assert_eq!(first.epochs.len(), 1);
    assert_eq!(
        first.epochs[0].train_loss.to_bits(),
        second.epochs[0].train_loss.to_bits(),
        "{:?} vs {:?}",
        first.epochs,
        second.epochs
    );
    let scores = |name: &str| {
        std::fs::read_to_string(dir.path().join(name).join("scores/eval.txt")).unwrap()
    };
    assert_eq!(scores("first"), scores("second"));
}

/// DoRA end to end: the magnitudes train, are saved with the adapters, and `best/` (rebuilt,
/// merged for inference) gives back the run's eval scores.
#[test]
fn a_dora_run_trains_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(
        dir.path(),
        4,
        2,
        "[lora]\nrank = 2\ntargets = [\"q\", \"v\", \"ffn_out\"]\nuse_dora = true\n",
    );
    assert!(config.lora.as_ref().unwrap().use_dora);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // micro: width 32, FFN 64; q and v: A 32x2 + B 2x32 + m 32; ffn_out: A 64x2 + B 2x32 + m 32.
    let per_layer = 2 * (64 + 64 + 32) + (128 + 64 + 32);
    assert_eq!(record.params.trainable, 2 * per_layer + 32 * 2 + 2);
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// A mixture of LoRA experts end to end, with top-1 routing and the load-balancing loss: the
/// experts and routers train (the checkpoint holds them and the head, nothing else), no PEFT
/// copy is written (PEFT has no such layout), and `best/` rebuilt gives back the run's eval
/// scores.
#[test]
fn a_moe_lora_run_trains_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(
        dir.path(),
        4,
        2,
        "[lora]\nrank = 2\ntargets = [\"q\", \"v\"]\n\n[lora.moe]\nexperts = 3\nrouting = \"top1\"\nbalance_loss = 0.1\n",
    );
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    assert!(record.epochs.iter().all(|e| e.train_loss.is_finite()));
    // micro: width 32; q and v: 3 experts' A 32x2 and B 2x32, and a router 32x3.
    let per_projection = 3 * (64 + 64) + 32 * 3;
    assert_eq!(record.params.trainable, 2 * 2 * per_projection + 32 * 2 + 2);
    let names = checkpointed_names(dir.path());
    assert_eq!(names.len(), 2 * 2 * 3 + 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.contains(".moe.") || n.starts_with("head.")),
        "{names:?}"
    );
    assert!(!dir.path().join("best").join("adapter").exists());
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// The bona fide logit (index 1) of the detector in `best/` for every eval utterance of the
/// run, each forwarded alone, computed on the backend's turn.
struct BonafideLogits<'a> {
    run: &'a Path,
    config: &'a RunConfig,
}

impl fadlora_train::BackendJob for BonafideLogits<'_> {
    type Output = (fadlora_train::checkpoint::DetectorFile, Vec<(String, f64)>);

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: fadlora_train::BackendEnv,
    ) -> Self::Output {
        use burn::prelude::*;
        let (model, info) =
            fadlora_train::checkpoint::load_detector::<B>(&self.run.join("best"), &device).unwrap();
        let spec = fadlora_data::DatasetSpec::parse(&self.config.data.dataset).unwrap();
        let eval: Vec<_> = spec
            .load()
            .unwrap()
            .into_iter()
            .filter(|u| u.split == fadlora_data::Split::parse("eval"))
            .collect();
        let ds = fadlora_data::AudioDataset::new(
            eval,
            self.config.data.crop_samples,
            fadlora_data::CropMode::First,
        );
        let logits = (0..ds.len())
            .map(|i| {
                let wave = ds.waveform(i).unwrap();
                let n = wave.len();
                let input = Tensor::<B, 2>::from_data(TensorData::new(wave, [1, n]), &device);
                let row: Vec<f32> = model
                    .forward(input)
                    .into_data()
                    .convert::<f32>()
                    .to_vec()
                    .unwrap();
                (ds.utterances()[i].id.clone(), f64::from(row[1]))
            })
            .collect();
        (info, logits)
    }
}

#[test]
fn a_bonafide_logit_run_scores_with_the_second_logit_and_its_detector_keeps_the_choice() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 3, 1, "\n[head]\nscore = \"bonafide-logit\"\n");
    assert_eq!(config.head.score, fadlora_run::ScoreKind::BonafideLogit);
    finished(train(&config, &TrainOptions::default()).unwrap());
    let (info, logits) = fadlora_train::run_on(
        config.backend,
        BonafideLogits {
            run: dir.path(),
            config: &config,
        },
    )
    .unwrap();
    assert_eq!(info.score, fadlora_run::ScoreKind::BonafideLogit);
    let logit_of = |id: &str| {
        logits
            .iter()
            .find(|(u, _)| u == id)
            .map(|(_, l)| *l)
            .unwrap_or_else(|| panic!("{id} is no eval utterance"))
    };
    // The run's own score file, written while training (batches of 4, autodiff backend)...
    let written =
        fadlora_run::scores::read_score_file(&dir.path().join("scores/eval.txt")).unwrap();
    assert_eq!(written.len(), 6);
    for (id, score) in &written {
        assert!(
            (score - logit_of(id)).abs() < 1e-4,
            "{id}: {score} vs {}",
            logit_of(id)
        );
    }
    // ...and `fadlora eval` on the saved detector, which reads the choice from detector.json.
    let again = score_eval_again(dir.path(), &config);
    assert_eq!(again.scores.len(), logits.len());
    for s in &again.scores {
        assert!((s.score - logit_of(&s.id)).abs() < 1e-4, "{}", s.id);
    }
    // A detector.json written before the key existed still loads, as a logit-difference one.
    let path = dir
        .path()
        .join("best")
        .join(fadlora_train::checkpoint::DETECTOR_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("score");
    let old: fadlora_train::checkpoint::DetectorFile = serde_json::from_value(json).unwrap();
    assert_eq!(old.score, fadlora_run::ScoreKind::LogitDifference);
}

#[test]
fn an_aasist_head_trains_saves_its_batchnorm_statistics_and_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(
        dir.path(),
        3,
        1,
        "[probe]\nlayer = 2\n\n[head]\nkind = \"aasist\"\n",
    );
    assert_eq!(config.head.kind, fadlora_run::HeadKind::Aasist);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    assert!(record.epochs.iter().all(|e| e.train_loss.is_finite()));
    // The whole head trains: SSL_Anti-spoofing's back end on width-32 features has 320,266
    // parameters in PyTorch's count (fixtures/aasist/reference.json).
    assert_eq!(record.params.trainable, 320_266);

    // The checkpoint holds the head's parameters and its BatchNorm running statistics, which
    // training moved away from their initial 0 and 1.
    let bytes = std::fs::read(dir.path().join("best/trainable.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = file.names();
    assert!(
        names.iter().all(|n| n.starts_with("head.Aasist.")),
        "{names:?}"
    );
    for stat in ["first_bn.running_mean", "gat_layer_s.bn.running_var"] {
        let view = file.tensor(&format!("head.Aasist.{stat}")).unwrap();
        let initial = if stat.ends_with("mean") { 0.0 } else { 1.0 };
        let moved = view
            .data()
            .chunks_exact(4)
            .any(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) != initial);
        assert!(moved, "{stat} kept its initial value");
    }

    // `fadlora eval` on best/ gives the scores the run wrote.
    assert_best_scores_again(dir.path(), &config, &record, Some(6), 1e-5);
}

/// (IA)^3 end to end: only the vectors and the head train, and `best/` (rebuilt, merged for
/// inference) gives back the run's eval scores.
#[test]
fn an_ia3_run_trains_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[ia3]\n");
    assert_eq!(config.mode(), fadlora_run::Mode::Ia3);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // micro: width 32, FFN 64. Defaults: k and v outputs (32 each) and the input of
    // output_dense (64), in both layers; plus the head's Linear(32, 2).
    assert_eq!(record.params.trainable, 2 * (32 + 32 + 64) + 32 * 2 + 2);
    assert!(dir
        .path()
        .join("best/adapter/adapter_config.json")
        .is_file());
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// MMS adapter layers end to end: only the adapters and the head train (the checkpoint holds
/// nothing else), and `best/` rebuilt gives back the run's eval scores.
#[test]
fn an_adapter_run_trains_only_its_adapters_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[adapter]\nsize = 4\n");
    assert_eq!(config.mode(), fadlora_run::Mode::Adapter);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // micro: width 32, 2 layers. Per layer LayerNorm 2*32, linear_1 32*4 + 4, linear_2
    // 4*32 + 32 = 356; plus the head's Linear(32, 2).
    assert_eq!(record.params.trainable, 2 * 356 + 32 * 2 + 2);
    let names = checkpointed_names(dir.path());
    assert!(
        names
            .iter()
            .all(|n| n.contains(".adapter_layer.") || n.starts_with("head.")),
        "{names:?}"
    );
    assert_eq!(names.len(), 2 * 6 + 2);
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// Partial fine-tuning end to end: the top encoder layer and the head train (the checkpoint
/// holds nothing else), and `best/` rebuilt gives back the run's eval scores.
#[test]
fn a_partial_run_trains_only_its_top_layer_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[partial]\nlayers = \"top\"\ncount = 1\n");
    assert_eq!(config.mode(), fadlora_run::Mode::Partial);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // micro: width 32, FFN 64. Layer 1: q/k/v/o 4 x (32x32 + 32), FFN 32x64 + 64 and 64x32
    // + 32, two LayerNorms 2 x 64 = 8,544; plus the head's Linear(32, 2).
    assert_eq!(record.params.trainable, 8544 + 32 * 2 + 2);
    let names = checkpointed_names(dir.path());
    assert!(
        names
            .iter()
            .all(|n| n.contains("encoder.layers.1.") || n.starts_with("head.")),
        "{names:?}"
    );
    // 16 tensors of the layer (weight and bias of 6 Linears and 2 LayerNorms), 2 of the head.
    assert_eq!(names.len(), 16 + 2);
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// A layer sum end to end: only the hidden states' weights and the head train (the checkpoint
/// holds nothing else), and `best/` rebuilt gives back the run's eval scores.
#[test]
fn a_layer_sum_run_trains_only_its_weights_and_head_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[layer_sum]\n");
    assert_eq!(config.mode(), fadlora_run::Mode::LayerSum);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // micro: 2 layers, so 3 hidden states; plus the head's Linear(32, 2).
    assert_eq!(record.params.trainable, 3 + 32 * 2 + 2);
    let names = checkpointed_names(dir.path());
    assert_eq!(
        names,
        [
            "head.MeanLinear.linear.bias",
            "head.MeanLinear.linear.weight",
            "layer_weights"
        ]
    );
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// The SLS head end to end (full fine-tuning, as its paper trains it): the head reads every
/// encoder layer, its BatchNorm's running statistics are checkpointed with the trainable
/// tensors, and `best/` rebuilt gives back the run's eval scores.
#[test]
fn an_sls_head_run_trains_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[head]\nkind = \"sls\"\n");
    assert_eq!(config.head.kind, fadlora_run::HeadKind::Sls);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // 8,000 samples give micro 24 frames, pooled 8 x floor(32 / 3) = 80: fc0 32 + 1,
    // first_bn 2, fc1 80 x 1024 + 1024, fc3 1024 x 2 + 2; everything trains.
    let head = 33 + 2 + 80 * 1024 + 1024 + 2050;
    let front = fadlora_model::count_params(
        &fadlora_model::Wav2Vec2Config::micro().init::<burn::backend::Flex>(&Default::default()),
    );
    assert_eq!(record.params.total, front + head);
    assert_eq!(record.params.trainable, record.params.total);
    let names = checkpointed_names(dir.path());
    assert!(
        names.iter().any(|n| n.ends_with("first_bn.running_mean")),
        "{names:?}"
    );
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// The SLS head on a frozen front end (the sweep's `sls` method): the head alone trains, the
/// checkpoint holds the head and its BatchNorm statistics only, and `best/` rebuilt gives back
/// the run's eval scores.
#[test]
fn an_sls_head_on_a_frozen_front_end_trains_alone_and_its_best_folder_scores_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = micro_run(dir.path(), 4, 2, "[head]\nkind = \"sls\"\n\n[frozen]\n");
    assert_eq!(config.mode(), fadlora_run::Mode::Frozen);
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    // As the fully trained SLS run above, the head alone: fc0 32 + 1, first_bn 2,
    // fc1 80 x 1024 + 1024, fc3 1024 x 2 + 2.
    assert_eq!(record.params.trainable, 33 + 2 + 80 * 1024 + 1024 + 2050);
    let names = checkpointed_names(dir.path());
    assert!(names.iter().all(|n| n.starts_with("head.")), "{names:?}");
    assert_best_scores_again(dir.path(), &config, &record, Some(8), 1e-4);
}

/// A CSV list of eval trials past the first four of each class (so not those the run's own
/// eval split scores): four of each class marked `eval`, and two marked `train` that the
/// entry's `split` must leave out.
fn write_extra_list(dir: &Path) -> PathBuf {
    let protocol = std::fs::read_to_string(
        mini_corpus().join("ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt"),
    )
    .unwrap();
    let (mut bona, mut spoof) = (0, 0);
    let mut csv = String::from("path,label,system,split,id\n");
    for line in protocol.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (id, system, label) = (fields[1], fields[3], fields[4]);
        let count = if label == "bonafide" {
            &mut bona
        } else {
            &mut spoof
        };
        *count += 1;
        let split = match *count {
            5..=8 => "eval",
            9 => "train",
            _ => continue,
        };
        let path = mini_corpus().join(format!("ASVspoof2019_LA_eval/flac/{id}.flac"));
        let system = if system == "-" { "" } else { system };
        csv.push_str(&format!(
            "{},{label},{system},{split},{id}\n",
            path.display()
        ));
    }
    assert_eq!(
        (bona.min(9), spoof.min(9)),
        (9, 9),
        "the mini corpus is big enough"
    );
    let list = dir.join("extra.csv");
    std::fs::write(&list, csv).unwrap();
    list
}

#[test]
fn an_extra_eval_set_is_scored_recorded_and_matches_fadlora_eval() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_extra_list(dir.path());
    let out = dir.path().join("run");
    let mut config = micro_run(&out, 4, 3, "class_weights = [0.5, 0.5]");
    config.eval_sets = fadlora_train::parse_run_config(
        &format!(
            "output_dir = \"x\"\n[data]\ndataset = \"csv:x.csv\"\n[model]\npreset = \"micro\"\n\
             [[eval_sets]]\nname = \"csv-extra\"\ndataset = \"csv:{}\"\nsplit = \"eval\"\n",
            list.display()
        ),
        Path::new("sets.toml"),
    )
    .unwrap()
    .eval_sets;
    let record = finished(train(&config, &TrainOptions::default()).unwrap());

    assert_eq!(record.extra_evals.len(), 1);
    let extra = &record.extra_evals[0];
    assert_eq!(extra.name, "csv-extra");
    assert_eq!(extra.result.split, "eval");
    assert_eq!(extra.result.scores_file, "scores/csv-extra.txt");
    // The `train` rows are left out.
    assert_eq!((extra.result.n_bonafide, extra.result.n_spoof), (4, 4));
    assert!(extra.result.min_tdcf.is_none());
    let ci = extra.result.eer_ci.expect("an EER interval");
    assert!(
        ci.low_percent <= extra.result.eer_percent && extra.result.eer_percent <= ci.high_percent
    );
    assert!(
        extra.result.breakdown.iter().any(|e| e.factor == "attack"),
        "{:?}",
        extra.result.breakdown
    );
    let run_scores =
        fadlora_train::scores::read_score_file(&out.join(&extra.result.scores_file)).unwrap();
    assert_eq!(run_scores.len(), 8);
    // The main eval split's scores are still there, under their own name.
    assert!(out
        .join(&record.eval.as_ref().unwrap().scores_file)
        .is_file());

    // `fadlora eval` on the same list gives the same scores and EER.
    let spec = fadlora_data::DatasetSpec::parse(&format!("csv:{}", list.display())).unwrap();
    let again = fadlora_train::infer::evaluate_checkpoint(
        &out,
        &spec,
        Some("eval"),
        config.backend,
        config.train.eval_batch_size(),
        config.train.class_weights,
    )
    .unwrap();
    assert_eq!(again.scores.len(), 8);
    for (id, score) in &run_scores {
        let other = again.scores.iter().find(|s| &s.id == id).unwrap().score;
        assert!((other - score).abs() < 1e-5, "{id}: {score} vs {other}");
    }
    assert_eq!(again.eer.eer * 100.0, extra.result.eer_percent);
    assert_eq!(again.eer.threshold, extra.result.threshold);

    // The record on disk reads back with the set.
    let on_disk: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(on_disk.extra_evals, record.extra_evals);
}

/// For every eval utterance of the run (first `per_class` of each class), the score of the
/// detector in `best/` with the file forwarded alone: at full length, and cut to the first
/// `crop` samples (tiled when short). Decoded here with fadlora-audio, not the dataset code
/// under test.
struct AloneScores<'a> {
    run: &'a Path,
    config: &'a RunConfig,
    per_class: usize,
}

/// (id, whole-file score, fixed-window score, samples in the file).
type Alone = Vec<(String, f64, f64, usize)>;

impl fadlora_train::BackendJob for AloneScores<'_> {
    type Output = Alone;

    fn run<B: fadlora_model::ModelBackend>(
        self,
        device: B::Device,
        _env: fadlora_train::BackendEnv,
    ) -> Self::Output {
        use burn::prelude::*;
        let (model, info) =
            fadlora_train::checkpoint::load_detector::<B>(&self.run.join("best"), &device).unwrap();
        let spec = fadlora_data::DatasetSpec::parse(&self.config.data.dataset).unwrap();
        let eval = fadlora_train::data::select_split(
            &spec.load().unwrap(),
            &spec,
            "eval",
            Some(self.per_class),
        )
        .unwrap();
        let score = |wave: Vec<f32>| {
            let n = wave.len();
            let input = Tensor::<B, 2>::from_data(TensorData::new(wave, [1, n]), &device);
            let row: Vec<f32> = model
                .forward(input)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap();
            info.score.of(f64::from(row[0]), f64::from(row[1]))
        };
        eval.iter()
            .map(|u| {
                let audio = fadlora_audio::load_mono_16k(&u.path).unwrap();
                let fixed = fadlora_audio::fixed_length(&audio, self.config.data.crop_samples);
                (
                    u.id.clone(),
                    score(audio.clone()),
                    score(fixed),
                    audio.len(),
                )
            })
            .collect()
    }
}

#[test]
fn whole_utterance_scores_equal_each_file_forwarded_alone_at_full_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = micro_run(dir.path(), 4, 2, "class_weights = [0.5, 0.5]");
    config.data.eval_window = fadlora_run::EvalWindow::Whole;
    let record = finished(train(&config, &TrainOptions::default()).unwrap());
    let eval = record.eval.as_ref().unwrap();
    let run_scores =
        fadlora_train::scores::read_score_file(&dir.path().join(&eval.scores_file)).unwrap();
    assert_eq!(run_scores.len(), 8);
    let alone = fadlora_train::run_on(
        config.backend,
        AloneScores {
            run: dir.path(),
            config: &config,
            per_class: 4,
        },
    )
    .unwrap();
    assert_eq!(alone.len(), 8);
    // Files longer than the fixed window: there the two windows must give different inputs.
    let crop = config.data.crop_samples;
    assert!(
        alone.iter().any(|(.., n)| *n > crop),
        "no eval file longer than {crop} samples"
    );
    let mut differ = 0;
    for (id, whole, fixed, n) in &alone {
        let run = run_scores.iter().find(|(i, _)| i == id).unwrap().1;
        assert!(
            (run - whole).abs() < 1e-5,
            "{id} ({n} samples): {run} vs {whole}"
        );
        if *n > crop && (run - fixed).abs() > 1e-5 {
            differ += 1;
        }
    }
    assert!(
        differ > 0,
        "whole-file scores equal the fixed window's: {alone:?}"
    );
    // The detector keeps the window: `fadlora eval` scores whole files too.
    let again = score_eval_again(dir.path(), &config);
    for (id, whole, ..) in &alone {
        let other = again.scores.iter().find(|s| &s.id == id).unwrap().score;
        assert!((other - whole).abs() < 1e-5, "{id}: {other} vs {whole}");
    }
}

/// The tensor names of a run's `best/trainable.safetensors`, sorted.
fn checkpointed_names(run: &Path) -> Vec<String> {
    let bytes = std::fs::read(run.join("best/trainable.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    names
}
