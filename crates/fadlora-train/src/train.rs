//! The training loop.
//!
//! Why not burn-train's `Learner`: its checkpointer saves the whole model record every epoch
//! (1.2 GB for XLS-R, where LoRA needs a few MB of adapters), its validation metrics are
//! per-batch aggregates (the dev EER needs every score of the epoch at once), it has no
//! optimizer-step budget, it does not expose per-step timings, and its resume restores the
//! model but not our data order. This loop does those things and stays small: one
//! `forward -> weighted CE -> backward -> (accumulate) -> clip -> step` per batch, on any
//! `Autodiff<B>`.
//!
//! Reproducibility: the backend RNG is seeded from (seed, epoch) at the start of every epoch,
//! the shuffle order and random crops depend only on (seed, epoch, index), and parameter ids
//! are positional; so a run resumed from an epoch checkpoint continues exactly as the
//! uninterrupted run would have (on the CPU backend, whose kernels are deterministic).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{
    decay::WeightDecayConfig, AdamConfig, AdamWConfig, GradientsAccumulator, GradientsParams,
    Optimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fadlora_data::{AudioDataset, CropMode};
use fadlora_model::{ModelBackend, TrainBackend};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::backend::{run_on, BackendEnv, BackendJob};
use crate::checkpoint::{
    load_optimizer, load_params, save_optimizer, save_params, write_detector_file, DetectorFile,
    BASE_FILE, DETECTOR_FILE, OPTIMIZER_FILE, TRAINABLE_FILE,
};
use crate::config::{OptimKind, RunConfig, ScheduleKind, SelectionMetric, TrainCrop};
use crate::data::{select_split, stack, Prefetch};
use crate::detector::{param_paths, weighted_cross_entropy, BaseSource, Detector, DetectorConfig};
use crate::measure::{git_commit, TimeStats};
use crate::record::{EpochLog, RunRecord, SplitResult, RECORD_VERSION};
use crate::scores::{
    read_asv_scores, score_dataset, split_by_label, write_atomic, write_score_file, ScoredSet,
    TEMP_SUFFIX,
};
use crate::TrainError;

pub const PROGRESS_FILE: &str = "progress.json";
pub const RECORD_FILE: &str = "record.json";
pub const CONFIG_FILE: &str = "config.toml";
/// `best/adapter/`: the selected LoRA adapters in PEFT's layout (`adapter_config.json` +
/// `adapter_model.safetensors`).
pub const ADAPTER_DIR: &str = "adapter";

/// How a training invocation behaves beyond the run TOML.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Return [`TrainOutcome::Interrupted`] after this many epochs of this invocation have been
    /// checkpointed, as if the process had been killed then (for tests of resuming).
    pub interrupt_after_epochs: Option<usize>,
}

#[derive(Debug)]
pub enum TrainOutcome {
    Finished(Box<RunRecord>),
    /// Stopped by [`TrainOptions::interrupt_after_epochs`]; run again to resume.
    Interrupted {
        epochs_done: usize,
    },
}

/// Saved after every epoch (`progress.json`), written last so it only ever points at complete
/// checkpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    epochs_done: usize,
    steps: u64,
    best: Option<Best>,
    epochs_without_improvement: usize,
    history: Vec<EpochLog>,
    /// Post-warm-up step times so far (ms), so a resumed run reports all of them.
    step_times_ms: Vec<f64>,
    /// Steps seen by the timing warm-up so far.
    steps_timed: usize,
    train_seconds: f64,
    train_utterances: u64,
    wall_seconds: f64,
    stopped_early: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Best {
    epoch: usize,
    dev_eer: f64,
    dev_loss: f64,
    /// For `best/detector.json`, which a resumed invocation may have to write.
    #[serde(default)]
    dev_eer_threshold: Option<f64>,
}

impl Best {
    fn is_beaten_by(&self, metric: SelectionMetric, eer: f64, loss: f64) -> bool {
        match metric {
            SelectionMetric::DevEer => {
                eer < self.dev_eer || (eer == self.dev_eer && loss < self.dev_loss)
            }
            SelectionMetric::DevLoss => loss < self.dev_loss,
        }
    }
}

/// Trains (or resumes) the run described by `config` on its backend. Runs in one process take
/// turns with every other backend job ([`run_on`]), so the seeded streams stay their own.
pub fn train(config: &RunConfig, options: &TrainOptions) -> Result<TrainOutcome, TrainError> {
    run_on(config.backend, TrainJob { config, options })?
}

