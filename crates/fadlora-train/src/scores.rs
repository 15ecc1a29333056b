//! Scoring a dataset with a detector. Score files and the EER of a score set against a
//! protocol are fadlora-run's ([`fadlora_run::scores`]), re-exported here.

use std::sync::Arc;
use std::time::Instant;

use fadlora_data::{AudioDataset, CropMode, Label};
use fadlora_metrics::Eer;
pub use fadlora_run::scores::*;
use fadlora_run::ScoreKind;

use crate::data::{stack, Prefetch};
use crate::detector::Detector;
use crate::measure::MemoryProbe;
use crate::TrainError;

/// The outcome of scoring a labelled set.
#[derive(Debug, Clone)]
pub struct ScoredSet {
    pub scores: Vec<Scored>,
    /// Class-weighted cross-entropy over the whole set (same weighting as training).
    pub loss: f64,
    pub eer: Eer,
    pub seconds: f64,
}

impl ScoredSet {
    pub fn utt_per_s(&self) -> f64 {
        self.scores.len() as f64 / self.seconds.max(1e-9)
    }

    /// Whether every utterance got the same score (so the EER is an artefact of tie order).
    pub fn all_equal(&self) -> bool {
        self.scores
            .first()
            .is_some_and(|first| self.scores.iter().all(|s| s.score == first.score))
    }
}

/// Scores every utterance of `dataset` with `model` (no gradients: pass the inner-backend
/// module), in batches of `batch_size`, each score made from the logits as `score` says.
/// Whole-file datasets ([`CropMode::Whole`]) go one utterance at a time: lengths differ, and
/// padding would change what the model sees.
pub fn score_dataset<B: fadlora_model::ModelBackend>(
    model: &Detector<B>,
    dataset: &Arc<AudioDataset>,
    batch_size: usize,
    class_weights: [f64; 2],
    score: ScoreKind,
    device: &B::Device,
    memory: &mut MemoryProbe,
) -> Result<ScoredSet, TrainError> {
    let start = Instant::now();
    let mut scores = Vec::with_capacity(dataset.utterances().len());
    let (mut weighted_nll, mut weight_sum) = (0.0, 0.0);
    let indices: Vec<usize> = (0..dataset.utterances().len()).collect();
    let batch_size = match dataset.crop() {
        CropMode::Whole => 1,
        _ => batch_size,
    };
    let batches: Vec<Vec<usize>> = indices.chunks(batch_size).map(<[usize]>::to_vec).collect();
    let decoded = Prefetch::new(Arc::clone(dataset), batches.clone());
    for (chunk, items) in batches.iter().zip(decoded) {
        let batch = stack::<B>(items, device)?;
        let logits = model.forward(batch.waveforms);
        memory.sample();
        let logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits");
        for (row, (&index, id)) in chunk.iter().zip(batch.ids).enumerate() {
            let label = dataset.utterances()[index].label;
            let (spoof, bona) = (logits[2 * row] as f64, logits[2 * row + 1] as f64);
            // Log-sum-exp written out so the loss is computed in f64 on the host.
            let max = spoof.max(bona);
            let log_z = max + ((spoof - max).exp() + (bona - max).exp()).ln();
            let (target, w) = match label {
                Label::Bonafide => (bona, class_weights[1]),
                Label::Spoof => (spoof, class_weights[0]),
            };
            weighted_nll += w * (log_z - target);
            weight_sum += w;
            scores.push(Scored {
                id,
                label,
                score: score.of(spoof, bona),
            });
        }
    }
    let eer = eer_of(&scores)?;
    Ok(ScoredSet {
        scores,
        loss: weighted_nll / weight_sum.max(1e-12),
        eer,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scores: &[f64]) -> ScoredSet {
        ScoredSet {
            scores: scores
                .iter()
                .enumerate()
                .map(|(i, &score)| Scored {
                    id: format!("u{i}"),
                    label: if i % 2 == 0 {
                        Label::Bonafide
                    } else {
                        Label::Spoof
                    },
                    score,
                })
                .collect(),
            loss: 0.0,
            eer: Eer {
                eer: 1.0,
                threshold: 0.0,
            },
            seconds: 1.0,
        }
    }

    #[test]
    fn tied_scores_are_told_apart_from_scores_that_differ() {
        assert!(set(&[0.0, 0.0, 0.0]).all_equal());
        assert!(!set(&[0.0, 0.0, 1e-9]).all_equal());
        assert!(!set(&[]).all_equal());
    }
}
