//! Scoring whole audio files with a trained detector: every file is cut into windows of the
//! detector's training length, windows from many files are scored together in batches while
//! the next files decode on other threads, and each file gets a per-window timeline and one
//! aggregated score. A file that cannot be read gets its error instead; the others still score.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use burn::prelude::*;
use fadlora_audio::{load_mono_16k, normalize_zero_mean_unit_variance, window, window_starts};
use fadlora_audio::{AudioError, TARGET_SAMPLE_RATE};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{run_on, BackendEnv, BackendJob};
use crate::checkpoint::{load_detector, DetectorFile};
use crate::config::NormalizationChoice;
use crate::detector::{score, Detector};
use crate::infer::resolve_checkpoint;
use crate::TrainError;
use fadlora_run::BackendKind;

/// How a file's window scores become its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// The average window: robust when the whole file is of one kind.
    #[default]
    Mean,
    /// The most spoof-like window: one fake segment makes the file fake.
    Min,
    /// The most bona-fide-like window.
    Max,
}

impl Aggregate {
    pub const NAMES: [&'static str; 3] = ["mean", "min", "max"];

    pub fn apply(self, scores: &[f64]) -> f64 {
        match self {
            Aggregate::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Aggregate::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

impl std::str::FromStr for Aggregate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Aggregate::Mean),
            "min" => Ok(Aggregate::Min),
            "max" => Ok(Aggregate::Max),
            other => Err(format!(
                "unknown aggregate `{other}` (expected one of {})",
                Aggregate::NAMES.join(", ")
            )),
        }
    }
}

impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Aggregate::NAMES[*self as usize])
    }
}

#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Samples (at 16 kHz) between window starts; `None` = half the training length.
    pub hop_samples: Option<usize>,
    /// Only the first window of each file, as `fadlora eval` scores an utterance.
    pub first_window_only: bool,
    pub aggregate: Aggregate,
    /// Windows per forward pass, drawn from as many files as it takes to fill it.
    pub batch_size: usize,
    /// Threads decoding and resampling files while the model scores.
    pub decode_threads: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            hop_samples: None,
            first_window_only: false,
            aggregate: Aggregate::Mean,
            batch_size: 16,
            decode_threads: default_decode_threads(),
        }
    }
}

/// Half the cores: the other half runs the model on a CPU backend.
pub fn default_decode_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

/// One scored window; times are in seconds of the file at 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowScore {
    pub start_s: f64,
    pub end_s: f64,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileScore {
    pub duration_s: f64,
    /// The aggregate of the window scores.
    pub score: f64,
    pub windows: Vec<WindowScore>,
}

pub struct DetectOutcome {
    /// One entry per input file, in input order.
    pub files: Vec<Result<FileScore, AudioError>>,
    pub info: DetectorFile,
    pub window_samples: usize,
    pub hop_samples: usize,
    pub windows_scored: usize,
    /// Wall time from the model being loaded to the last score.
    pub seconds: f64,
    pub device_name: String,
}

impl DetectOutcome {
    pub fn failed(&self) -> usize {
        self.files.iter().filter(|f| f.is_err()).count()
    }
}

