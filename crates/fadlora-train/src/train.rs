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
use fadlora_data::{AudioDataset, CropMode, RawBoost};
use fadlora_model::{ModelBackend, TrainBackend};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::aasist::AASIST_MIN_FRAMES;
use crate::backend::{run_on, BackendEnv, BackendJob};
use crate::checkpoint::{
    load_optimizer, load_params, save_optimizer, save_params, write_detector_file, DetectorFile,
    BASE_FILE, DETECTOR_FILE, OPTIMIZER_FILE, TRAINABLE_FILE,
};
use crate::config::{OptimKind, OptimSection, RunConfig, SelectionMetric, TrainCrop};
use crate::data::{select_split, select_trials, stack, Prefetch};
use crate::detector::{param_paths, weighted_cross_entropy, BaseSource, Detector, DetectorConfig};
use crate::measure::git_commit;
use crate::scores::{score_dataset, ScoredSet};
use crate::sls::SLS_MIN_FRAMES;
use crate::TrainError;
use fadlora_run::fs::TEMP_SUFFIX;
use fadlora_run::layout::{epoch_dir, BEST_DIR, CHECKPOINTS_DIR, SCORES_DIR};
pub use fadlora_run::layout::{ADAPTER_DIR, CONFIG_FILE, PROGRESS_FILE, RECORD_FILE};
use fadlora_run::record::{
    EpochLog, NamedSplitResult, ParamCounts, RunRecord, SplitResult, TimeStats, RECORD_VERSION,
};
use fadlora_run::scores::{read_asv_scores, split_by_label, write_score_file};
use fadlora_run::Augment;
use fadlora_run::{write_atomic, HeadKind, LockTiming, RunLock};

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
    let _span = tracing::info_span!(
        "train",
        run = %config.output_dir.display(),
        backend = %config.backend,
        mode = %config.mode()
    )
    .entered();
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
                let optim = adamw_config(o).init::<Autodiff<B>, Detector<Autodiff<B>>>();
                run_training::<Autodiff<B>, _>(self.config, self.options, device, env, optim)
            }
        }
    }
}

/// burn's AdamW with the `[optim]` table's betas, epsilon and decoupled weight decay (the
/// trainer's and the pretraining loop's optimizer).
pub fn adamw_config(o: &OptimSection) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(o.beta1 as f32)
        .with_beta_2(o.beta2 as f32)
        .with_epsilon(o.epsilon as f32)
        .with_weight_decay(o.weight_decay as f32)
}

/// SplitMix64 of (seed, stream, index): independent streams for shuffling, crops and dropout
/// (the index is the epoch here, the step in pretraining).
pub fn mix(seed: u64, stream: u64, epoch: u64) -> u64 {
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
const STREAM_AUGMENT: u64 = 6;

/// Optimizer steps between two read-backs of the training loss (see the training loop).
const LOSS_READ_STEPS: usize = 10;

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(value).expect("serialisable");
    Ok(write_atomic(path, json.as_bytes())?)
}

