//! Splits of a corpus for a run, and batches decoded in parallel.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::prelude::*;
use fadlora_data::{
    AudioBatch, AudioBatcher, AudioDataset, AudioItem, DatasetSpec, Label, Split, Utterance,
};
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

/// How many decoded batches wait ahead of the consumer of a [`Prefetch`].
const PREFETCH_BATCHES: usize = 2;

/// Batches of a dataset decoded on a worker thread, up to two batches ahead of the
/// consumer, so the device does not wait for audio decoding between steps (unless decoding
/// is slower than a step). Yields each batch's items in order; dropping it stops the worker.
pub struct Prefetch {
    receiver: Option<Receiver<Vec<AudioItem>>>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts decoding `batches` (lists of indices into `dataset`).
    pub fn new(dataset: Arc<AudioDataset>, batches: Vec<Vec<usize>>) -> Self {
        let (sender, receiver) = sync_channel(PREFETCH_BATCHES);
        let worker = std::thread::spawn(move || {
            for indices in batches {
                let items: Vec<AudioItem> = indices
                    .par_iter()
                    .map(|&i| dataset.get(i).expect("index within the dataset"))
                    .collect();
                // The consumer is gone (early end or error): nothing more to decode.
                if sender.send(items).is_err() {
                    break;
                }
            }
        });
        Prefetch {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }
}

impl Iterator for Prefetch {
    type Item = Vec<AudioItem>;

    fn next(&mut self) -> Option<Vec<AudioItem>> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Closing the channel first ends a worker blocked in `send`.
        self.receiver.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Stacks decoded items into a device batch. A file that failed to decode is an error naming
/// it: training on silently shrunken batches would hide a corpus problem.
pub fn stack<B: Backend>(
    items: Vec<AudioItem>,
    device: &B::Device,
) -> Result<AudioBatch<B>, TrainError> {
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
