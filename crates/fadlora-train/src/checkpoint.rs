//! What a run leaves on disk to be resumed, evaluated and used for detection.
//!
//! Only the tensors that change are saved each epoch (`trainable.safetensors`: LoRA adapters +
//! head, the head alone for a probe, or everything in full fine-tuning; with them the running
//! statistics of an AASIST head's BatchNorm layers, which change without being trained). The
//! frozen front end comes from its source: the
//! pretrained checkpoint, or — when the run started from a random initialisation, which no file
//! holds — `base.safetensors`, written once per run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::config::NormalizationChoice;
use crate::detector::{BaseSource, Detector, DetectorConfig};
use crate::TrainError;
use fadlora_data::CropMode;
use fadlora_run::config::EvalWindow;
pub use fadlora_run::layout::{BASE_FILE, DETECTOR_FILE, OPTIMIZER_FILE, TRAINABLE_FILE};
use fadlora_run::{write_atomic, ScoreKind};

/// `detector.json`: how to rebuild a trained detector (next to its `trainable.safetensors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectorFile {
    pub config: DetectorConfig,
    pub source: BaseSource,
    /// File with the frozen front end when `source` is random (relative to this file's folder).
    pub base_file: Option<PathBuf>,
    pub crop_samples: usize,
    pub normalization: NormalizationChoice,
    /// Epoch (1-based) this detector was selected at.
    pub epoch: usize,
    /// The dev-set EER threshold at that epoch: the operating point `fadlora detect` uses by
    /// default (with class-weighted training, 0 is not the balanced boundary).
    #[serde(default)]
    pub dev_eer_threshold: Option<f64>,
    /// How logits become scores (`[head] score`): the threshold above and every score of this
    /// detector are in its units. Detectors saved before the choice existed used the logit
    /// difference, the default.
    #[serde(default)]
    pub score: ScoreKind,
    /// What part of a file scoring sees (`[data] eval_window`), so `fadlora eval` scores as the
    /// run did. Detectors saved before the choice existed used the fixed window.
    #[serde(default, skip_serializing_if = "is_fixed")]
    pub eval_window: EvalWindow,
}

fn is_fixed(window: &EvalWindow) -> bool {
    *window == EvalWindow::Fixed
}

impl DetectorFile {
    /// How this detector's scoring cuts a file.
    pub fn eval_crop(&self) -> CropMode {
        eval_crop(self.eval_window)
    }
}

/// The crop scoring uses under `window`.
pub fn eval_crop(window: EvalWindow) -> CropMode {
    match window {
        EvalWindow::Fixed => CropMode::First,
        EvalWindow::Whole => CropMode::Whole,
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Saves the float parameters at `paths` (burn-store dotted paths) as safetensors, atomically.
pub fn save_params<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &M,
    paths: &BTreeSet<String>,
    file: &Path,
) -> Result<(), TrainError> {
    let tmp = file.with_extension("safetensors.partial");
    let _ = std::fs::remove_file(&tmp);
    let mut store = SafetensorsStore::from_file(&tmp).with_full_paths(paths.iter().cloned());
    let saved = module
        .save_into(&mut store)
        .map_err(|e| store_error(file, e))
        .and_then(|()| std::fs::rename(&tmp, file).map_err(|e| TrainError::io(file, e)));
    if saved.is_err() {
        // A failed write (disk full) must not leave a half file beside the good one.
        let _ = std::fs::remove_file(&tmp);
    }
    saved
}

/// Loads every tensor of `file` into `module` by path. Each tensor in the file must land on a
/// parameter of the same shape; parameters absent from the file keep their values.
pub fn load_params<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    mut module: M,
    file: &Path,
) -> Result<M, TrainError> {
    let mut store = SafetensorsStore::from_file(file).allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| store_error(file, e))?;
    if !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(store_error(
            file,
            format!(
                "does not fit the model: errors {:?}, tensors with no place in the model {:?}",
                result.errors, result.unused
            ),
        ));
    }
    Ok(module)
}

/// Writes the optimizer state (burn's named MessagePack, as its file recorder writes it) with
/// [`write_atomic`]. Not through burn's file recorder: it writes in place through a `BufWriter`
/// it never flushes itself, so a failure in the last buffered bytes (disk full, file too large)
/// was not reported, and the truncated file was committed as the checkpoint to resume from.
pub fn save_optimizer<
    B: AutodiffBackend,
    M: burn::module::AutodiffModule<B>,
    O: Optimizer<M, B>,
>(
    optim: &O,
    file: &Path,
) -> Result<(), TrainError> {
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .record(optim.to_record(), ())
        .map_err(|e| store_error(file, e))?;
    Ok(write_atomic(file, &bytes)?)
}

pub fn load_optimizer<
    B: AutodiffBackend,
    M: burn::module::AutodiffModule<B>,
    O: Optimizer<M, B>,
>(
    optim: O,
    file: &Path,
    device: &B::Device,
) -> Result<O, TrainError> {
    let bytes = std::fs::read(file).map_err(|e| TrainError::io(file, e))?;
    let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
        .load(bytes, device)
        .map_err(|e| store_error(file, e))?;
    Ok(optim.load_record(record))
}

/// Rebuilds a trained detector from a folder holding `detector.json` and
/// `trainable.safetensors` (a run's `best/`), on any backend.
pub fn load_detector<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Detector<B>, DetectorFile), TrainError> {
    let info_path = dir.join(DETECTOR_FILE);
    let text = std::fs::read_to_string(&info_path).map_err(|e| TrainError::io(&info_path, e))?;
    let info: DetectorFile = serde_json::from_str(&text).map_err(|e| store_error(&info_path, e))?;
    let mut detector = info.config.build::<B>(&info.source, device)?;
    if let Some(base) = &info.base_file {
        detector = load_params(detector, &dir.join(base))?;
    }
    detector = load_params(detector, &dir.join(TRAINABLE_FILE))?;
    Ok((detector.with_frozen_weights_in_precision(), info))
}

pub fn write_detector_file(dir: &Path, info: &DetectorFile) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(info).expect("serialisable");
    Ok(write_atomic(&dir.join(DETECTOR_FILE), json.as_bytes())?)
}