/// Removes what a killed invocation leaves in a run folder and nothing else would ever remove:
/// temporary files of atomic writes, half-written folders (`*.partial`), and epoch checkpoints
/// other than the one `progress.json` points at (a kill between committing an epoch and
/// removing its predecessor, or between renaming an epoch's folder and committing it).
fn remove_leftovers(out: &Path, epochs_done: usize) {
    let checkpoints = out.join(CHECKPOINTS_DIR);
    let keep = (epochs_done > 0).then(|| epoch_dir(out, epochs_done));
    let best = out.join(BEST_DIR);
    for dir in [
        out.to_path_buf(),
        out.join(SCORES_DIR),
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
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed, left by an interrupted run")
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove"),
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

/// One invocation of a run: open (or resume) its folder, build the data and the network, train
/// epoch by epoch with selection and checkpoints, then score the selected checkpoint and write
/// the record.
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
    let folder = RunFolder::lock(&config.output_dir)?;
    let mut progress = match folder.open_or_resume(config)? {
        Opened::Finished(record) => return Ok(TrainOutcome::Finished(record)),
        Opened::At(progress) => progress,
    };
    let prior_wall = progress.wall_seconds;
    let wall = || prior_wall + invocation_start.elapsed().as_secs_f64();
    let data = RunData::build(config)?;
    let mut net = Network::<B, O>::build(config, &folder, &progress, &env, optim, &device)?;
    let budget = Budget::of(config, data.train.len());
    let bar = progress_bar(options, budget.total_steps, progress.steps);

    let mut epochs_this_invocation = 0;
    while !budget.done(&progress) && progress.epochs_done < budget.max_epochs {
        let epoch = progress.epochs_done; // 0-based index of the epoch being run
        let _span = tracing::info_span!("epoch", epoch = epoch + 1).entered();
        let epoch_start = Instant::now();
        let (model, trained) = train_epoch(
            net.model,
            &mut net.optim,
            &data.train,
            config,
            &budget,
            &mut progress,
            &mut env,
            &device,
            &bar,
        )?;
        net.model = model;
        let (log, dev) = evaluate_epoch(&net.model, &data, config, &progress, trained, &mut env)?;
        let log = EpochLog {
            wall_seconds: epoch_start.elapsed().as_secs_f64(),
            ..log
        };
        folder.lock.check_held()?;
        checkpoint_epoch(&net, &folder, config, &mut progress, log, &dev)?;
        progress.wall_seconds = wall();
        write_json(&folder.progress, &progress)?;
        // best/ is updated only after the commit, so a failure before it (disk full) leaves
        // best/ as the last committed epoch left it; one after it is repaired on resuming.
        if let Some(best) = progress.best.filter(|b| b.epoch == epoch + 1) {
            update_best(
                &folder.best,
                &epoch_dir(&folder.out, epoch + 1),
                &net.detector_file(config, &best),
            )?;
        }
        // The previous epoch's folder is no longer needed for resuming.
        if epoch > 0 {
            let _ = std::fs::remove_dir_all(epoch_dir(&folder.out, epoch));
        }
        epochs_this_invocation += 1;
        if options.interrupt_after_epochs == Some(epochs_this_invocation) && !budget.done(&progress)
        {
            bar.abandon();
            return Ok(TrainOutcome::Interrupted {
                epochs_done: progress.epochs_done,
            });
        }
    }
    bar.finish_and_clear();
    let record = write_record(
        net,
        &folder,
        &data,
        config,
        &mut progress,
        &mut env,
        &device,
        wall,
    )?;
    Ok(TrainOutcome::Finished(Box::new(record)))
}

/// The files of a run folder this loop reads and writes, and the lock that makes this
/// invocation the only one writing them.
struct RunFolder {
    out: PathBuf,
    config: PathBuf,
    progress: PathBuf,
    record: PathBuf,
    best: PathBuf,
    lock: RunLock,
}

/// Where an invocation starts.
enum Opened {
    /// An earlier invocation finished the run: nothing to do.
    Finished(Box<RunRecord>),
    /// Epochs checkpointed so far (none for a new run).
    At(Progress),
}

impl RunFolder {
    /// Creates the folder if needed and takes its run lock (a SLURM task, a sweep or a second
    /// `fadlora train` may aim at the same run), before anything in it is read or cleaned.
    fn lock(out: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        let lock = RunLock::acquire(out, LockTiming::default())?;
        Ok(RunFolder {
            out: out.to_path_buf(),
            config: out.join(CONFIG_FILE),
            progress: out.join(PROGRESS_FILE),
            record: out.join(RECORD_FILE),
            best: out.join(BEST_DIR),
            lock,
        })
    }

    /// Creates the folder for a new run, or checks that an existing one holds this very
    /// configuration (resuming under another would mix two runs) and says where it stopped.
    fn open_or_resume(&self, config: &RunConfig) -> Result<Opened, TrainError> {
        let resolved = config.to_toml();
        if self.progress.is_file() {
            let old = std::fs::read_to_string(&self.config).unwrap_or_default();
            if old != resolved {
                return Err(TrainError::ConfigChanged {
                    dir: self.out.clone(),
                    diff: config_diff(&old, &resolved),
                });
            }
        } else {
            write_atomic(&self.config, resolved.as_bytes())?;
        }
        if self.record.is_file() {
            tracing::info!(run = %self.out.display(), "complete; nothing to do");
            return Ok(Opened::Finished(Box::new(read_json(&self.record)?)));
        }
        let progress: Progress = if self.progress.is_file() {
            read_json(&self.progress)?
        } else {
            Progress::default()
        };
        remove_leftovers(&self.out, progress.epochs_done);
        Ok(Opened::At(progress))
    }
}

/// The run's splits, decoded on demand, and the organisers' ASV scores.
struct RunData {
    train: Arc<AudioDataset>,
    dev: Arc<AudioDataset>,
    eval: Option<Arc<AudioDataset>>,
    /// The training set cut as in evaluation, when `train.score_train` asks for a train EER.
    score_train: Option<Arc<AudioDataset>>,
    asv: Option<fadlora_metrics::AsvScores>,
    /// The `[[eval_sets]]`, in the configuration's order.
    extra: Vec<ExtraSet>,
}

/// One `[[eval_sets]]` entry, read and checked before training.
struct ExtraSet {
    name: String,
    /// The spec as the run read it, for the record.
    dataset: String,
    /// The split kept, or `all`.
    split: String,
    data: Arc<AudioDataset>,
    asv: Option<fadlora_metrics::AsvScores>,
}

impl RunData {
    /// Reads the protocol and checks every audio file exists and the ASV scores parse, so a
    /// bad corpus stops the run before training rather than after it.
    fn build(config: &RunConfig) -> Result<Self, TrainError> {
        let spec = config.dataset()?;
        let all = spec.load()?;
        let d = &config.data;
        let split = |name: &str| select_split(&all, &spec, name, d.max_per_class);
        let train_utts = split(&d.train_split)?;
        let dev_utts = split(&d.dev_split)?;
        let eval_utts = d.eval_split.as_deref().map(split).transpose()?;
        let asv = d.asv_scores.as_deref().map(read_asv_scores).transpose()?;
        let normalization = d.normalization.to_data();
        let train_crop = match d.train_crop {
            TrainCrop::Random => CropMode::Random {
                seed: mix(config.seed, STREAM_CROP, 0),
            },
            TrainCrop::First => CropMode::First,
        };
        let eval_crop = crate::checkpoint::eval_crop(d.eval_window);
        let dataset = |utterances, crop| {
            Arc::new(
                AudioDataset::new(utterances, d.crop_samples, crop)
                    .with_normalization(normalization),
            )
        };
        // Only the training set is augmented: dev, eval and the train-scoring pass see the
        // files as they are. Its own stream keeps the crops those of the same run without it.
        let mut train = AudioDataset::new(train_utts.clone(), d.crop_samples, train_crop)
            .with_normalization(normalization);
        if let Some(Augment::RawBoost(mode)) = d.augment {
            train =
                train.with_augmentation(RawBoost::new(mode), mix(config.seed, STREAM_AUGMENT, 0));
        }
        let mut data = RunData {
            score_train: config
                .train
                .score_train
                .then(|| dataset(train_utts, eval_crop)),
            train: Arc::new(train),
            dev: dataset(dev_utts, eval_crop),
            eval: eval_utts.map(|u| dataset(u, eval_crop)),
            asv,
            extra: Vec::new(),
        };
        for set in &config.eval_sets {
            let spec = set.spec()?;
            let utterances = select_trials(
                &spec.load()?,
                &spec,
                set.split.as_deref(),
                set.subset.as_deref(),
                d.max_per_class,
            )?;
            data.extra.push(ExtraSet {
                name: set.name.clone(),
                dataset: set.dataset.clone(),
                split: set.split.clone().unwrap_or_else(|| "all".into()),
                data: dataset(utterances, eval_crop),
                asv: set.asv_scores.as_deref().map(read_asv_scores).transpose()?,
            });
        }
        for ds in [Some(&data.train), Some(&data.dev), data.eval.as_ref()]
            .into_iter()
            .flatten()
            .chain(data.extra.iter().map(|e| &e.data))
        {
            ds.check_files_exist()?;
        }
        Ok(data)
    }
}

/// The detector being trained, its optimizer, and what checkpoints need to rebuild it.
struct Network<B: TrainBackend, O> {
    model: Detector<B>,
    optim: O,
    detector_config: DetectorConfig,
    source: BaseSource,
    /// `base.safetensors` in `best/` when the front end is a random initialisation.
    base_file: Option<PathBuf>,
    /// Paths saved in every checkpoint: trainable parameters and BatchNorm running statistics.
    trainable: BTreeSet<String>,
    counts: ParamCounts,
}

impl<B: TrainBackend, O> Network<B, O> {
    /// `best/detector.json` for the selected epoch `best`.
    fn detector_file(&self, config: &RunConfig, best: &Best) -> DetectorFile {
        DetectorFile {
            config: self.detector_config.clone(),
            source: self.source.clone(),
            base_file: self.base_file.clone(),
            crop_samples: config.data.crop_samples,
            normalization: config.data.normalization,
            epoch: best.epoch,
            dev_eer_threshold: best.dev_eer_threshold,
            score: config.head.score,
            eval_window: config.data.eval_window,
        }
    }
}

impl<B: TrainBackend, O: Optimizer<Detector<B>, B>> Network<B, O> {
    /// Builds the detector from its source, keeps a random front end on disk, and on resume
    /// loads the last checkpoint's parameters and optimizer state.
    fn build(
        config: &RunConfig,
        folder: &RunFolder,
        progress: &Progress,
        env: &BackendEnv,
        optim: O,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut arch = crate::config::wav2vec2_config(&config.model)?;
        if config.probe.is_some() || config.layer_sum.is_some() || config.frozen.is_some() {
            // A probe (or a layer sum, or any head on a frozen front end) measures fixed
            // features, as a frozen extractor in `model.eval()` gives them: every epoch must
            // see the same features of the same input.
            arch.hidden_dropout = 0.0;
            arch.attention_dropout = 0.0;
            arch.activation_dropout = 0.0;
            arch.feat_proj_dropout = 0.0;
            arch.layerdrop = 0.0;
        }
        if arch.num_frames(config.data.crop_samples).is_none() {
            return Err(TrainError::Invalid(format!(
                "data.crop_samples = {} is shorter than the receptive field ({})",
                config.data.crop_samples,
                arch.receptive_field()
            )));
        }
        let frames = arch.num_frames(config.data.crop_samples).unwrap_or(0);
        if config.head.kind == HeadKind::Aasist && frames < AASIST_MIN_FRAMES {
            return Err(TrainError::Invalid(format!(
                "data.crop_samples = {} gives {frames} frames: the AASIST head needs at least \
                 {AASIST_MIN_FRAMES}",
                config.data.crop_samples
            )));
        }
        if config.head.kind == HeadKind::Sls && frames < SLS_MIN_FRAMES {
            return Err(TrainError::Invalid(format!(
                "data.crop_samples = {} gives {frames} frames: the SLS head needs at least \
                 {SLS_MIN_FRAMES}",
                config.data.crop_samples
            )));
        }
        let detector_config = DetectorConfig::new(arch)
            .with_head_frames(Some(frames))
            .with_lora(config.lora.clone())
            .with_ia3(config.ia3.clone())
            .with_adapter(config.adapter.clone())
            .with_partial(config.partial.clone())
            .with_layer_sum(config.layer_sum.clone())
            .with_frozen(config.frozen.clone())
            .with_probe_layer(config.probe.as_ref().map(|p| p.layer))
            .with_head(config.head.kind)
            .with_precision(config.precision);
        let source = match &config.model.checkpoint {
            Some(dir) => BaseSource::Pretrained { dir: dir.clone() },
            None => BaseSource::Random {
                seed: mix(config.seed, STREAM_INIT, 0),
            },
        };
        if let BaseSource::Pretrained { .. } = source {
            // The head and any adapters are drawn from the backend RNG. A random source seeds it
            // before drawing the backbone; a checkpoint does not, and without this its runs
            // started from whatever state the RNG was in, so no two invocations agreed.
            B::seed(device, mix(config.seed, STREAM_INIT, 0));
        }
        let model: Detector<B> = detector_config.build(&source, device)?;
        let paths = param_paths(&model);
        tracing::info!(
            mode = %config.mode(),
            device = %env.device_name,
            backend = %env.kind,
            trainable = paths.counts.trainable,
            total = paths.counts.total,
            "detector built"
        );
        let base_file = match (&source, paths.frozen.is_empty()) {
            // Nothing on disk holds a random front end: keep it beside the checkpoints.
            (BaseSource::Random { .. }, false) => Some(PathBuf::from(BASE_FILE)),
            _ => None,
        };
        if let Some(base) = &base_file {
            let file = folder.best.join(base);
            if !file.is_file() {
                std::fs::create_dir_all(&folder.best)
                    .map_err(|e| TrainError::io(&folder.best, e))?;
                save_params(&model, &paths.frozen, &file)?;
            }
        }
        let mut model = model.with_frozen_weights_in_precision();
        let mut optim = optim;
        if progress.epochs_done > 0 {
            let dir = epoch_dir(&folder.out, progress.epochs_done);
            model = load_params(model, &dir.join(TRAINABLE_FILE))?;
            optim = load_optimizer::<B, Detector<B>, O>(optim, &dir.join(OPTIMIZER_FILE), device)?;
            tracing::info!(
                run = %folder.out.display(),
                epochs_done = progress.epochs_done,
                steps = progress.steps,
                "resuming"
            );
        }
        let net = Network {
            model,
            optim,
            detector_config,
            source,
            base_file,
            trainable: paths.checkpointed(),
            counts: paths.counts,
        };
        // Killed between committing its best epoch and copying it to best/: copy it now. (A
        // progress file without the threshold comes from a version that wrote best/ first.)
        if let Some(best) = progress
            .best
            .filter(|b| b.epoch == progress.epochs_done && b.dev_eer_threshold.is_some())
        {
            update_best(
                &folder.best,
                &epoch_dir(&folder.out, best.epoch),
                &net.detector_file(config, &best),
            )?;
        }
        Ok(net)
    }
}

/// How long the run trains: optimizer steps in all, and the epochs they take.
struct Budget {
    total_steps: u64,
    max_epochs: usize,
}

impl Budget {
    fn of(config: &RunConfig, train_utterances: usize) -> Self {
        let t = &config.train;
        let batches_per_epoch = train_utterances.div_ceil(t.batch_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(config.optim.grad_accumulation) as u64;
        let total_steps = match (t.epochs, t.max_steps) {
            (Some(e), Some(m)) => (e as u64 * steps_per_epoch).min(m),
            (Some(e), None) => e as u64 * steps_per_epoch,
            (None, Some(m)) => m,
            (None, None) => unreachable!("validated: a budget is given"),
        };
        let max_epochs = t
            .epochs
            .unwrap_or(usize::MAX)
            .min(total_steps.div_ceil(steps_per_epoch) as usize);
        Budget {
            total_steps,
            max_epochs,
        }
    }

    fn done(&self, progress: &Progress) -> bool {
        progress.steps >= self.total_steps || progress.stopped_early
    }
}

fn progress_bar(options: &TrainOptions, total_steps: u64, steps_done: u64) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(steps_done);
    bar
}

/// What an epoch of training leaves for its log line.
struct EpochTraining {
    mean_loss: f64,
    /// The learning rate of the epoch's last step.
    lr: f64,
}

/// One pass over the training set: forward, weighted cross-entropy, backward, accumulation,
/// clipping and optimizer steps, until the epoch or the step budget ends. Step times and the
/// memory peak go into `progress` and `env`.
#[allow(clippy::too_many_arguments)]
fn train_epoch<B, O>(
    mut model: Detector<B>,
    optim: &mut O,
    train: &Arc<AudioDataset>,
    config: &RunConfig,
    budget: &Budget,
    progress: &mut Progress,
    env: &mut BackendEnv,
    device: &B::Device,
    bar: &ProgressBar,
) -> Result<(Detector<B>, EpochTraining), TrainError>
where
    B: TrainBackend,
    O: Optimizer<Detector<B>, B>,
{
    let t = &config.train;
    let epoch = progress.epochs_done;
    let epoch_start = Instant::now();
    B::seed(device, mix(config.seed, STREAM_BACKEND, epoch as u64));
    model
        .wav2vec2
        .encoder
        .layerdrop_rng
        .reseed(mix(config.seed, STREAM_LAYERDROP, epoch as u64));
    train.set_epoch(epoch as u64);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(
        config.seed,
        STREAM_SHUFFLE,
        epoch as u64,
    )));

    let accumulation = config.optim.grad_accumulation;
    let mut accumulator = GradientsAccumulator::<Detector<B>>::new();
    let mut micro = 0;
    let mut lr = config
        .optim
        .learning_rate(progress.steps, budget.total_steps);
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
    for (i, items) in Prefetch::new(Arc::clone(train), batches).enumerate() {
        if progress.steps >= budget.total_steps {
            break;
        }
        let batch = stack::<B>(items, device)?;
        utterances += batch.ids.len() as u64;
        if window_steps == 0 && micro == 0 {
            window_start = Instant::now();
        }
        let logits = model.forward(batch.waveforms);
        let cross_entropy = weighted_cross_entropy(logits, batch.labels, t.class_weights);
        // Mixtures of LoRA experts add their load-balancing loss; taken every pass (even at
        // weight 0) so that terms never pile up. The logged loss stays the cross-entropy, the
        // dev loss's measure.
        let loss = match model.wav2vec2.take_balance_loss() {
            Some(balance) => cross_entropy.clone() + balance,
            None => cross_entropy.clone(),
        };
        if window_steps == 0 && micro == 0 {
            // Once a window, where activations peak: the only extra sync of the loop.
            B::sync(device).ok();
            env.memory.sample();
        }
        losses.add(cross_entropy.inner());
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
        lr = config
            .optim
            .learning_rate(progress.steps, budget.total_steps);
        model = optim.step(lr, model, grads);
        progress.steps += 1;
        micro = 0;
        window_steps += 1;
        // A window also ends with the timing warm-up, so warm-up steps (autotuning on a
        // GPU) are never averaged into timed ones.
        let warmup_ends = progress.steps_timed + window_steps == t.timing_warmup_steps;
        if window_steps < LOSS_READ_STEPS
            && !last
            && progress.steps < budget.total_steps
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
    progress.train_seconds += epoch_start.elapsed().as_secs_f64();
    progress.train_utterances += utterances;
    let trained = EpochTraining {
        mean_loss: loss_sum / loss_count.max(1) as f64,
        lr,
    };
    Ok((model, trained))
}

