//! The targets of masked prediction: each 20 ms frame's cluster among k-means centroids of
//! MFCC features (13 cepstra + deltas + delta-deltas, per-utterance CMVN), fitted on the
//! training audio only. Frame `i` of an utterance covers samples `[320 i, 320 i + 400)`, as
//! frame `i` of the wav2vec2 feature encoder does, so a crop starting at a multiple of 320
//! samples has its labels at consecutive frames.

use std::path::Path;

use fadlora_ssl::kmeans::{self, KMeans, KMeansConfig, LabelUsage};
use fadlora_ssl::mfcc::{MfccConfig, MfccExtractor};
use fadlora_ssl::Frames;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TargetsSection;
use crate::PretrainError;

/// Samples between two frames: the feature encoder's stride at 16 kHz.
pub const FRAME_SHIFT: usize = 320;

/// The fitted centroids and how the fit went: `targets.json` of a pretraining run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetModel {
    pub clusters: usize,
    pub dim: usize,
    /// Row-major `clusters x dim`.
    pub centroids: Vec<f32>,
    pub fit_frames: usize,
    pub iterations: usize,
    pub converged: bool,
    pub inertia: f64,
}

/// What the labels of a set of utterances look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    pub frames: usize,
    pub used_clusters: usize,
    /// Share of frames in the most frequent cluster: the accuracy of always guessing it.
    pub majority_fraction: f64,
    pub perplexity: f64,
}

pub fn extractor() -> MfccExtractor {
    MfccExtractor::new(MfccConfig::hubert()).expect("the HuBERT MFCC settings are valid")
}

fn features(extractor: &MfccExtractor, samples: &[f32]) -> Result<Frames, PretrainError> {
    extractor
        .features(samples)
        .map_err(|e| PretrainError::Targets(e.to_string()))
}

impl TargetModel {
    /// Fits k-means on the MFCC frames of `train` (every utterance at least 400 samples).
    pub fn fit(
        train: &[Vec<f32>],
        settings: &TargetsSection,
        seed: u64,
    ) -> Result<Self, PretrainError> {
        let extractor = extractor();
        let per_utterance: Vec<Frames> = train
            .par_iter()
            .map(|samples| features(&extractor, samples))
            .collect::<Result<_, _>>()?;
        let dim = extractor.config().feature_dim();
        let data: Vec<f32> = per_utterance
            .into_iter()
            .flat_map(Frames::into_vec)
            .collect();
        let frames = Frames::new(dim, data).map_err(|e| PretrainError::Targets(e.to_string()))?;
        let fit = kmeans::fit(
            &frames,
            &KMeansConfig {
                num_clusters: settings.clusters,
                max_iterations: settings.max_iterations,
                seed,
                max_fit_frames: Some(settings.fit_frames),
            },
        )
        .map_err(|e| PretrainError::Targets(e.to_string()))?;
        Ok(TargetModel {
            clusters: settings.clusters,
            dim,
            centroids: fit.model.centroids().as_slice().to_vec(),
            fit_frames: fit.fit_frames,
            iterations: fit.iterations,
            converged: fit.converged,
            inertia: fit.inertia,
        })
    }

    fn kmeans(&self) -> Result<KMeans, PretrainError> {
        let centroids = Frames::new(self.dim, self.centroids.clone())
            .map_err(|e| PretrainError::Targets(e.to_string()))?;
        KMeans::from_centroids(centroids).map_err(|e| PretrainError::Targets(e.to_string()))
    }

    /// The label of every frame of every utterance.
    pub fn label(&self, utterances: &[Vec<f32>]) -> Result<Vec<Vec<u32>>, PretrainError> {
        let kmeans = self.kmeans()?;
        let extractor = extractor();
        utterances
            .par_iter()
            .map(|samples| {
                kmeans
                    .predict(&features(&extractor, samples)?)
                    .map_err(|e| PretrainError::Targets(e.to_string()))
            })
            .collect()
    }

    pub fn read(path: &Path) -> Result<Self, PretrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| PretrainError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| PretrainError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

pub fn usage(labels: &[Vec<u32>], clusters: usize) -> Result<UsageSummary, PretrainError> {
    let all: Vec<u32> = labels.iter().flatten().copied().collect();
    let usage = LabelUsage::from_labels(&all, clusters)
        .map_err(|e| PretrainError::Targets(e.to_string()))?;
    Ok(UsageSummary {
        frames: all.len(),
        used_clusters: usage.used_clusters(),
        majority_fraction: usage.majority_fraction(),
        perplexity: usage.perplexity(),
    })
}
