//! The pretraining loop: one invocation trains (or resumes) a run folder.
//!
//! ```text
//! <output_dir>/
//!   .train.lock          the run lock (fadlora_run::lock)
//!   config.toml          the resolved configuration (a resumed run must match it)
//!   targets.json         k-means centroids of MFCC frames, fitted on the training audio
//!   progress.json        steps done, validation history, step times
//!   checkpoint/          model.safetensors + optimizer.mpk of the last validated step
//!   model/               the pretrained wav2vec2 in Hugging Face layout (written at the end),
//!                        with copies of the record (pretraining_record.json) and targets.json,
//!                        so the folder says how it was made wherever it is copied
//!   record.json          written last: the run is finished exactly when it exists
//! ```
//!
//! Every random draw of step `s` (crops, masks, dropout, LayerDrop) comes from a generator
//! seeded by (seed, s), so a run resumed from a checkpoint continues exactly as the
//! uninterrupted run would have.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_store::ModuleSnapshot;
use fadlora_data::{DatasetSpec, Split, Utterance};
use fadlora_model::{
    ExportDtype, ExportOptions, ModelBackend, TrainBackend, Wav2Vec2Config,
    Wav2Vec2ForMaskedPrediction,
};
use fadlora_run::layout::{CONFIG_FILE, PRETRAINING_RECORD_FILE, PROGRESS_FILE, RECORD_FILE};
use fadlora_run::record::{PeakMemory, TimeStats};
use fadlora_run::{write_atomic, LockTiming, RunLock};
use fadlora_ssl::mask::{compute_mask_indices, MaskConfig};
use fadlora_train::checkpoint::{load_optimizer, load_params, save_optimizer, save_params};
use fadlora_train::train::mix;
use fadlora_train::{run_on, BackendEnv, BackendJob};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{ExportPrecision, PretrainConfig};
use crate::targets::{usage, TargetModel, UsageSummary, FRAME_SHIFT};
use crate::PretrainError;

pub const TARGETS_FILE: &str = "targets.json";
pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const MODEL_DIR: &str = "model";
const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.mpk";

#[derive(Debug, Clone, Default)]
pub struct PretrainOptions {
    pub progress: bool,
    /// Tests: stop after this many steps of this invocation (at a checkpoint), as a kill would.
    pub interrupt_after_steps: Option<u64>,
}

#[derive(Debug)]
pub enum PretrainOutcome {
    Finished(Box<PretrainRecord>),
    Interrupted { steps: u64 },
}

/// One validation: masked prediction on the held-out audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidLog {
    pub step: u64,
    /// Mean training loss over the steps since the previous validation.
    pub train_loss: f64,
    pub valid_loss: f64,
    /// Share of masked validation frames whose cluster the model names right.
    pub valid_masked_accuracy: f64,
    pub lr: f64,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    steps: u64,
    history: Vec<ValidLog>,
    step_ms: Vec<f64>,
    wall_seconds: f64,
    /// Training losses since the last validation (a resumed run continues the mean).
    pending_losses: Vec<f64>,
}

/// `record.json` of a pretraining run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    pub name: Option<String>,
    pub backend: String,
    pub device: String,
    pub architecture: Wav2Vec2Config,
    pub parameters: usize,
    pub train_utterances: usize,
    pub train_minutes: f64,
    pub valid_utterances: usize,
    pub clusters: usize,
    pub kmeans_fit_frames: usize,
    pub kmeans_iterations: usize,
    pub kmeans_converged: bool,
    pub train_labels: UsageSummary,
    pub valid_labels: UsageSummary,
    /// Accuracy of always naming the most frequent training cluster, on the masked
    /// validation frames: the rate to beat.
    pub valid_majority_rate: f64,
    pub steps: u64,
    pub history: Vec<ValidLog>,
    pub final_valid_masked_accuracy: f64,
    pub step_time: Option<TimeStats>,
    pub memory: PeakMemory,
    pub wall_seconds: f64,
    /// The exported Hugging Face folder.
    pub model_dir: PathBuf,
}

/// Pretrains (or resumes) the run `config` describes on its backend.
pub fn pretrain(
    config: &PretrainConfig,
    options: &PretrainOptions,
) -> Result<PretrainOutcome, PretrainError> {
    let _span = tracing::info_span!("pretrain", run = %config.output_dir.display()).entered();
    run_on(config.backend, Job { config, options })?
}

struct Job<'a> {
    config: &'a PretrainConfig,
    options: &'a PretrainOptions,
}

