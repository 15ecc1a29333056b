//! The quickstart's detector (full fine-tuning of the bundled pretrained checkpoint, seed 0,
//! exactly as `experiments/quickstart.toml` plans it) on a file spliced from a bundled bona fide
//! utterance and a bundled spoof: the timeline turns where the spoof begins.
//!
//! The two utterances are the first eval bona fide (by id) whose every window the detector
//! accepts when scored alone, and the first eval spoof whose every window it rejects: the test
//! is about where the timeline places each window, not about how accurate the detector is
//! (that is the report's job). The bona fide part is cut to a whole number of hops, so each
//! window of the spliced file that lies inside one part is a window that part had alone.

use std::path::{Path, PathBuf};

use fadlora_audio::load_mono_16k;
use fadlora_data::{DatasetSpec, Label, Split};
use fadlora_sweep::{Experiment, Mode};
use fadlora_train::config::MODEL_RULES;
use fadlora_train::detect::{detect_files, DetectOptions, FileScore};
use fadlora_train::{train, BackendKind, TrainOptions, TrainOutcome};

const HOP: usize = 4_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn write_wav_f32(path: &Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
}

fn options() -> DetectOptions {
    DetectOptions {
        hop_samples: Some(HOP),
        ..Default::default()
    }
}

#[test]
fn a_spoof_spliced_after_bona_fide_speech_shows_in_the_timeline() {
    let results = tempfile::tempdir().unwrap();
    let experiment =
        Experiment::load(repo().join("experiments/quickstart.toml"), MODEL_RULES).unwrap();
    let plan = experiment.plan(results.path()).unwrap();
    let run = plan
        .runs
        .iter()
        .find(|r| r.axes.mode == Mode::Full && r.config.seed == 0)
        .expect("the quickstart plans full fine-tuning with seed 0");
    let detector = run.config.output_dir.clone();
    match train(&run.config, &TrainOptions::default()).unwrap() {
        TrainOutcome::Finished(_) => {}
        TrainOutcome::Interrupted { .. } => panic!("interrupted"),
    }

    let spec = DatasetSpec::parse(&run.config.data.dataset).unwrap();
    let mut eval: Vec<_> = spec
        .load()
        .unwrap()
        .into_iter()
        .filter(|u| u.split == Split::Eval)
        .collect();
    eval.sort_by(|a, b| a.id.cmp(&b.id));
    let paths: Vec<PathBuf> = eval.iter().map(|u| u.path.clone()).collect();
    // Files are scored a few at a time, in id order, until both picks are found: scoring the
    // whole eval split would be most of this test's time.
    let qualifies = |accepted: bool, f: &FileScore, threshold: f64| {
        f.duration_s >= 2.0 && f.windows.iter().all(|w| (w.score > threshold) == accepted)
    };
    let (mut bona_index, mut spoof_index) = (None, None);
    let (mut threshold, mut window) = (f64::NAN, 0);
    for (chunk_index, chunk) in paths.chunks(24).enumerate() {
        let scored = detect_files(&detector, chunk, &options(), BackendKind::Flex, &|| {}).unwrap();
        threshold = scored.info.dev_eer_threshold.unwrap();
        window = scored.window_samples;
        for (offset, file) in scored.files.iter().enumerate() {
            let i = chunk_index * 24 + offset;
            let file = file.as_ref().unwrap();
            match eval[i].label {
                Label::Bonafide if bona_index.is_none() && qualifies(true, file, threshold) => {
                    bona_index = Some(i)
                }
                Label::Spoof if spoof_index.is_none() && qualifies(false, file, threshold) => {
                    spoof_index = Some(i)
                }
                _ => {}
            }
        }
        if bona_index.is_some() && spoof_index.is_some() {
            break;
        }
    }
    let bona_index = bona_index.expect("an eval bona fide utterance scored all-accepted");
    let spoof_index = spoof_index.expect("an eval spoof scored all-rejected");

    let mut bona = load_mono_16k(&paths[bona_index]).unwrap();
    bona.truncate(bona.len() / HOP * HOP);
    let spoof = load_mono_16k(&paths[spoof_index]).unwrap();
    let spliced_path = results.path().join("spliced.wav");
    write_wav_f32(&spliced_path, &[bona.clone(), spoof.clone()].concat());
    let spliced = detect_files(
        &detector,
        &[spliced_path],
        &options(),
        BackendKind::Flex,
        &|| {},
    )
    .unwrap();
    let timeline = spliced.files[0].as_ref().unwrap();

    eprintln!(
        "{} ({:.2} s, bona fide) + {} ({:.2} s, spoof), threshold {threshold:.4}:",
        eval[bona_index].id,
        bona.len() as f64 / 16_000.0,
        eval[spoof_index].id,
        spoof.len() as f64 / 16_000.0,
    );
    let boundary_s = bona.len() as f64 / 16_000.0;
    let (mut in_bona, mut in_spoof) = (0, 0);
    for w in &timeline.windows {
        let part = if w.end_s <= boundary_s {
            in_bona += 1;
            assert!(w.score > threshold, "bona fide window {w:?}");
            "bona fide"
        } else if w.start_s >= boundary_s {
            in_spoof += 1;
            assert!(w.score <= threshold, "spoof window {w:?}");
            "spoof"
        } else {
            "both"
        };
        eprintln!(
            "  {:5.2}-{:5.2} s  {:+.4}  {}  ({part})",
            w.start_s,
            w.end_s,
            w.score,
            if w.score > threshold {
                "bonafide"
            } else {
                "spoof"
            }
        );
    }
    assert!(
        in_bona >= 1 && in_spoof >= 1,
        "{in_bona} bona fide and {in_spoof} spoof windows"
    );
    assert!(
        window <= bona.len(),
        "the bona fide part holds a whole window"
    );
}
