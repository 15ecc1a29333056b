//! MFCCs against torchaudio, on the samples stored by `tools/fixtures/make_ssl_fixtures.py`.
//!
//! Two references per utterance: torchaudio in `f32` (what HuBERT computes) and the same
//! torchaudio code run entirely in `f64`. This crate computes in `f64` and rounds its outputs
//! to `f32`, so it should match the `f64` run to output rounding and the `f32` run only as
//! well as that run matches the `f64` one: `mfcc.json` records torchaudio's own
//! `f32`-vs-`f64` gap, at most 3.2e-4 on raw cepstra spanning -65..43 (its `f32` FFT of quiet
//! high-frequency bins, amplified by the lifter up to 12x) and 3.5e-5 on the normalised features.

use fadlora_ssl::mfcc::{MfccConfig, MfccExtractor};
use safetensors::{Dtype, SafeTensors};

/// Raw cepstra vs torchaudio `f32`: about 3x torchaudio's own `f32`-vs-`f64` gap (3.2e-4).
const MFCC_TOLERANCE_VS_F32: f64 = 1e-3;
/// Normalised features vs torchaudio `f32`: about 3x its gap (3.5e-5).
const FEATURES_TOLERANCE_VS_F32: f64 = 1e-4;
/// Against torchaudio in `f64` only the rounding of outputs to `f32` remains: half an `f32`
/// ulp is 3.8e-6 for |c| in [64, 128) (measured: 1.9e-6).
const MFCC_TOLERANCE_VS_F64: f64 = 1e-5;
/// Features are within ±8 (half an ulp 4.8e-7), plus the rounding of the cepstra and deltas
/// they are computed from, divided by each dimension's std (measured: 2.3e-7).
const FEATURES_TOLERANCE_VS_F64: f64 = 2e-6;

fn fixture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mfcc.safetensors"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn values(tensors: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f64>) {
    let view = tensors
        .tensor(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (view.shape().to_vec(), values)
}

fn utterances(tensors: &SafeTensors<'_>) -> Vec<String> {
    let mut names: Vec<String> = tensors
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix("/samples").map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn max_abs_difference(ours: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn raw_mfcc_and_normalised_features_match_torchaudio() {
    let bytes = fixture();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let utterances = utterances(&tensors);
    assert_eq!(utterances.len(), 3, "{utterances:?}");
    let extractor = MfccExtractor::new(MfccConfig::hubert()).unwrap();

    for utt in &utterances {
        let (_, samples) = values(&tensors, &format!("{utt}/samples"));
        let samples: Vec<f32> = samples.iter().map(|&s| s as f32).collect();
        let mfcc = extractor.mfcc(&samples).unwrap();
        let features = extractor.features(&samples).unwrap();

        let (shape, mfcc_f32) = values(&tensors, &format!("{utt}/mfcc"));
        assert_eq!(shape, [1 + (samples.len() - 400) / 320, 13], "{utt}");
        assert_eq!(
            [mfcc.num_frames(), mfcc.dim()],
            [shape[0], shape[1]],
            "{utt}"
        );
        let (_, mfcc_f64) = values(&tensors, &format!("{utt}/mfcc_f64"));
        let (shape, features_f32) = values(&tensors, &format!("{utt}/features"));
        assert_eq!(
            [features.num_frames(), features.dim()],
            [shape[0], shape[1]],
            "{utt}"
        );
        let (_, features_f64) = values(&tensors, &format!("{utt}/features_f64"));

        let errors = [
            (
                "mfcc vs torchaudio f32",
                max_abs_difference(mfcc.as_slice(), &mfcc_f32),
                MFCC_TOLERANCE_VS_F32,
            ),
            (
                "mfcc vs torchaudio f64",
                max_abs_difference(mfcc.as_slice(), &mfcc_f64),
                MFCC_TOLERANCE_VS_F64,
            ),
            (
                "features vs torchaudio f32",
                max_abs_difference(features.as_slice(), &features_f32),
                FEATURES_TOLERANCE_VS_F32,
            ),
            (
                "features vs torchaudio f64",
                max_abs_difference(features.as_slice(), &features_f64),
                FEATURES_TOLERANCE_VS_F64,
            ),
        ];
        for (what, error, tolerance) in errors {
            println!("{utt}: max |{what}| = {error:.2e} (tolerance {tolerance:.0e})");
            assert!(
                error <= tolerance,
                "{utt}: max |{what}| = {error:.3e} > {tolerance:.0e}"
            );
        }
    }
}

#[test]
fn the_fixture_exercises_silence_and_speech() {
    // A reference without quiet frames would never test the ln(max(energy, eps)) floor
    // region, and one without speech would test little else.
    let bytes = fixture();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let (mut lowest_c0, mut highest_c0) = (f64::INFINITY, f64::NEG_INFINITY);
    for utt in utterances(&tensors) {
        let (shape, mfcc) = values(&tensors, &format!("{utt}/mfcc"));
        for frame in mfcc.chunks_exact(shape[1]) {
            lowest_c0 = lowest_c0.min(frame[0]);
            highest_c0 = highest_c0.max(frame[0]);
        }
    }
    assert!(
        highest_c0 - lowest_c0 > 40.0,
        "C0 spans only {lowest_c0:.1}..{highest_c0:.1}"
    );
}