struct TrainJob<'a> {
    config: &'a RunConfig,
    options: &'a TrainOptions,
}

impl BackendJob for TrainJob<'_> {
    type Output = Result<TrainOutcome, TrainError>;

    fn run<B: ModelBackend>(self, device: B::Device, env: BackendEnv) -> Self::Output {
        let o = &self.config.optim;
        // Gradient clipping is done globally in `clip_global_norm`, not by burn's per-tensor
        // clipping, to match PyTorch's `clip_grad_norm_`.
        match o.kind {
            OptimKind::Adam => {
                let weight_decay =
                    (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
                let optim = AdamConfig::new()
                    .with_beta_1(o.beta1 as f32)
                    .with_beta_2(o.beta2 as f32)
                    .with_epsilon(o.epsilon as f32)
                    .with_weight_decay(weight_decay)
                    .init::<Autodiff<B>, Detector<Autodiff<B>>>();
                run_training::<Autodiff<B>, _>(self.config, self.options, device, env, optim)
            }
            OptimKind::Adamw => {
                let optim = AdamWConfig::new()
                    .with_beta_1(o.beta1 as f32)
                    .with_beta_2(o.beta2 as f32)
                    .with_epsilon(o.epsilon as f32)
                    .with_weight_decay(o.weight_decay as f32)
                    .init::<Autodiff<B>, Detector<Autodiff<B>>>();
                run_training::<Autodiff<B>, _>(self.config, self.options, device, env, optim)
            }
        }
    }
}

