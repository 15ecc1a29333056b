//! Whole-file detection: windows that cover a long file, batched scores equal to scoring each
//! window alone, and unreadable files answered with their error while the others score.

use std::path::{Path, PathBuf};

use fadlora_audio::{load_mono_16k, window_starts, AudioError};
use fadlora_train::detect::{detect_files, Aggregate, DetectOptions, FileScore};
use fadlora_train::{train, BackendKind, TrainOptions, TrainOutcome};

fn mini_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mini")
}

/// A detector trained for one epoch on 4 + 4 utterances: its scores are not meaningful, only
/// the machinery around them is tested. Windows are 8,000 samples (0.5 s).
fn micro_detector(out: &Path) -> PathBuf {
    let text = format!(
        r#"
name = "micro"
backend = "flex"
seed = 3
output_dir = "{out}"
[data]
dataset = "asvspoof2019:{corpus}"
eval_split = "eval"
crop_samples = 8000
max_per_class = 4
normalization = "zero-mean-unit-variance"
[model]
preset = "micro"
[lora]
rank = 2
targets = ["q", "v"]
[train]
batch_size = 4
epochs = 1
timing_warmup_steps = 1
"#,
        out = out.display(),
        corpus = mini_corpus().display(),
    );
    let config = fadlora_train::parse_run_config(&text, Path::new("micro.toml")).unwrap();
    match train(&config, &TrainOptions::default()).unwrap() {
        TrainOutcome::Finished(_) => out.to_path_buf(),
        TrainOutcome::Interrupted { .. } => panic!("interrupted"),
    }
}

fn eval_flacs(n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(mini_corpus().join("ASVspoof2019_LA_eval/flac"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    files.truncate(n);
    files
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

fn scored(result: &Result<FileScore, AudioError>) -> &FileScore {
    result.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn windows_cover_a_long_file_and_each_scores_as_if_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_detector(&dir.path().join("run"));
    // Three utterances back to back: several seconds, not a multiple of the hop.
    let mut long = Vec::new();
    for file in eval_flacs(3) {
        long.extend(load_mono_16k(&file).unwrap());
    }
    long.truncate(long.len() - 123);
    let long_path = dir.path().join("long.wav");
    write_wav_f32(&long_path, &long);
    let short_path = dir.path().join("short.wav");
    write_wav_f32(&short_path, &long[..3_000]);

    // A batch of 3 windows: batches straddle files, and the last one is partial.
    let options = DetectOptions {
        hop_samples: Some(3_000),
        batch_size: 3,
        decode_threads: 2,
        aggregate: Aggregate::Min,
        ..Default::default()
    };
    let outcome = detect_files(
        &run,
        &[short_path.clone(), long_path.clone()],
        &options,
        BackendKind::Flex,
        &|| {},
    )
    .unwrap();
    assert_eq!(outcome.window_samples, 8_000);
    let short = scored(&outcome.files[0]);
    assert_eq!(short.windows.len(), 1);
    assert_eq!(short.windows[0].end_s, 3_000.0 / 16_000.0);
    let long_score = scored(&outcome.files[1]);

    let starts = window_starts(long.len(), 8_000, 3_000);
    assert!(starts.len() > 4, "{} windows", starts.len());
    assert_eq!(long_score.windows.len(), starts.len());
    assert_eq!(long_score.windows[0].start_s, 0.0);
    assert_eq!(
        long_score.windows.last().unwrap().end_s,
        long.len() as f64 / 16_000.0,
        "the last window ends where the file ends"
    );
    let min = long_score
        .windows
        .iter()
        .map(|w| w.score)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(long_score.score, min);

    // Every window written out on its own and scored as a one-window file.
    let alone_paths: Vec<PathBuf> = starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let path = dir.path().join(format!("window{i}.wav"));
            write_wav_f32(&path, &long[start..start + 8_000]);
            path
        })
        .collect();
    let alone = detect_files(
        &run,
        &alone_paths,
        &DetectOptions {
            batch_size: 1,
            first_window_only: true,
            ..Default::default()
        },
        BackendKind::Flex,
        &|| {},
    )
    .unwrap();
    for (i, (window, single)) in long_score.windows.iter().zip(&alone.files).enumerate() {
        let single = scored(single);
        assert_eq!(single.windows.len(), 1);
        assert_eq!(window.start_s, starts[i] as f64 / 16_000.0);
        assert!(
            (window.score - single.score).abs() < 1e-4,
            "window {i}: batched {} alone {}",
            window.score,
            single.score
        );
    }
    // The windows do not all score the same (they would if the timeline were broken).
    let first = long_score.windows[0].score;
    assert!(long_score
        .windows
        .iter()
        .any(|w| (w.score - first).abs() > 1e-4));
}

#[test]
fn unreadable_files_get_their_error_and_the_others_still_score() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_detector(&dir.path().join("run"));
    let good = eval_flacs(2);
    let truncated = dir.path().join("truncated.flac");
    let bytes = std::fs::read(&good[0]).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF\x10\x00\x00\x00WAVEnot really").unwrap();
    let missing = dir.path().join("missing.flac");
    let inputs = vec![
        truncated.clone(),
        good[0].clone(),
        missing.clone(),
        garbage.clone(),
        good[1].clone(),
    ];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcome = detect_files(
        &run,
        &inputs,
        &DetectOptions::default(),
        BackendKind::Flex,
        &|| {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(
        done.into_inner(),
        inputs.len(),
        "progress counts every file"
    );
    assert_eq!(outcome.failed(), 3);
    for (input, result) in inputs.iter().zip(&outcome.files) {
        match result {
            Ok(file) => {
                assert!(good.contains(input), "{} scored", input.display());
                assert!(file.score.is_finite());
            }
            Err(error) => assert_eq!(error.path(), Some(input.as_path()), "{error}"),
        }
    }
    assert!(matches!(
        outcome.files[0],
        Err(AudioError::Truncated { .. })
    ));
    assert!(outcome.files[2].as_ref().unwrap_err().is_missing());
}