/// Scores the dev set (and the training set, when asked) in eval mode, and says whether the
/// epoch beats the best so far. The log's `wall_seconds` is left for the caller.
fn evaluate_epoch<B: TrainBackend>(
    model: &Detector<B>,
    data: &RunData,
    config: &RunConfig,
    progress: &Progress,
    trained: EpochTraining,
    env: &mut BackendEnv,
) -> Result<(EpochLog, ScoredSet), TrainError> {
    let t = &config.train;
    let valid = model.valid();
    let device = valid.devices()[0].clone();
    let score = |ds: &Arc<AudioDataset>, env: &mut BackendEnv| {
        score_dataset(
            &valid,
            ds,
            t.eval_batch_size(),
            t.class_weights,
            config.head.score,
            &device,
            &mut env.memory,
        )
    };
    let dev = score(&data.dev, env)?;
    if dev.all_equal() && dev.scores.len() > 1 {
        // An EER of tied scores says nothing of the classes; the usual cause is a head whose
        // output units saturated (the SLS head's SELU at too high a learning rate).
        tracing::warn!(
            epoch = progress.epochs_done + 1,
            score = dev.scores[0].score,
            "every dev utterance got the same score: the detector no longer tells the classes \
             apart (a saturated head? try a lower learning rate)"
        );
    }
    let train_eer = match &data.score_train {
        Some(ds) => Some(score(ds, env)?.eer.eer * 100.0),
        None => None,
    };
    let improved = progress
        .best
        .is_none_or(|b| b.is_beaten_by(t.selection_metric, dev.eer.eer, dev.loss));
    let log = EpochLog {
        epoch: progress.epochs_done + 1,
        steps: progress.steps,
        train_loss: trained.mean_loss,
        train_eer_percent: train_eer,
        dev_loss: dev.loss,
        dev_eer_percent: dev.eer.eer * 100.0,
        lr: trained.lr,
        wall_seconds: 0.0,
        improved,
    };
    tracing::info!(
        epoch = log.epoch,
        train_loss = log.train_loss,
        train_eer_percent = ?log.train_eer_percent,
        dev_loss = log.dev_loss,
        dev_eer_percent = log.dev_eer_percent,
        improved,
        "epoch evaluated"
    );
    Ok((log, dev))
}

