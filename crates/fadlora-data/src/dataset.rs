//! Utterances decoded on demand to fixed-length waveforms (the trainer stacks them into
//! tensors).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fadlora_audio::{
    fixed_length, load_mono_16k, normalize_peak, normalize_zero_mean_unit_variance, random_crop,
    AudioError, RawBoost,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::{DataError, Label, Utterance};

/// The input length of SSL_Anti-spoofing and AASIST: 64,600 samples (~4.04 s at 16 kHz).
pub const SSL_ANTI_SPOOFING_SAMPLES: usize = 64_600;

/// How a waveform is cut to the model's input: a fixed length, or all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropMode {
    /// The first samples, short files tiled ([`fadlora_audio::fixed_length`]): evaluation.
    First,
    /// A random window, short files tiled ([`fadlora_audio::random_crop`]): training. The window
    /// depends only on `seed`, the epoch ([`AudioDataset::set_epoch`]) and the item index, so
    /// it is the same whichever loader worker fetches the item.
    Random { seed: u64 },
    /// The whole file, neither cut nor tiled: items differ in length, so batch them one at a
    /// time (or by equal length). `samples` is ignored.
    Whole,
}

/// Optional amplitude normalisation after cropping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalization {
    /// Raw samples, as SSL_Anti-spoofing feeds XLS-R.
    None,
    /// Hugging Face `Wav2Vec2FeatureExtractor(do_normalize=True)`.
    ZeroMeanUnitVariance,
    /// Scale so the peak absolute sample is this value.
    Peak(f32),
}

/// One decoded, fixed-length trial. A file that fails to decode becomes an item carrying the
/// error instead of a panic inside a loader thread; the consumer decides what a failure means.
#[derive(Debug, Clone)]
pub struct AudioItem {
    pub id: String,
    pub label: Label,
    pub waveform: Result<Vec<f32>, Arc<AudioError>>,
}

/// Utterances decoded on demand to mono 16 kHz, cut or tiled to `samples`.
#[derive(Debug)]
pub struct AudioDataset {
    utterances: Vec<Utterance>,
    samples: usize,
    crop: CropMode,
    normalization: Normalization,
    augmentation: Option<Augmentation>,
    epoch: AtomicU64,
}

/// RawBoost on the whole decoded waveform, before cropping and normalisation (where
/// SSL_Anti-spoofing applies it); its draws depend only on `seed`, the epoch and the item index.
#[derive(Debug, Clone)]
struct Augmentation {
    rawboost: RawBoost,
    seed: u64,
}

impl AudioDataset {
    pub fn new(utterances: Vec<Utterance>, samples: usize, crop: CropMode) -> Self {
        AudioDataset {
            utterances,
            samples,
            crop,
            normalization: Normalization::None,
            augmentation: None,
            epoch: AtomicU64::new(0),
        }
    }

    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// Augments every waveform with `rawboost` before it is cropped: for training sets only.
    /// The draws depend only on `seed`, the epoch ([`AudioDataset::set_epoch`]) and the item
    /// index, so a run and its resumption see the same augmented inputs. Give it a seed other
    /// than the crop's: the crops then stay those of the same run without augmentation.
    pub fn with_augmentation(mut self, rawboost: RawBoost, seed: u64) -> Self {
        self.augmentation = Some(Augmentation { rawboost, seed });
        self
    }

    /// Chooses a new set of random crops (and augmentations). Call it at the start of each epoch (the data loader
    /// holds the dataset in an `Arc`, so keep a clone of that `Arc` to reach it).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    pub fn utterances(&self) -> &[Utterance] {
        &self.utterances
    }

    pub fn crop(&self) -> CropMode {
        self.crop
    }

    pub fn samples_per_item(&self) -> usize {
        self.samples
    }

    /// Fails if any audio file does not exist: a cheap check to run before training, so a
    /// wrong corpus path stops the run at once rather than batch by batch. (Run
    /// `fadlora data check` to decode every file.)
    pub fn check_files_exist(&self) -> Result<(), DataError> {
        let mut missing = self.utterances.iter().filter(|u| !u.path.is_file());
        match missing.next() {
            None => Ok(()),
            Some(first) => Err(DataError::MissingAudio {
                count: 1 + missing.count(),
                first: first.path.clone(),
            }),
        }
    }

    /// Item `index` decoded (or its decoding error); `None` past the end.
    pub fn item(&self, index: usize) -> Option<AudioItem> {
        let utterance = self.utterances.get(index)?;
        Some(AudioItem {
            id: utterance.id.clone(),
            label: utterance.label,
            waveform: self.waveform(index).map_err(Arc::new),
        })
    }

    pub fn len(&self) -> usize {
        self.utterances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.utterances.is_empty()
    }

    /// Decodes item `index` to its cropped (fixed-length unless [`CropMode::Whole`]), normalised
    /// waveform.
    pub fn waveform(&self, index: usize) -> Result<Vec<f32>, AudioError> {
        let utterance = &self.utterances[index];
        let mut audio = load_mono_16k(&utterance.path)?;
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(Augmentation { rawboost, seed }) = &self.augmentation {
            let mut rng = StdRng::seed_from_u64(mix_seed(*seed, epoch, index as u64));
            audio = rawboost.augment(&audio, &mut rng);
        }
        let mut waveform = match self.crop {
            CropMode::First => fixed_length(&audio, self.samples),
            CropMode::Whole => audio,
            CropMode::Random { seed } => {
                let mut rng = StdRng::seed_from_u64(mix_seed(seed, epoch, index as u64));
                random_crop(&audio, self.samples, &mut rng)
            }
        };
        match self.normalization {
            Normalization::None => {}
            Normalization::ZeroMeanUnitVariance => normalize_zero_mean_unit_variance(&mut waveform),
            Normalization::Peak(peak) => normalize_peak(&mut waveform, peak),
        }
        Ok(waveform)
    }
}

/// SplitMix64 finaliser over the three inputs: nearby (seed, epoch, index) triples give
/// unrelated RNG streams.
fn mix_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_across_epochs_and_indices() {
        let a = mix_seed(1, 0, 0);
        assert_ne!(a, mix_seed(1, 1, 0));
        assert_ne!(a, mix_seed(1, 0, 1));
        assert_ne!(a, mix_seed(2, 0, 0));
        assert_ne!(mix_seed(1, 1, 0), mix_seed(1, 0, 1));
    }
}
