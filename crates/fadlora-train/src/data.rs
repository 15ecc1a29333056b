//! Splits of a corpus for a run, and batches decoded in parallel.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use fadlora_data::{AudioBatch, AudioBatcher, AudioDataset, DatasetSpec, Label, Split, Utterance};
use rayon::prelude::*;

use crate::TrainError;

/// The utterances of one split, optionally cut to the first `max_per_class` of each class
/// (protocol order, so the choice is stable).
pub fn select_split(
    all: &[Utterance],
    spec: &DatasetSpec,
    split: &str,
    max_per_class: Option<usize>,
) -> Result<Vec<Utterance>, TrainError> {
    let wanted = Split::parse(split);
    let limit = max_per_class.unwrap_or(usize::MAX);
    let (mut bona, mut spoof) = (0, 0);
    let selected: Vec<Utterance> = all
        .iter()
        .filter(|u| u.split == wanted)
        .filter(|u| {
            let count = match u.label {
                Label::Bonafide => &mut bona,
                Label::Spoof => &mut spoof,
            };
            *count += 1;
            *count <= limit
        })
        .cloned()
        .collect();
    let has = |label| selected.iter().any(|u| u.label == label);
    if selected.is_empty() {
        return Err(TrainError::Dataset {
            dataset: spec.to_string(),
            what: format!("split `{split}` has no utterances"),
        });
    }
    if !has(Label::Bonafide) || !has(Label::Spoof) {
        return Err(TrainError::Dataset {
            dataset: spec.to_string(),
            what: format!("split `{split}` needs both bona fide and spoof utterances"),
        });
    }
    Ok(selected)
}

/// Decodes `indices` of `dataset` (in parallel) and stacks them. A file that fails to decode
/// is an error naming it: training on silently shrunken batches would hide a corpus problem.
pub fn load_batch<B: Backend>(
    dataset: &AudioDataset,
    indices: &[usize],
    device: &B::Device,
) -> Result<AudioBatch<B>, TrainError> {
    let items: Vec<_> = indices
        .par_iter()
        .map(|&i| dataset.get(i).expect("index within the dataset"))
        .collect();
    let batch: AudioBatch<B> = AudioBatcher.batch(items, device);
    if let Some((id, error)) = batch.failures.first() {
        return Err(TrainError::Dataset {
            dataset: id.clone(),
            what: format!(
                "cannot decode {id}: {error} ({} file(s) of this batch failed)",
                batch.failures.len()
            ),
        });
    }
    Ok(batch)
}