/// Writes the epoch's checkpoint and moves `progress` past the epoch (selection and early
/// stopping included). The epoch folder is written under a temporary name and renamed, and
/// `progress.json` (written by the caller) points at it only afterwards, so an interruption at
/// any moment leaves the previous consistent state; `best/` follows once the epoch is
/// committed ([`update_best`]).
fn checkpoint_epoch<B, O>(
    net: &Network<B, O>,
    folder: &RunFolder,
    config: &RunConfig,
    progress: &mut Progress,
    log: EpochLog,
    dev: &ScoredSet,
) -> Result<(), TrainError>
where
    B: TrainBackend,
    O: Optimizer<Detector<B>, B>,
{
    let epoch = log.epoch; // 1-based
    let dir = epoch_dir(&folder.out, epoch);
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    net.model.head.sync_running_stats();
    let written = std::fs::create_dir_all(&partial)
        .map_err(|e| TrainError::io(&partial, e))
        .and_then(|()| save_params(&net.model, &net.trainable, &partial.join(TRAINABLE_FILE)))
        .and_then(|()| {
            save_optimizer::<B, Detector<B>, O>(&net.optim, &partial.join(OPTIMIZER_FILE))
        });
    if let Err(e) = written {
        // The previous epoch stays the one to resume from, with nothing half-written beside.
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).map_err(|e| TrainError::io(&dir, e))?;
    if log.improved {
        progress.best = Some(Best {
            epoch,
            dev_eer: dev.eer.eer,
            dev_loss: dev.loss,
            dev_eer_threshold: Some(dev.eer.threshold),
        });
        progress.epochs_without_improvement = 0;
    } else {
        progress.epochs_without_improvement += 1;
    }
    progress.epochs_done = epoch;
    progress.history.push(log);
    if config
        .train
        .patience
        .is_some_and(|p| progress.epochs_without_improvement >= p)
    {
        tracing::info!(
            epochs_without_improvement = progress.epochs_without_improvement,
            "no dev improvement: stopping early"
        );
        progress.stopped_early = true;
    }
    Ok(())
}

