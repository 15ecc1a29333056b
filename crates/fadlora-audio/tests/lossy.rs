//! Lossy formats against ffmpeg's decoders (reference decodes made by
//! `tools/audio-fixtures/generate.sh`): the same rate, channels and length, and samples that
//! agree to within what two correct floating-point decoders of one stream differ by.

mod common;

use std::fs;

use common::fixture;
use fadlora_audio::{decode, load_mono_16k, summarize, AudioError, AudioFormat, DecodedAudio};

fn reference(name: &str) -> DecodedAudio {
    let mut reader = hound::WavReader::open(fixture(name)).unwrap();
    let spec = reader.spec();
    DecodedAudio {
        samples: reader.samples::<f32>().map(Result::unwrap).collect(),
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    }
}

/// Signal-to-difference ratio in dB of `ours` against `reference`, over `reference`'s samples.
fn snr_db(ours: &[f32], reference: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&x| f64::from(x).powi(2)).sum();
    let noise: f64 = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

struct Case {
    file: &'static str,
    reference: &'static str,
    format: AudioFormat,
    /// Frames our decode has before the reference's first one: the AAC encoder's priming,
    /// which ffmpeg removes by the MP4 edit list and symphonia 0.5 does not read.
    leading_extra_frames: usize,
    min_snr_db: f64,
    max_abs_diff: f32,
}

const CASES: [Case; 5] = [
    Case {
        file: "lossy_44k1_stereo.mp3",
        reference: "lossy_44k1_stereo_mp3_ffmpeg_reference_f32.wav",
        format: AudioFormat::Mp3,
        leading_extra_frames: 0,
        min_snr_db: 100.0,
        max_abs_diff: 1e-5,
    },
    Case {
        file: "lossy_16k_mono.ogg",
        reference: "lossy_16k_mono_ogg_ffmpeg_reference_f32.wav",
        format: AudioFormat::Ogg,
        leading_extra_frames: 0,
        min_snr_db: 100.0,
        max_abs_diff: 1e-5,
    },
    // opus-decoder claims bit-exactness with libopus; it holds on this stream.
    Case {
        file: "lossy_16k_mono.opus",
        reference: "lossy_16k_mono_opus_libopus_reference_f32.wav",
        format: AudioFormat::Opus,
        leading_extra_frames: 0,
        min_snr_db: 200.0,
        max_abs_diff: 1e-7,
    },
    Case {
        file: "lossy_16k_mono.m4a",
        reference: "lossy_16k_mono_m4a_ffmpeg_reference_f32.wav",
        format: AudioFormat::Mp4,
        leading_extra_frames: 1024,
        min_snr_db: 100.0,
        max_abs_diff: 1e-5,
    },
    Case {
        file: "lossy_16k_mono.aac",
        reference: "lossy_16k_mono_aac_ffmpeg_reference_f32.wav",
        format: AudioFormat::Adts,
        leading_extra_frames: 0,
        min_snr_db: 100.0,
        max_abs_diff: 1e-5,
    },
];

#[test]
fn lossy_decodes_match_ffmpeg() {
    for case in &CASES {
        let ours = decode(&fixture(case.file)).unwrap_or_else(|e| panic!("{e}"));
        let reference = reference(case.reference);
        assert_eq!(ours.sample_rate, reference.sample_rate, "{}", case.file);
        assert_eq!(ours.channels, reference.channels, "{}", case.file);
        assert_eq!(
            ours.frames(),
            reference.frames() + case.leading_extra_frames,
            "{}",
            case.file
        );
        let aligned = &ours.samples[case.leading_extra_frames * usize::from(ours.channels)..];
        let snr = snr_db(aligned, &reference.samples);
        let diff = max_abs_diff(aligned, &reference.samples);
        assert!(
            snr >= case.min_snr_db && diff <= case.max_abs_diff,
            "{}: {snr:.1} dB, max |diff| {diff:.2e}",
            case.file
        );
        assert_eq!(summarize(&fixture(case.file)).unwrap().format, case.format);
    }
}

#[test]
fn lossy_files_load_as_16k_mono() {
    for case in &CASES {
        let decoded = decode(&fixture(case.file)).unwrap();
        let mono = load_mono_16k(&fixture(case.file)).unwrap();
        let expected = decoded.frames() as f64 * 16_000.0 / f64::from(decoded.sample_rate);
        assert!(
            (mono.len() as f64 - expected).abs() <= 1.0,
            "{}: {} samples, expected {expected}",
            case.file,
            mono.len()
        );
    }
}

/// The format comes from the bytes: an MP3 named `.wav` and an Opus file named `.ogg` decode.
#[test]
fn lossy_formats_are_recognised_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    for (file, new_name, format) in [
        ("lossy_44k1_stereo.mp3", "song.wav", AudioFormat::Mp3),
        ("lossy_16k_mono.opus", "voice.ogg", AudioFormat::Opus),
        ("lossy_16k_mono.m4a", "memo", AudioFormat::Mp4),
    ] {
        let path = dir.path().join(new_name);
        fs::copy(fixture(file), &path).unwrap();
        assert_eq!(summarize(&path).unwrap().format, format, "{file}");
    }
}

/// An MP3 whose LAME Info frame states its length is known to be cut when frames are missing.
#[test]
fn a_cut_mp3_is_reported_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixture("lossy_44k1_stereo.mp3")).unwrap();
    let path = dir.path().join("cut.mp3");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = decode(&path).unwrap_err();
    assert!(matches!(error, AudioError::Truncated { .. }), "{error:?}");
    assert!(error.to_string().contains("cut.mp3"), "{error}");
}

/// Random bytes behind each lossy format's magic, and each file with random bytes flipped or
/// cut at a random point, give an error or a decode, never a panic.
#[test]
fn damaged_lossy_files_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(15);
    let path = dir.path().join("damaged");
    for case in &CASES {
        let original = fs::read(fixture(case.file)).unwrap();
        for _ in 0..40 {
            let mut bytes = original.clone();
            match rng.random_range(0..3) {
                0 => bytes.truncate(rng.random_range(0..original.len())),
                1 => {
                    for _ in 0..rng.random_range(1..20) {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                }
                _ => {
                    let keep = rng.random_range(4..64.min(original.len()));
                    bytes.truncate(keep);
                    bytes.extend((0..rng.random_range(0..4_000)).map(|_| rng.random::<u8>()));
                }
            }
            fs::write(&path, &bytes).unwrap();
            if let Err(error) = decode(&path) {
                assert!(
                    !matches!(error, AudioError::DecoderPanic { .. }),
                    "{}: {error}",
                    case.file
                );
            }
        }
    }
}