/// Scores every file in `files` with the detector in `checkpoint` (a run folder or `best/`).
/// `on_file_done` is called (from the scoring thread) each time a file is finished or fails.
pub fn detect_files(
    checkpoint: &Path,
    files: &[PathBuf],
    options: &DetectOptions,
    backend: BackendKind,
    on_file_done: &(dyn Fn() + Sync),
) -> Result<DetectOutcome, TrainError> {
    if options.batch_size == 0 {
        return Err(TrainError::Invalid(
            "the batch size must be at least 1".into(),
        ));
    }
    if options.hop_samples == Some(0) {
        return Err(TrainError::Invalid(
            "the hop must be at least one sample".into(),
        ));
    }
    let dir = resolve_checkpoint(checkpoint)?;
    struct Job<'a> {
        dir: &'a Path,
        files: &'a [PathBuf],
        options: &'a DetectOptions,
        on_file_done: &'a (dyn Fn() + Sync),
    }
    impl BackendJob for Job<'_> {
        type Output = Result<DetectOutcome, TrainError>;
        fn run<B: fadlora_model::ModelBackend>(
            self,
            device: B::Device,
            env: BackendEnv,
        ) -> Self::Output {
            let (model, info) = load_detector::<B>(self.dir, &device)?;
            let model = model.merge_adapters()?;
            let window_samples = info.crop_samples;
            let hop_samples = self
                .options
                .hop_samples
                .unwrap_or((window_samples / 2).max(1));
            let started = Instant::now();
            let mut scorer = Scorer {
                model: &model,
                device: &device,
                window_samples,
                normalize: info.normalization == NormalizationChoice::ZeroMeanUnitVariance,
                score_kind: info.score,
                batch_size: self.options.batch_size,
                pending_samples: Vec::new(),
                pending_owners: Vec::new(),
                files: (0..self.files.len()).map(|_| None).collect(),
                windows_scored: 0,
                on_file_done: self.on_file_done,
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(self.options.decode_threads.max(1))
                .thread_name(|i| format!("fadlora-decode-{i}"))
                .build()
                .map_err(|e| TrainError::Invalid(format!("decode threads: {e}")))?;
            // A small queue bounds the decoded audio held in memory; the decode threads are
            // their own pool so that waiting on a full queue never blocks the pool a CPU
            // backend computes on.
            let (sender, receiver) = mpsc::sync_channel(2 * self.options.batch_size.max(4));
            let files = self.files;
            std::thread::scope(|scope| -> Result<(), TrainError> {
                scope.spawn(move || {
                    pool.install(|| {
                        files.par_iter().enumerate().for_each_with(
                            sender,
                            |sender, (index, path)| {
                                // The receiver only goes away when scoring failed.
                                let _ = sender.send((index, load_mono_16k(path)));
                            },
                        )
                    })
                });
                for (index, audio) in receiver {
                    match audio {
                        Ok(samples) => {
                            let starts = if self.options.first_window_only {
                                vec![0]
                            } else {
                                window_starts(samples.len(), window_samples, hop_samples)
                            };
                            scorer.add_file(index, &samples, &starts)?;
                        }
                        Err(error) => scorer.fail_file(index, error),
                    }
                }
                scorer.flush()
            })?;
            let windows_scored = scorer.windows_scored;
            let aggregate = self.options.aggregate;
            let files = scorer
                .files
                .into_iter()
                .map(|slot| {
                    let slot = slot.expect("every file was decoded or failed");
                    slot.map(|partial| {
                        let scores: Vec<f64> = partial.windows.iter().map(|w| w.score).collect();
                        FileScore {
                            duration_s: partial.samples as f64 / f64::from(TARGET_SAMPLE_RATE),
                            score: aggregate.apply(&scores),
                            windows: partial.windows,
                        }
                    })
                })
                .collect();
            Ok(DetectOutcome {
                files,
                info,
                window_samples,
                hop_samples,
                windows_scored,
                seconds: started.elapsed().as_secs_f64(),
                device_name: env.device_name,
            })
        }
    }
    run_on(
        backend,
        Job {
            dir: &dir,
            files,
            options,
            on_file_done,
        },
    )?
}

struct PartialFile {
    samples: usize,
    windows: Vec<WindowScore>,
    unscored: usize,
}

/// Collects windows from files as they arrive and scores them a full batch at a time.
struct Scorer<'a, B: fadlora_model::ModelBackend> {
    model: &'a Detector<B>,
    device: &'a B::Device,
    window_samples: usize,
    normalize: bool,
    /// The run's score (saved with the detector), so a file scores as the run's eval did.
    score_kind: fadlora_run::ScoreKind,
    batch_size: usize,
    pending_samples: Vec<f32>,
    /// (file index, window index) of each pending window.
    pending_owners: Vec<(usize, usize)>,
    files: Vec<Option<Result<PartialFile, AudioError>>>,
    windows_scored: usize,
    on_file_done: &'a (dyn Fn() + Sync),
}

impl<B: fadlora_model::ModelBackend> Scorer<'_, B> {
    fn add_file(
        &mut self,
        index: usize,
        samples: &[f32],
        starts: &[usize],
    ) -> Result<(), TrainError> {
        let rate = f64::from(TARGET_SAMPLE_RATE);
        let windows = starts
            .iter()
            .map(|&start| WindowScore {
                start_s: start as f64 / rate,
                end_s: (start + self.window_samples).min(samples.len().max(start)) as f64 / rate,
                score: f64::NAN,
            })
            .collect();
        self.files[index] = Some(Ok(PartialFile {
            samples: samples.len(),
            windows,
            unscored: starts.len(),
        }));
        for (window_index, &start) in starts.iter().enumerate() {
            let mut wave = window(samples, start, self.window_samples);
            if self.normalize {
                normalize_zero_mean_unit_variance(&mut wave);
            }
            self.pending_samples.extend_from_slice(&wave);
            self.pending_owners.push((index, window_index));
            if self.pending_owners.len() == self.batch_size {
                self.score_pending()?;
            }
        }
        Ok(())
    }

    fn fail_file(&mut self, index: usize, error: AudioError) {
        self.files[index] = Some(Err(error));
        (self.on_file_done)();
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        if !self.pending_owners.is_empty() {
            self.score_pending()?;
        }
        Ok(())
    }

    fn score_pending(&mut self) -> Result<(), TrainError> {
        let batch = self.pending_owners.len();
        let input = Tensor::<B, 2>::from_data(
            TensorData::new(
                std::mem::take(&mut self.pending_samples),
                [batch, self.window_samples],
            ),
            self.device,
        );
        let scores: Vec<f32> = score(self.model.forward(input), self.score_kind)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| TrainError::Invalid(format!("reading scores back: {e:?}")))?;
        for ((file, window_index), score) in self.pending_owners.drain(..).zip(scores) {
            let Some(Ok(partial)) = &mut self.files[file] else {
                unreachable!("windows are queued only for decoded files");
            };
            partial.windows[window_index].score = f64::from(score);
            partial.unscored -= 1;
            if partial.unscored == 0 {
                (self.on_file_done)();
            }
        }
        self.windows_scored += batch;
        Ok(())
    }
}