/// Loads the selected checkpoint, saves its adapters in PEFT's layout (LoRA runs), scores the
/// dev and eval sets with it, and writes `record.json`, last: the run is finished when it
/// exists.
#[allow(clippy::too_many_arguments)]
fn write_record<B, O>(
    net: Network<B, O>,
    folder: &RunFolder,
    data: &RunData,
    config: &RunConfig,
    progress: &mut Progress,
    env: &mut BackendEnv,
    device: &B::Device,
    wall_seconds: impl Fn() -> f64,
) -> Result<RunRecord, TrainError>
where
    B: TrainBackend,
{
    let best = progress
        .best
        .ok_or_else(|| TrainError::Invalid("no epoch was completed".into()))?;
    let model = load_params(net.model, &folder.best.join(TRAINABLE_FILE))?.valid();
    // PEFT has no layout for a mixture of experts: trainable.safetensors is its only form.
    let peft_layout = config.lora.as_ref().is_some_and(|l| l.moe.is_none());
    if peft_layout || config.ia3.is_some() {
        // The selected adapters also in PEFT's layout, for use outside fadlora.
        let options = fadlora_model::adapter::SaveAdapterOptions {
            base_model_name_or_path: config
                .model
                .checkpoint
                .as_ref()
                .map(|p| p.display().to_string()),
            extras: Default::default(),
        };
        let adapter_dir = folder.best.join(ADAPTER_DIR);
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
    let t = &config.train;
    let mut score = |ds: &Arc<AudioDataset>| {
        score_dataset(
            &model,
            ds,
            t.eval_batch_size(),
            t.class_weights,
            config.head.score,
            device,
            &mut env.memory,
        )
    };
    let d = &config.data;
    let dev = score(&data.dev)?;
    let dev_result = finish_split(
        &folder.out,
        &d.dev_split,
        &d.dev_split,
        &dev,
        data.dev.utterances(),
        None,
    )?;
    let eval_result = match (&data.eval, &d.eval_split) {
        (Some(ds), Some(split)) => {
            let eval = score(ds)?;
            Some(finish_split(
                &folder.out,
                split,
                split,
                &eval,
                ds.utterances(),
                data.asv.as_ref(),
            )?)
        }
        _ => None,
    };
    let mut extra_evals = Vec::with_capacity(data.extra.len());
    for set in &data.extra {
        let scored = score(&set.data)?;
        tracing::info!(
            set = %set.name,
            eer_percent = scored.eer.eer * 100.0,
            "extra evaluation set scored"
        );
        extra_evals.push(NamedSplitResult {
            name: set.name.clone(),
            dataset: set.dataset.clone(),
            result: finish_split(
                &folder.out,
                &set.name,
                &set.split,
                &scored,
                set.data.utterances(),
                set.asv.as_ref(),
            )?,
        });
    }
    progress.wall_seconds = wall_seconds();
    let record = RunRecord {
        record_version: RECORD_VERSION,
        name: config.name.clone(),
        mode: config.mode(),
        backend: env.kind.to_string(),
        device: env.device_name.clone(),
        git_commit: git_commit(&folder.out).or_else(|| git_commit(Path::new("."))),
        config: config.clone(),
        params: net.counts,
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
        extra_evals,
        wall_seconds: progress.wall_seconds,
    };
    folder.lock.check_held()?;
    write_json(&folder.record, &record)?;
    Ok(record)
}

/// Writes the set's score file (`scores/<file_stem>.txt`) and summarises it: EER with its bootstrap interval, the EER
/// per attack and condition the protocol names (`utterances`), and with the organisers' ASV
/// scores the min t-DCF (ASVspoof 2019 cost model).
fn finish_split(
    out: &Path,
    file_stem: &str,
    split: &str,
    set: &ScoredSet,
    utterances: &[fadlora_data::Utterance],
    asv: Option<&fadlora_metrics::AsvScores>,
) -> Result<SplitResult, TrainError> {
    let rel = format!("{SCORES_DIR}/{file_stem}.txt");
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
    let bootstrap = fadlora_metrics::BootstrapOptions::default();
    Ok(SplitResult {
        split: split.to_string(),
        n_bonafide,
        n_spoof: set.scores.len() - n_bonafide,
        eer_percent: set.eer.eer * 100.0,
        threshold: set.eer.threshold,
        loss: set.loss,
        min_tdcf,
        scores_file: rel,
        eer_ci: Some(fadlora_run::stats::eer_ci_of(&set.scores, &bootstrap)?),
        bootstrap: Some(bootstrap),
        breakdown: fadlora_run::stats::breakdown(
            &set.scores,
            &fadlora_run::stats::factor_map(utterances),
            Some(&bootstrap),
        )?,
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