/// The learning rate of optimizer step `step` (0-based) out of `total`.
pub fn learning_rate(config: &RunConfig, step: u64, total: u64) -> f64 {
    let o = &config.optim;
    match o.schedule {
        ScheduleKind::Constant => o.lr,
        ScheduleKind::WarmupCosine => {
            if step < o.warmup_steps {
                return o.lr * (step + 1) as f64 / o.warmup_steps as f64;
            }
            let span = total.saturating_sub(o.warmup_steps).max(1) as f64;
            let progress = ((step - o.warmup_steps) as f64 / span).clamp(0.0, 1.0);
            o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// SplitMix64 of (seed, stream, epoch): independent streams for shuffling, crops and dropout.
fn mix(seed: u64, stream: u64, epoch: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const STREAM_SHUFFLE: u64 = 1;
const STREAM_CROP: u64 = 2;
const STREAM_BACKEND: u64 = 3;
const STREAM_INIT: u64 = 4;
const STREAM_LAYERDROP: u64 = 5;

/// Optimizer steps between two read-backs of the training loss (see the training loop).
const LOSS_READ_STEPS: usize = 10;

fn epoch_dir(out: &Path, epoch: usize) -> PathBuf {
    out.join("checkpoints").join(format!("epoch-{epoch:04}"))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(value).expect("serialisable");
    write_atomic(path, json.as_bytes())
}

/// Removes what a killed invocation leaves in a run folder and nothing else would ever remove:
/// temporary files of atomic writes, half-written folders (`*.partial`), and epoch checkpoints
/// other than the one `progress.json` points at (a kill between committing an epoch and
/// removing its predecessor, or between renaming an epoch's folder and committing it).
fn remove_leftovers(out: &Path, epochs_done: usize) {
    let checkpoints = out.join("checkpoints");
    let keep = (epochs_done > 0).then(|| epoch_dir(out, epochs_done));
    let best = out.join("best");
    for dir in [
        out.to_path_buf(),
        out.join("scores"),
        best.join(ADAPTER_DIR),
        best,
        checkpoints.clone(),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let temporary = (name.starts_with('.') && name.ends_with(TEMP_SUFFIX))
                || name.ends_with(".partial");
            let stale_epoch = dir == checkpoints && keep.as_ref() != Some(&path);
            if !temporary && !stale_epoch {
                continue;
            }
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => tracing::info!("removed {}, left by an interrupted run", path.display()),
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
        }
    }
}

/// Makes `best/` hold the trainable parameters of the checkpoint in `epoch_dir` and `info`,
/// writing only what differs (a resumed invocation calls it for a best/ that is often current).
fn update_best(best_dir: &Path, epoch_dir: &Path, info: &DetectorFile) -> Result<(), TrainError> {
    std::fs::create_dir_all(best_dir).map_err(|e| TrainError::io(best_dir, e))?;
    let source = epoch_dir.join(TRAINABLE_FILE);
    let bytes = std::fs::read(&source).map_err(|e| TrainError::io(&source, e))?;
    let target = best_dir.join(TRAINABLE_FILE);
    if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
        write_atomic(&target, &bytes)?;
    }
    let current: Option<DetectorFile> = std::fs::read_to_string(best_dir.join(DETECTOR_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if current.is_none_or(|c| serde_json::to_value(c).ok() != serde_json::to_value(info).ok()) {
        write_detector_file(best_dir, info)?;
    }
    Ok(())
}

/// Describes how the two configs differ, line by line of their resolved TOML.
fn config_diff(old: &str, new: &str) -> String {
    let old: BTreeSet<&str> = old.lines().collect();
    let new: BTreeSet<&str> = new.lines().collect();
    let mut parts: Vec<String> = old
        .difference(&new)
        .map(|l| format!("was `{l}`"))
        .chain(new.difference(&old).map(|l| format!("now `{l}`")))
        .collect();
    parts.truncate(6);
    parts.join(", ")
}

fn run_training<B, O>(
    config: &RunConfig,
    options: &TrainOptions,
    device: B::Device,
    mut env: BackendEnv,
    optim: O,
) -> Result<TrainOutcome, TrainError>
where
    B: TrainBackend,
    O: Optimizer<Detector<B>, B>,
{
    let invocation_start = Instant::now();
    let out = &config.output_dir;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;

    // A run folder belongs to one configuration: resuming under another would mix runs.
    let resolved = config.to_toml();
    let config_path = out.join(CONFIG_FILE);
    let progress_path = out.join(PROGRESS_FILE);
    if progress_path.is_file() {
        let old = std::fs::read_to_string(&config_path).unwrap_or_default();
        if old != resolved {
            return Err(TrainError::ConfigChanged {
                dir: out.clone(),
                diff: config_diff(&old, &resolved),
            });
        }
    } else {
        write_atomic(&config_path, resolved.as_bytes())?;
    }
    let record_path = out.join(RECORD_FILE);
    if record_path.is_file() {
        tracing::info!("{} is complete; nothing to do", out.display());
        return Ok(TrainOutcome::Finished(Box::new(read_json(&record_path)?)));
    }
    let mut progress: Progress = if progress_path.is_file() {
        read_json(&progress_path)?
    } else {
        Progress::default()
    };
    let prior_wall = progress.wall_seconds;
    remove_leftovers(out, progress.epochs_done);

    // Data.
    let spec = config.dataset()?;
    let all = spec.load()?;
    let d = &config.data;
    let train_utts = select_split(&all, &spec, &d.train_split, d.max_per_class)?;
    let dev_utts = select_split(&all, &spec, &d.dev_split, d.max_per_class)?;
    let eval_utts = match &d.eval_split {
        Some(split) => Some(select_split(&all, &spec, split, d.max_per_class)?),
        None => None,
    };
    // Read now, so a bad ASV score file stops the run before training, not after it.
    let asv = d.asv_scores.as_deref().map(read_asv_scores).transpose()?;
    let normalization = d.normalization.to_data();
    let train_crop = match d.train_crop {
        TrainCrop::Random => CropMode::Random {
            seed: mix(config.seed, STREAM_CROP, 0),
        },
        TrainCrop::First => CropMode::First,
    };
    let dataset = |utterances, crop| {
        Arc::new(
            AudioDataset::new(utterances, d.crop_samples, crop).with_normalization(normalization),
        )
    };
    let train_ds = dataset(train_utts, train_crop);
    let dev_ds = dataset(dev_utts, CropMode::First);
    let eval_ds = eval_utts.map(|u| dataset(u, CropMode::First));
    for ds in [Some(&train_ds), Some(&dev_ds), eval_ds.as_ref()]
        .into_iter()
        .flatten()
    {
        ds.check_files_exist()?;
    }
    let score_train_ds = config
        .train
        .score_train
        .then(|| dataset(train_ds.utterances().to_vec(), CropMode::First));

    // Model.
    let arch = config.model.wav2vec2_config()?;
    if arch.num_frames(d.crop_samples).is_none() {
        return Err(TrainError::Invalid(format!(
            "data.crop_samples = {} is shorter than the receptive field ({})",
            d.crop_samples,
            arch.receptive_field()
        )));
    }
    let detector_config = DetectorConfig::new(arch)
        .with_lora(config.lora.clone())
        .with_head(config.head.kind)
        .with_precision(config.precision);
    let source = match &config.model.checkpoint {
        Some(dir) => BaseSource::Pretrained { dir: dir.clone() },
        None => BaseSource::Random {
            seed: mix(config.seed, STREAM_INIT, 0),
        },
    };
    let model: Detector<B> = detector_config.build(&source, &device)?;
    let paths = param_paths(&model);
    let counts = paths.counts;
    tracing::info!(
        "{} on {}: {} trainable of {} parameters ({})",
        if config.lora.is_some() {
            "LoRA"
        } else {
            "full fine-tuning"
        },
        env.device_name,
        counts.trainable,
        counts.total,
        env.kind
    );
    let base_file = match (&source, paths.frozen.is_empty()) {
        // Nothing on disk holds a random front end: keep it beside the checkpoints.
        (BaseSource::Random { .. }, false) => Some(PathBuf::from(BASE_FILE)),
        _ => None,
    };
    let best_dir = out.join("best");
    if let Some(base) = &base_file {
        let file = best_dir.join(base);
        if !file.is_file() {
            std::fs::create_dir_all(&best_dir).map_err(|e| TrainError::io(&best_dir, e))?;
            save_params(&model, &paths.frozen, &file)?;
        }
    }
    let mut model = model.with_frozen_weights_in_precision();

    let detector_file = |best: &Best| DetectorFile {
        config: detector_config.clone(),
        source: source.clone(),
        base_file: base_file.clone(),
        crop_samples: d.crop_samples,
        normalization: d.normalization,
        epoch: best.epoch,
        dev_eer_threshold: best.dev_eer_threshold,
    };
    // Killed between committing its best epoch and copying it to best/: copy it now. (A
    // progress file without the threshold comes from a version that wrote best/ first.)
    if let Some(best) = progress
        .best
        .filter(|b| b.epoch == progress.epochs_done && b.dev_eer_threshold.is_some())
    {
        update_best(
            &best_dir,
            &epoch_dir(out, best.epoch),
            &detector_file(&best),
        )?;
    }

    let mut optim = optim;
    if progress.epochs_done > 0 {
        let dir = epoch_dir(out, progress.epochs_done);
        model = load_params(model, &dir.join(TRAINABLE_FILE))?;
        optim = load_optimizer::<B, Detector<B>, O>(optim, &dir.join(OPTIMIZER_FILE), &device)?;
        tracing::info!(
            "resuming {} after epoch {} (step {})",
            out.display(),
            progress.epochs_done,
            progress.steps
        );
    }

    // Budget.
    let t = &config.train;
    let accumulation = config.optim.grad_accumulation;
    let batches_per_epoch = train_ds.utterances().len().div_ceil(t.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(accumulation) as u64;
    let max_epochs = t.epochs.unwrap_or(usize::MAX);
    let total_steps = match (t.epochs, t.max_steps) {
        (Some(e), Some(m)) => (e as u64 * steps_per_epoch).min(m),
        (Some(e), None) => e as u64 * steps_per_epoch,
        (None, Some(m)) => m,
        (None, None) => unreachable!("validated: a budget is given"),
    };
    let max_epochs = max_epochs.min(total_steps.div_ceil(steps_per_epoch) as usize);

    let bar = if options.progress {
        let bar = ProgressBar::new(total_steps);
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

    let weights = t.class_weights;
    let mut epochs_this_invocation = 0;
    let mut budget_done = progress.steps >= total_steps || progress.stopped_early;
    while !budget_done && progress.epochs_done < max_epochs {
        let epoch = progress.epochs_done; // 0-based index of the epoch being run
        let epoch_start = Instant::now();
        B::seed(&device, mix(config.seed, STREAM_BACKEND, epoch as u64));
        model.wav2vec2.encoder.layerdrop_rng.reseed(mix(
            config.seed,
            STREAM_LAYERDROP,
            epoch as u64,
        ));
        train_ds.set_epoch(epoch as u64);
        let mut order: Vec<usize> = (0..train_ds.utterances().len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(
            config.seed,
            STREAM_SHUFFLE,
            epoch as u64,
        )));

        let mut accumulator = GradientsAccumulator::<Detector<B>>::new();
        let mut micro = 0;
        let mut lr = learning_rate(config, progress.steps, total_steps);
        let batches: Vec<Vec<usize>> = order.chunks(t.batch_size).map(<[usize]>::to_vec).collect();
        let batch_count = batches.len();
        let mut utterances = 0u64;
        // The device runs ahead of the host: losses are summed on the device and read back, with
        // one sync, every `LOSS_READ_STEPS` optimizer steps and at the end of the epoch. The
        // steps in between are timed together.
        let mut losses = LossWindow::<B::InnerBackend>::default();
        let mut window_start = Instant::now();
        let mut window_steps = 0usize;
        let (mut loss_sum, mut loss_count) = (0.0, 0usize);
        for (i, items) in Prefetch::new(Arc::clone(&train_ds), batches).enumerate() {
            if progress.steps >= total_steps {
                break;
            }
            let batch = stack::<B>(items, &device)?;
            utterances += batch.ids.len() as u64;
            if window_steps == 0 && micro == 0 {
                window_start = Instant::now();
            }
            let logits = model.forward(batch.waveforms);
            let loss = weighted_cross_entropy(logits, batch.labels, weights);
            if window_steps == 0 && micro == 0 {
                // Once a window, where activations peak: the only extra sync of the loop.
                B::sync(&device).ok();
                env.memory.sample();
            }
            losses.add(loss.clone().inner());
            // Accumulated gradients are summed, so each micro-batch carries 1/accumulation.
            let grads = (loss / accumulation as f64).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
            micro += 1;
            let last = i + 1 == batch_count;
            if micro < accumulation && !last {
                continue;
            }
            let mut grads = accumulator.grads();
            if let Some(max_norm) = config.optim.grad_clip_norm {
                clip_global_norm::<B>(&model, &mut grads, max_norm);
            }
            lr = learning_rate(config, progress.steps, total_steps);
            model = optim.step(lr, model, grads);
            progress.steps += 1;
            micro = 0;
            window_steps += 1;
            // A window also ends with the timing warm-up, so warm-up steps (autotuning on a
            // GPU) are never averaged into timed ones.
            let warmup_ends = progress.steps_timed + window_steps == t.timing_warmup_steps;
            if window_steps < LOSS_READ_STEPS
                && !last
                && progress.steps < total_steps
                && !warmup_ends
            {
                continue;
            }
            // One read-back: waits for every queued step.
            let (sum, count) = losses.read();
            env.memory.sample();
            let step_ms = window_start.elapsed().as_secs_f64() * 1e3 / window_steps as f64;
            for _ in 0..window_steps {
                progress.steps_timed += 1;
                if progress.steps_timed == t.timing_warmup_steps {
                    env.memory.reset();
                }
                if progress.steps_timed > t.timing_warmup_steps {
                    progress.step_times_ms.push(step_ms);
                }
            }
            window_steps = 0;
            if !sum.is_finite() {
                return Err(TrainError::Diverged {
                    step: progress.steps,
                    loss: sum / count.max(1) as f64,
                });
            }
            loss_sum += sum;
            loss_count += count;
            bar.set_position(progress.steps);
            bar.set_message(format!(
                "epoch {} loss {:.4}",
                epoch + 1,
                sum / count.max(1) as f64
            ));
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        progress.train_seconds += train_seconds;
        progress.train_utterances += utterances;

        // Dev evaluation and model selection.
        let valid = model.valid();
        let inner_device = device.clone();
        let dev = score_dataset(
            &valid,
            &dev_ds,
            t.eval_batch_size(),
            weights,
            &inner_device,
            &mut env.memory,
        )?;
        let train_eer = match &score_train_ds {
            Some(ds) => Some(
                score_dataset(
                    &valid,
                    ds,
                    t.eval_batch_size(),
                    weights,
                    &inner_device,
                    &mut env.memory,
                )?
                .eer
                .eer * 100.0,
            ),
            None => None,
        };
        let improved = progress
            .best
            .is_none_or(|b| b.is_beaten_by(t.selection_metric, dev.eer.eer, dev.loss));
        let log = EpochLog {
            epoch: epoch + 1,
            steps: progress.steps,
            train_loss: loss_sum / loss_count.max(1) as f64,
            train_eer_percent: train_eer,
            dev_loss: dev.loss,
            dev_eer_percent: dev.eer.eer * 100.0,
            lr,
            wall_seconds: epoch_start.elapsed().as_secs_f64(),
            improved,
        };
        tracing::info!(
            "epoch {}: train loss {:.5}{}, dev loss {:.5}, dev EER {:.4}%{}",
            log.epoch,
            log.train_loss,
            train_eer
                .map(|e| format!(" (train EER {e:.3}%)"))
                .unwrap_or_default(),
            log.dev_loss,
            log.dev_eer_percent,
            if improved { " *" } else { "" }
        );

        // Checkpoint: write the epoch folder under a temporary name, then rename it, then
        // point progress.json at it; an interruption at any moment leaves the previous
        // consistent state.
        let dir = epoch_dir(out, epoch + 1);
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let written = std::fs::create_dir_all(&partial)
            .map_err(|e| TrainError::io(&partial, e))
            .and_then(|()| save_params(&model, &paths.trainable, &partial.join(TRAINABLE_FILE)))
            .and_then(|()| {
                save_optimizer::<B, Detector<B>, O>(&optim, &partial.join(OPTIMIZER_FILE))
            });
        if let Err(e) = written {
            // The previous epoch stays the one to resume from, with nothing half-written beside.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&partial, &dir).map_err(|e| TrainError::io(&dir, e))?;
        if improved {
            progress.best = Some(Best {
                epoch: epoch + 1,
                dev_eer: dev.eer.eer,
                dev_loss: dev.loss,
                dev_eer_threshold: Some(dev.eer.threshold),
            });
            progress.epochs_without_improvement = 0;
        } else {
            progress.epochs_without_improvement += 1;
        }
        progress.epochs_done = epoch + 1;
        progress.history.push(log);
        if t.patience
            .is_some_and(|p| progress.epochs_without_improvement >= p)
        {
            tracing::info!(
                "no dev improvement for {} epochs: stopping early",
                progress.epochs_without_improvement
            );
            progress.stopped_early = true;
        }
        budget_done = progress.steps >= total_steps || progress.stopped_early;
        progress.wall_seconds = prior_wall + invocation_start.elapsed().as_secs_f64();
        write_json(&progress_path, &progress)?;
        // best/ is updated only after the commit, so a failure before it (disk full) leaves
        // best/ as the last committed epoch left it; one after it is repaired on resuming.
        if let Some(best) = progress.best.filter(|_| improved) {
            update_best(&best_dir, &dir, &detector_file(&best))?;
        }
        // The previous epoch's folder is no longer needed for resuming.
        if epoch > 0 {
            let _ = std::fs::remove_dir_all(epoch_dir(out, epoch));
        }
        epochs_this_invocation += 1;
        if options.interrupt_after_epochs == Some(epochs_this_invocation) && !budget_done {
            bar.abandon();
            return Ok(TrainOutcome::Interrupted {
                epochs_done: progress.epochs_done,
            });
        }
    }
    bar.finish_and_clear();

    // Final scoring with the selected checkpoint.
    let best = progress
        .best
        .ok_or_else(|| TrainError::Invalid("no epoch was completed".into()))?;
    let model = load_params(model, &best_dir.join(TRAINABLE_FILE))?.valid();
    if config.lora.is_some() {
        // The selected adapters also in PEFT's layout, for use outside fadlora.
        let options = fadlora_model::adapter::SaveAdapterOptions {
            base_model_name_or_path: config
                .model
                .checkpoint
                .as_ref()
                .map(|p| p.display().to_string()),
            extras: Default::default(),
        };
        let adapter_dir = best_dir.join(ADAPTER_DIR);
        // Written beside and renamed into place: save_adapter writes its files in place, and a
        // failed or killed write must not leave a half adapter under the final name.
        let partial = adapter_dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let saved = model
            .wav2vec2
            .save_adapter(&partial, &options)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", adapter_dir.display())))
            .and_then(|()| {
                let _ = std::fs::remove_dir_all(&adapter_dir);
                std::fs::rename(&partial, &adapter_dir).map_err(|e| TrainError::io(&adapter_dir, e))
            });
        if saved.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        saved?;
    }
    let dev = score_dataset(
        &model,
        &dev_ds,
        t.eval_batch_size(),
        weights,
        &device,
        &mut env.memory,
    )?;
    let dev_result = finish_split(out, &d.dev_split, &dev, None)?;
    let eval_result = match (&eval_ds, &d.eval_split) {
        (Some(ds), Some(split)) => {
            let eval = score_dataset(
                &model,
                ds,
                t.eval_batch_size(),
                weights,
                &device,
                &mut env.memory,
            )?;
            Some(finish_split(out, split, &eval, asv.as_ref())?)
        }
        _ => None,
    };
    progress.wall_seconds = prior_wall + invocation_start.elapsed().as_secs_f64();

    let record = RunRecord {
        record_version: RECORD_VERSION,
        name: config.name.clone(),
        mode: if config.lora.is_some() {
            "lora"
        } else {
            "full"
        }
        .into(),
        backend: env.kind.to_string(),
        device: env.device_name.clone(),
        git_commit: git_commit(out).or_else(|| git_commit(Path::new("."))),
        config: config.clone(),
        params: counts,
        memory: env.memory.peak(),
        step_time: TimeStats::of(&progress.step_times_ms),
        train_utt_per_s: progress.train_utterances as f64 / progress.train_seconds.max(1e-9),
        eval_utt_per_s: dev.utt_per_s(),
        epochs: progress.history.clone(),
        steps: progress.steps,
        best_epoch: best.epoch,
        stopped_early: progress.stopped_early,
        dev: dev_result,
        eval: eval_result,
        wall_seconds: progress.wall_seconds,
    };
    write_json(&record_path, &record)?;
    Ok(TrainOutcome::Finished(Box::new(record)))
}

/// Writes the split's score file and summarises it; with the organisers' ASV scores, also the
/// min t-DCF (ASVspoof 2019 cost model).
fn finish_split(
    out: &Path,
    split: &str,
    set: &ScoredSet,
    asv: Option<&fadlora_metrics::AsvScores>,
) -> Result<SplitResult, TrainError> {
    let rel = format!("scores/{split}.txt");
    write_score_file(&out.join(&rel), &set.scores)?;
    let min_tdcf = match asv {
        Some(asv) => {
            let (bona, spoof) = split_by_label(&set.scores);
            let cost = fadlora_metrics::TdcfCostModel::asvspoof2019();
            Some(fadlora_metrics::min_tdcf(&bona, &spoof, asv, &cost)?.min_tdcf)
        }
        None => None,
    };
    let n_bonafide = set
        .scores
        .iter()
        .filter(|s| s.label == fadlora_data::Label::Bonafide)
        .count();
    Ok(SplitResult {
        split: split.to_string(),
        n_bonafide,
        n_spoof: set.scores.len() - n_bonafide,
        eer_percent: set.eer.eer * 100.0,
        threshold: set.eer.threshold,
        loss: set.loss,
        min_tdcf,
        scores_file: rel,
    })
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`; burn's own norm clipping works per tensor). The norm and the factor stay
/// on the device: reading them back would wait for the step once per gradient tensor.
fn clip_global_norm<B: AutodiffBackend>(
    model: &Detector<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) {
    struct SquaredNorm<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let squares = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
    }
    struct Scale<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        factor: Tensor<B::InnerBackend, 1>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let factor = self.factor.clone().reshape([1; D]);
                self.grads.register(param.id, g * factor);
            }
        }
    }
    let mut norm = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut norm);
    let Some(total) = norm.total else {
        return;
    };
    // PyTorch's formula, including its epsilon; a factor of 1 leaves the gradients as they are.
    let factor = (total.sqrt().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    model.visit(&mut Scale::<B> { grads, factor });
}

/// Losses of the steps since the last read-back, summed on the device.
struct LossWindow<B: Backend> {
    sum: Option<Tensor<B, 1>>,
    count: usize,
}

impl<B: Backend> Default for LossWindow<B> {
    fn default() -> Self {
        Self {
            sum: None,
            count: 0,
        }
    }
}

impl<B: Backend> LossWindow<B> {
    fn add(&mut self, loss: Tensor<B, 1>) {
        let loss = loss.detach();
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.count += 1;
    }

    /// `(sum, count)` of the losses added since the last read, which waits for the device.
    fn read(&mut self) -> (f64, usize) {
        let sum = self
            .sum
            .take()
            .map_or(0.0, |sum| sum.into_scalar().elem::<f64>());
        (sum, std::mem::take(&mut self.count))
    }
}
