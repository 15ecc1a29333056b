//! Using a trained detector on a dataset split (`fadlora eval`); whole files are scored by
//! [`crate::detect`].

use std::path::{Path, PathBuf};

use fadlora_data::{AudioDataset, DatasetSpec};

use crate::backend::{run_on, BackendEnv, BackendJob};
use crate::checkpoint::{load_detector, DETECTOR_FILE};
use crate::data::select_trials;
use crate::scores::{score_dataset, ScoredSet};
use crate::TrainError;
use fadlora_run::BackendKind;

/// A run folder or its `best/` folder -> the folder holding `detector.json`.
pub fn resolve_checkpoint(dir: &Path) -> Result<PathBuf, TrainError> {
    for candidate in [dir.to_path_buf(), dir.join("best")] {
        if candidate.join(DETECTOR_FILE).is_file() {
            return Ok(candidate);
        }
    }
    Err(TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message: format!("no {DETECTOR_FILE} here or in best/ (is this a training output folder?)"),
    })
}

/// Scores split `split` of `dataset` with the detector in `checkpoint`.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    dataset: &DatasetSpec,
    split: Option<&str>,
    backend: BackendKind,
    batch_size: usize,
    class_weights: [f64; 2],
) -> Result<ScoredSet, TrainError> {
    evaluate_checkpoint_subset(
        checkpoint,
        dataset,
        split,
        None,
        backend,
        batch_size,
        class_weights,
    )
}

/// [`evaluate_checkpoint`] on the trials of `split` and `subset` (ASVspoof 2021 keys), each
/// when given: the selection the trainer makes for a `[[eval_sets]]` entry.
pub fn evaluate_checkpoint_subset(
    checkpoint: &Path,
    dataset: &DatasetSpec,
    split: Option<&str>,
    subset: Option<&str>,
    backend: BackendKind,
    batch_size: usize,
    class_weights: [f64; 2],
) -> Result<ScoredSet, TrainError> {
    let dir = resolve_checkpoint(checkpoint)?;
    let utterances = select_trials(&dataset.load()?, dataset, split, subset, None)?;
    struct Job<'a> {
        dir: &'a Path,
        utterances: Vec<fadlora_data::Utterance>,
        batch_size: usize,
        class_weights: [f64; 2],
    }
    impl BackendJob for Job<'_> {
        type Output = Result<ScoredSet, TrainError>;
        fn run<B: fadlora_model::ModelBackend>(
            self,
            device: B::Device,
            mut env: BackendEnv,
        ) -> Self::Output {
            let (model, info) = load_detector::<B>(self.dir, &device)?;
            let model = model.merge_adapters()?;
            let ds = std::sync::Arc::new(
                AudioDataset::new(self.utterances, info.crop_samples, info.eval_crop())
                    .with_normalization(info.normalization.to_data()),
            );
            ds.check_files_exist()?;
            score_dataset(
                &model,
                &ds,
                self.batch_size,
                self.class_weights,
                info.score,
                &device,
                &mut env.memory,
            )
        }
    }
    run_on(
        backend,
        Job {
            dir: &dir,
            utterances,
            batch_size,
            class_weights,
        },
    )?
}
