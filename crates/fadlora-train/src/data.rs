//! Splits of a corpus for a run, batches decoded in parallel, and their tensors.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::TensorData;
use fadlora_audio::AudioError;
use fadlora_data::{AudioDataset, AudioItem, DatasetSpec, Label, Split, Utterance};
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
    select_trials(all, spec, Some(split), None, max_per_class)
}

/// The trials of an evaluation set: those of `split` and (ASVspoof 2021 keys) `subset` when
/// given, every one otherwise, cut as [`select_split`] cuts. Both classes must remain, or
/// there is no EER.
pub fn select_trials(
    all: &[Utterance],
    spec: &DatasetSpec,
    split: Option<&str>,
    subset: Option<&str>,
    max_per_class: Option<usize>,
) -> Result<Vec<Utterance>, TrainError> {
    let wanted = split.map(Split::parse);
    let limit = max_per_class.unwrap_or(usize::MAX);
    let (mut bona, mut spoof) = (0, 0);
    let selected: Vec<Utterance> = all
        .iter()
        .filter(|u| wanted.as_ref().is_none_or(|w| u.split == *w))
        .filter(|u| subset.is_none_or(|s| u.conditions.as_ref().is_some_and(|c| c.subset == s)))
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
    let what = match (split, subset) {
        (Some(split), Some(subset)) => format!("split `{split}`, subset `{subset}`,"),
        (Some(split), None) => format!("split `{split}`"),
        (None, Some(subset)) => format!("subset `{subset}`"),
        (None, None) => "the dataset".to_string(),
    };
    let has = |label| selected.iter().any(|u| u.label == label);
    if selected.is_empty() {
        return Err(TrainError::Dataset {
            dataset: spec.to_string(),
            what: format!("{what} has no utterances"),
        });
    }
    if !has(Label::Bonafide) || !has(Label::Spoof) {
        return Err(TrainError::Dataset {
            dataset: spec.to_string(),
            what: format!("{what} needs both bona fide and spoof utterances"),
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
                    .map(|&i| dataset.item(i).expect("index within the dataset"))
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

/// A batch ready for the model.
#[derive(Debug, Clone)]
pub struct AudioBatch<B: Backend> {
    /// `[batch, samples]`.
    pub waveforms: Tensor<B, 2>,
    /// `[batch]`: 1 = bona fide, 0 = spoof ([`Label::class_index`]).
    pub labels: Tensor<B, 1, Int>,
    /// Utterance ids in row order, for score files.
    pub ids: Vec<String>,
    /// Items that failed to decode and are not in the tensors (so `ids.len()` may be smaller
    /// than the requested batch size, and zero if every item failed).
    pub failures: Vec<(String, Arc<AudioError>)>,
}

/// Stacks [`AudioItem`]s into an [`AudioBatch`] on the requested device. Items must all have
/// the same length, which [`AudioDataset`] guarantees.
#[derive(Debug, Clone, Copy, Default)]
pub struct AudioBatcher;

impl<B: Backend> Batcher<B, AudioItem, AudioBatch<B>> for AudioBatcher {
    fn batch(&self, items: Vec<AudioItem>, device: &B::Device) -> AudioBatch<B> {
        let samples = items
            .iter()
            .find_map(|item| item.waveform.as_ref().ok().map(Vec::len))
            .unwrap_or(0);
        let mut flat = Vec::with_capacity(items.len() * samples);
        let mut labels = Vec::with_capacity(items.len());
        let mut ids = Vec::with_capacity(items.len());
        let mut failures = Vec::new();
        for item in items {
            match item.waveform {
                Ok(waveform) if waveform.len() == samples => {
                    flat.extend_from_slice(&waveform);
                    labels.push(item.label.class_index());
                    ids.push(item.id);
                }
                Ok(waveform) => {
                    // Not reachable through AudioDataset; reported rather than stacked wrongly.
                    let error = AudioError::Corrupt {
                        path: item.id.clone().into(),
                        detail: format!(
                            "waveform has {} samples, the batch has {samples}",
                            waveform.len()
                        ),
                    };
                    failures.push((item.id, Arc::new(error)));
                }
                Err(error) => failures.push((item.id, error)),
            }
        }
        let rows = ids.len();
        AudioBatch {
            waveforms: Tensor::from_data(TensorData::new(flat, [rows, samples]), device),
            labels: Tensor::from_data(TensorData::new(labels, [rows]), device),
            ids,
            failures,
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use burn::backend::Flex;
    use fadlora_data::CropMode;

    use super::*;

    /// Writes a 16 kHz mono 16-bit WAV whose samples are `values[i] / 32768` when decoded.
    fn write_wav(path: &Path, values: &[i16]) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &v in values {
            writer.write_sample(v).unwrap();
        }
        writer.finalize().unwrap();
    }

    fn utterance(id: &str, path: PathBuf, label: Label) -> Utterance {
        Utterance {
            id: id.into(),
            path,
            label,
            speaker: None,
            system: None,
            split: Split::Train,
            conditions: None,
        }
    }

    fn decoded(values: &[i16]) -> Vec<f32> {
        values.iter().map(|&v| f32::from(v) / 32768.0).collect()
    }

    /// A long bona fide file, a short spoof file and a spoof whose file is missing.
    fn corpus(dir: &Path) -> (AudioDataset, Vec<i16>, Vec<i16>) {
        let long: Vec<i16> = (0..1_000).map(|i: i16| i.wrapping_mul(7)).collect();
        let short: Vec<i16> = vec![0, 1000, 2000];
        write_wav(&dir.join("long.wav"), &long);
        write_wav(&dir.join("short.wav"), &short);
        let utterances = vec![
            utterance("long", dir.join("long.wav"), Label::Bonafide),
            utterance("short", dir.join("short.wav"), Label::Spoof),
            utterance("gone", dir.join("gone.wav"), Label::Spoof),
        ];
        (
            AudioDataset::new(utterances, 8, CropMode::First),
            long,
            short,
        )
    }

    #[test]
    fn batcher_stacks_waveforms_and_labels_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, long, short) = corpus(dir.path());
        let items: Vec<_> = (0..3).map(|i| dataset.item(i).unwrap()).collect();
        let batch: AudioBatch<Flex> = AudioBatcher.batch(items, &Default::default());

        assert_eq!(batch.waveforms.dims(), [2, 8]);
        assert_eq!(batch.ids, vec!["long", "short"]);
        let labels: Vec<i64> = batch.labels.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(labels, vec![1, 0]);
        let waveforms: Vec<f32> = batch.waveforms.into_data().to_vec().unwrap();
        assert_eq!(waveforms[..8], decoded(&long[..8]));
        // Short files are tiled to the crop length.
        assert_eq!(waveforms[8..11], decoded(&short));
        assert_eq!(waveforms[11..14], decoded(&short));
        assert_eq!(batch.failures.len(), 1);
        assert_eq!(batch.failures[0].0, "gone");
        assert!(batch.failures[0].1.is_missing());
    }

    #[test]
    fn a_failed_file_is_an_error_naming_it_and_a_batch_of_failures_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, _, _) = corpus(dir.path());
        let only_failures: AudioBatch<Flex> =
            AudioBatcher.batch(vec![dataset.item(2).unwrap()], &Default::default());
        assert_eq!(only_failures.waveforms.dims()[0], 0);
        let items: Vec<_> = (0..3).map(|i| dataset.item(i).unwrap()).collect();
        let err = stack::<Flex>(items, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
