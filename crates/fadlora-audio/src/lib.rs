//! Audio front door of fadlora: decode WAV, FLAC, MP3, Ogg Vorbis, Opus and AAC (MP4/M4A,
//! ADTS), mix to mono, resample to 16 kHz,
//! crop or tile to a fixed length; augment training waveforms with RawBoost ([`rawboost`], the
//! eight modes of SSL_Anti-spoofing, drawn from a seeded RNG). Knows no tensor backend.
//!
//! ```no_run
//! use std::path::Path;
//! let waveform = fadlora_audio::load_mono_16k(Path::new("LA_T_1138215.flac"))?;
//! let model_input = fadlora_audio::fixed_length(&waveform, 64_600);
//! # Ok::<(), fadlora_audio::AudioError>(())
//! ```
//!
//! Every error names the file it concerns, and no input (random bytes, empty or truncated
//! files, lying headers) makes the decoders panic: a panic inside a decoder is caught and
//! returned as [`AudioError::DecoderPanic`].

mod compressed;
mod decode;
mod error;
pub mod rawboost;
mod resample;
mod shape;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use decode::{decode, summarize, AudioFormat, AudioSummary, DecodedAudio};
pub use error::AudioError;
pub use rawboost::{RawBoost, RawBoostMode};
pub use resample::{expected_output_len, resample};
pub use shape::{
    fixed_length, normalize_peak, normalize_zero_mean_unit_variance, random_crop, window,
    window_starts,
};

/// The rate wav2vec2 models are trained on.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Decodes a file, mixes it to mono and resamples it to [`TARGET_SAMPLE_RATE`] when needed.
pub fn load_mono_16k(path: &Path) -> Result<Vec<f32>, AudioError> {
    let audio = decode(path)?;
    let mono = audio.to_mono();
    if audio.sample_rate == TARGET_SAMPLE_RATE {
        return Ok(mono);
    }
    resample(&mono, audio.sample_rate, TARGET_SAMPLE_RATE).map_err(|e| e.with_path(path))
}

/// Decodes `paths` in parallel on the current rayon pool; results keep the order of `paths`.
///
/// Holds every decoded file in memory at once; for a whole corpus use [`decode_many_map`] and
/// keep only what is needed of each file.
pub fn decode_many(paths: &[PathBuf]) -> Vec<Result<DecodedAudio, AudioError>> {
    decode_many_map(paths, |_, decoded| decoded)
}

/// [`load_mono_16k`] over many files in parallel, in the order of `paths`.
pub fn load_many_mono_16k(paths: &[PathBuf]) -> Vec<Result<Vec<f32>, AudioError>> {
    paths.par_iter().map(|path| load_mono_16k(path)).collect()
}

/// Decodes each file in parallel and hands it to `reduce` on the worker thread, so only what
/// `reduce` returns is kept (e.g. an [`AudioSummary`] per file, with a progress counter bumped
/// inside `reduce`). Results keep the order of `paths`; the work runs on the current rayon
/// pool, so wrap the call in `ThreadPool::install` to bound the number of threads.
pub fn decode_many_map<T, F>(paths: &[PathBuf], reduce: F) -> Vec<T>
where
    T: Send,
    F: Fn(&Path, Result<DecodedAudio, AudioError>) -> T + Sync + Send,
{
    paths
        .par_iter()
        .map(|path| reduce(path, decode(path)))
        .collect()
}