impl BackendJob for Job<'_> {
    type Output = Result<PretrainOutcome, PretrainError>;

    fn run<B: ModelBackend>(self, device: B::Device, env: BackendEnv) -> Self::Output {
        let optim = fadlora_train::train::adamw_config(&self.config.optim)
            .init::<burn::backend::Autodiff<B>, Wav2Vec2ForMaskedPrediction<burn::backend::Autodiff<B>>>();
        run_pretraining::<burn::backend::Autodiff<B>, _>(
            self.config,
            self.options,
            device,
            env,
            optim,
        )
    }
}

const STREAM_INIT: u64 = 1;
const STREAM_BATCH: u64 = 2;
const STREAM_BACKEND: u64 = 3;
const STREAM_VALID: u64 = 4;
const STREAM_KMEANS: u64 = 5;

fn io_err(path: &Path, e: std::io::Error) -> PretrainError {
    fadlora_run::RunError::io(path, e).into()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, PretrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| PretrainError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PretrainError> {
    let json = serde_json::to_string_pretty(value).expect("serialisable");
    Ok(write_atomic(path, json.as_bytes())?)
}

/// Audio of one split, decoded, with each utterance's frame labels.
struct SplitAudio {
    audio: Vec<Vec<f32>>,
    labels: Vec<Vec<u32>>,
}

fn load_split(
    utterances: &[Utterance],
    crop: usize,
) -> Result<(Vec<Vec<f32>>, usize), PretrainError> {
    let paths: Vec<PathBuf> = utterances.iter().map(|u| u.path.clone()).collect();
    let mut audio = Vec::with_capacity(paths.len());
    let mut short = 0;
    for (path, decoded) in paths.iter().zip(fadlora_audio::load_many_mono_16k(&paths)) {
        let samples = decoded.map_err(|e| PretrainError::Audio {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // A window must fit: shorter utterances cannot give a whole crop.
        if samples.len() < crop {
            short += 1;
            continue;
        }
        audio.push(samples);
    }
    Ok((audio, short))
}

/// A batch: `[batch, crop]` inputs normalised per window (as Wav2Vec2FeatureExtractor's
/// `do_normalize`), `[batch, frames]` labels and mask.
struct Batch<B: Backend> {
    input: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
}

fn make_batch<B: Backend>(
    split: &SplitAudio,
    picks: &[(usize, usize)],
    crop: usize,
    frames: usize,
    mask: &MaskConfig,
    rng: &mut StdRng,
    device: &B::Device,
) -> Result<Batch<B>, PretrainError> {
    let mut input = Vec::with_capacity(picks.len() * crop);
    let mut targets = Vec::with_capacity(picks.len() * frames);
    for &(utterance, first_frame) in picks {
        let start = first_frame * FRAME_SHIFT;
        let window = &split.audio[utterance][start..start + crop];
        let mean = window.iter().map(|&x| x as f64).sum::<f64>() / crop as f64;
        let var = window
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / crop as f64;
        let scale = 1.0 / (var + 1e-7).sqrt();
        input.extend(window.iter().map(|&x| ((x as f64 - mean) * scale) as f32));
        let labels = &split.labels[utterance][first_frame..first_frame + frames];
        targets.extend(labels.iter().map(|&l| l as i64));
    }
    let drawn = compute_mask_indices(picks.len(), frames, mask, None, rng)
        .map_err(|e| PretrainError::Invalid(format!("masking: {e}")))?;
    Ok(Batch {
        input: Tensor::from_data(TensorData::new(input, [picks.len(), crop]), device),
        targets: Tensor::from_data(TensorData::new(targets, [picks.len(), frames]), device),
        mask: Tensor::from_data(
            TensorData::new(drawn.as_slice().to_vec(), [picks.len(), frames]),
            device,
        ),
    })
}

/// The last frame a window may start at in an utterance of `samples` with `label_frames`.
fn last_start(samples: usize, label_frames: usize, crop: usize, frames: usize) -> usize {
    ((samples - crop) / FRAME_SHIFT).min(label_frames - frames)
}

fn run_pretraining<B, O>(
    config: &PretrainConfig,
    options: &PretrainOptions,
    device: B::Device,
    mut env: BackendEnv,
    optim: O,
) -> Result<PretrainOutcome, PretrainError>
where
    B: TrainBackend,
    O: Optimizer<Wav2Vec2ForMaskedPrediction<B>, B>,
{
    let invocation = Instant::now();
    let out = &config.output_dir;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let lock = RunLock::acquire(out, LockTiming::default())?;
    let config_path = out.join(CONFIG_FILE);
    let progress_path = out.join(PROGRESS_FILE);
    let record_path = out.join(RECORD_FILE);
    let resolved = config.to_toml();
    if progress_path.is_file() {
        let old = std::fs::read_to_string(&config_path).unwrap_or_default();
        if old != resolved {
            return Err(PretrainError::Invalid(format!(
                "{} holds a pretraining run with another configuration; use another output_dir",
                out.display()
            )));
        }
    } else {
        write_atomic(&config_path, resolved.as_bytes())?;
    }
    if record_path.is_file() {
        return Ok(PretrainOutcome::Finished(Box::new(read_json(
            &record_path,
        )?)));
    }
    fadlora_run::fs::remove_stale_temporaries(out);
    let mut progress: Progress = if progress_path.is_file() {
        read_json(&progress_path)?
    } else {
        Progress::default()
    };

    // Data and targets.
    let arch = fadlora_train::config::wav2vec2_config(&config.model)?;
    let crop = config.data.crop_samples;
    let frames = arch.num_frames(crop).ok_or_else(|| {
        PretrainError::Invalid(format!(
            "data.crop_samples = {crop} is shorter than the model's receptive field ({})",
            arch.receptive_field()
        ))
    })?;
    let mfcc_frames = crate::targets::extractor().config().num_frames(crop);
    if frames > mfcc_frames {
        return Err(PretrainError::Invalid(format!(
            "the model gives {frames} frames per window, the MFCC targets {mfcc_frames}: the feature encoder must have a 400-sample receptive field and a 320-sample stride"
        )));
    }
    let spec = DatasetSpec::parse(&format!("csv:{}", config.data.manifest.display()))?;
    let all = spec.load()?;
    // Labels do not matter here (a detector's splits need both classes; these do not).
    let pick = |name: &str| -> Vec<Utterance> {
        let wanted = Split::parse(name);
        all.iter().filter(|u| u.split == wanted).cloned().collect()
    };
    let train_utts = pick(&config.data.train_split);
    let valid_utts = pick(&config.data.valid_split);
    let (train_audio, train_short) = load_split(&train_utts, crop)?;
    let (valid_audio, valid_short) = load_split(&valid_utts, crop)?;
    if train_audio.is_empty() || valid_audio.is_empty() {
        return Err(PretrainError::Invalid(format!(
            "{}: no {} utterance of at least {crop} samples",
            config.data.manifest.display(),
            if train_audio.is_empty() {
                "training"
            } else {
                "validation"
            }
        )));
    }
    tracing::info!(
        train = train_audio.len(),
        train_too_short = train_short,
        valid = valid_audio.len(),
        valid_too_short = valid_short,
        "audio decoded"
    );
    let targets_path = out.join(crate::pretrain::TARGETS_FILE);
    let targets = if targets_path.is_file() {
        TargetModel::read(&targets_path)?
    } else {
        let fitted = TargetModel::fit(
            &train_audio,
            &config.targets,
            mix(config.seed, STREAM_KMEANS, 0),
        )?;
        write_json(&targets_path, &fitted)?;
        fitted
    };
    let train = SplitAudio {
        labels: targets.label(&train_audio)?,
        audio: train_audio,
    };
    let valid = SplitAudio {
        labels: targets.label(&valid_audio)?,
        audio: valid_audio,
    };
    let train_labels = usage(&train.labels, targets.clusters)?;
    let valid_labels = usage(&valid.labels, targets.clusters)?;
    let majority_cluster = {
        let mut counts = vec![0usize; targets.clusters];
        train
            .labels
            .iter()
            .flatten()
            .for_each(|&l| counts[l as usize] += 1);
        (0..targets.clusters)
            .max_by_key(|&c| counts[c])
            .unwrap_or(0) as u32
    };
    tracing::info!(
        clusters = targets.clusters,
        used = train_labels.used_clusters,
        majority = train_labels.majority_fraction,
        perplexity = train_labels.perplexity,
        "targets ready"
    );

    // Network.
    B::seed(&device, mix(config.seed, STREAM_INIT, 0));
    // Parameter IDs by module order, not random: the optimizer state of a checkpoint is keyed
    // by them, and a resumed invocation builds the network anew.
    let mut model: Wav2Vec2ForMaskedPrediction<B> = fadlora_train::detector::assign_param_ids(
        arch.init_masked_prediction(targets.clusters, &device),
    );
    let paths: BTreeSet<String> = model
        .collect(None, None, false)
        .iter()
        .map(|s| s.full_path())
        .collect();
    let parameters: usize = model.num_params();
    let mut optim = optim;
    let checkpoint = out.join(CHECKPOINT_DIR);
    if progress.steps > 0 {
        model = load_params(model, &checkpoint.join(MODEL_FILE))?;
        optim = load_optimizer::<B, _, O>(optim, &checkpoint.join(OPTIMIZER_FILE), &device)?;
        tracing::info!(steps = progress.steps, "resuming");
    }

    let mask = MaskConfig {
        mask_prob: config.mask.mask_time_prob,
        mask_length: config.mask.mask_time_length,
        min_masks: config.mask.mask_time_min_masks,
    };
    let total = config.train.max_steps;
    let bar = if options.progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(progress.steps);
        bar
    } else {
        ProgressBar::hidden()
    };
    let prior_wall = progress.wall_seconds;
    let wall = |invocation: &Instant| prior_wall + invocation.elapsed().as_secs_f64();
    let mut steps_this_invocation = 0;
    env.memory.reset();
    while progress.steps < total {
        let step = progress.steps;
        let mut rng = StdRng::seed_from_u64(mix(config.seed, STREAM_BATCH, step));
        let picks: Vec<(usize, usize)> = (0..config.train.batch_size)
            .map(|_| {
                let u = rng.random_range(0..train.audio.len());
                let last = last_start(train.audio[u].len(), train.labels[u].len(), crop, frames);
                (u, rng.random_range(0..=last))
            })
            .collect();
        let batch = make_batch::<B>(&train, &picks, crop, frames, &mask, &mut rng, &device)?;
        B::seed(&device, mix(config.seed, STREAM_BACKEND, step));
        model
            .wav2vec2
            .encoder
            .layerdrop_rng
            .reseed(mix(config.seed, STREAM_BACKEND, step));
        let started = Instant::now();
        let out_step = model.loss(batch.input, batch.mask, batch.targets);
        let grads = GradientsParams::from_grads(out_step.loss.backward(), &model);
        let lr = config.optim.learning_rate(step, total);
        model = optim.step(lr, model, grads);
        let loss = out_step.loss.into_scalar().elem::<f64>();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        env.memory.sample();
        if step >= config.train.timing_warmup_steps {
            progress.step_ms.push(ms);
        }
        progress.pending_losses.push(loss);
        progress.steps += 1;
        steps_this_invocation += 1;
        bar.set_position(progress.steps);
        bar.set_message(format!("loss {loss:.3}"));

        let at_eval =
            progress.steps.is_multiple_of(config.train.eval_every) || progress.steps == total;
        if at_eval {
            let (valid_loss, accuracy) = validate(
                &model.valid(),
                &valid,
                crop,
                frames,
                &mask,
                config.seed,
                config.train.valid_batch_size,
                &device,
            )?;
            let train_loss = progress.pending_losses.iter().sum::<f64>()
                / progress.pending_losses.len().max(1) as f64;
            progress.pending_losses.clear();
            let log = ValidLog {
                step: progress.steps,
                train_loss,
                valid_loss,
                valid_masked_accuracy: accuracy,
                lr,
                wall_seconds: wall(&invocation),
            };
            tracing::info!(
                step = log.step,
                train_loss = log.train_loss,
                valid_loss = log.valid_loss,
                valid_masked_accuracy = log.valid_masked_accuracy,
                "validated"
            );
            progress.history.push(log);
            progress.wall_seconds = wall(&invocation);
            lock.check_held()?;
            save_checkpoint::<B, O>(&model, &optim, &paths, &checkpoint)?;
            write_json(&progress_path, &progress)?;
            if options
                .interrupt_after_steps
                .is_some_and(|n| steps_this_invocation >= n)
                && progress.steps < total
            {
                bar.abandon();
                return Ok(PretrainOutcome::Interrupted {
                    steps: progress.steps,
                });
            }
        }
    }
    bar.finish_and_clear();

    // The majority rate on exactly the masked frames validation scores.
    let majority_rate = majority_rate(
        &valid,
        frames,
        &mask,
        config.seed,
        config.train.valid_batch_size,
        majority_cluster,
    )?;
    let model_dir = out.join(MODEL_DIR);
    let export = ExportOptions {
        dtype: match config.train.export {
            ExportPrecision::F32 => ExportDtype::F32,
            ExportPrecision::F16 => ExportDtype::F16,
        },
        mask_time_prob: config.mask.mask_time_prob,
        mask_time_length: config.mask.mask_time_length,
        do_normalize: true,
    };
    lock.check_held()?;
    model
        .valid()
        .wav2vec2
        .save_pretrained(&model_dir, &export)?;
    let record = PretrainRecord {
        name: config.name.clone(),
        backend: env.kind.to_string(),
        device: env.device_name.clone(),
        architecture: arch,
        parameters,
        train_utterances: train.audio.len(),
        train_minutes: train.audio.iter().map(Vec::len).sum::<usize>() as f64 / 16000.0 / 60.0,
        valid_utterances: valid.audio.len(),
        clusters: targets.clusters,
        kmeans_fit_frames: targets.fit_frames,
        kmeans_iterations: targets.iterations,
        kmeans_converged: targets.converged,
        train_labels,
        valid_labels,
        valid_majority_rate: majority_rate,
        steps: progress.steps,
        final_valid_masked_accuracy: progress
            .history
            .last()
            .map_or(0.0, |l| l.valid_masked_accuracy),
        history: progress.history.clone(),
        step_time: TimeStats::of(&progress.step_ms),
        memory: env.memory.peak(),
        wall_seconds: wall(&invocation),
        model_dir,
    };
    write_json(&record.model_dir.join(PRETRAINING_RECORD_FILE), &record)?;
    let targets_copy = record.model_dir.join(TARGETS_FILE);
    std::fs::copy(out.join(TARGETS_FILE), &targets_copy).map_err(|e| io_err(&targets_copy, e))?;
    write_json(&record_path, &record)?;
    Ok(PretrainOutcome::Finished(Box::new(record)))
}

fn save_checkpoint<B, O>(
    model: &Wav2Vec2ForMaskedPrediction<B>,
    optim: &O,
    paths: &BTreeSet<String>,
    dir: &Path,
) -> Result<(), PretrainError>
where
    B: AutodiffBackend,
    O: Optimizer<Wav2Vec2ForMaskedPrediction<B>, B>,
{
    // Written beside, then renamed: the previous checkpoint stays whole until the new one is.
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| io_err(&partial, e))?;
    save_params(model, paths, &partial.join(MODEL_FILE))?;
    save_optimizer::<B, _, O>(optim, &partial.join(OPTIMIZER_FILE))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&partial, dir).map_err(|e| io_err(dir, e))?;
    Ok(())
}

/// The validation windows: the first window of each utterance, with masks drawn from a fixed
/// generator, so every validation scores the same frames.
fn valid_batches(valid: &SplitAudio, batch_size: usize) -> Vec<Vec<(usize, usize)>> {
    (0..valid.audio.len())
        .map(|u| (u, 0))
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .map(<[_]>::to_vec)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn validate<B: ModelBackend>(
    model: &Wav2Vec2ForMaskedPrediction<B>,
    valid: &SplitAudio,
    crop: usize,
    frames: usize,
    mask: &MaskConfig,
    seed: u64,
    batch_size: usize,
    device: &B::Device,
) -> Result<(f64, f64), PretrainError> {
    let (mut loss_sum, mut correct, mut masked) = (0.0, 0usize, 0usize);
    for (i, picks) in valid_batches(valid, batch_size).iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(mix(seed, STREAM_VALID, i as u64));
        let batch = make_batch::<B>(valid, picks, crop, frames, mask, &mut rng, device)?;
        let out = model.loss(batch.input, batch.mask, batch.targets);
        loss_sum += out.loss.into_scalar().elem::<f64>() * out.masked as f64;
        correct += out.correct.into_scalar().elem::<i64>().max(0) as usize;
        masked += out.masked;
    }
    let masked = masked.max(1) as f64;
    Ok((loss_sum / masked, correct as f64 / masked))
}

fn majority_rate(
    valid: &SplitAudio,
    frames: usize,
    mask: &MaskConfig,
    seed: u64,
    batch_size: usize,
    majority: u32,
) -> Result<f64, PretrainError> {
    let (mut hits, mut masked) = (0usize, 0usize);
    for (i, picks) in valid_batches(valid, batch_size).iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(mix(seed, STREAM_VALID, i as u64));
        let drawn = compute_mask_indices(picks.len(), frames, mask, None, &mut rng)
            .map_err(|e| PretrainError::Invalid(format!("masking: {e}")))?;
        for (row, &(u, first)) in picks.iter().enumerate() {
            for (t, &m) in drawn.row(row).iter().enumerate() {
                if m {
                    masked += 1;
                    hits += usize::from(valid.labels[u][first + t] == majority);
                }
            }
        }
    }
    Ok(hits as f64 / masked.max(1) as f64)
}
