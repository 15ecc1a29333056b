//! Decoding against references made by other programs (sox, the reference `flac` decoder) and
//! robustness against files that are not what they claim to be.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{fixture, read_raw_pcm};
use fadlora_audio::{
    decode, decode_many, load_many_mono_16k, load_mono_16k, summarize, AudioError, AudioFormat,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn copy_to(dir: &Path, fixture_name: &str, new_name: &str) -> PathBuf {
    let target = dir.join(new_name);
    fs::copy(fixture(fixture_name), &target).unwrap();
    target
}

#[test]
fn flac_16_bit_equals_the_reference_decoder() {
    let audio = decode(&fixture("speechlike_16k_s16.flac")).unwrap();
    let reference = read_raw_pcm("speechlike_16k_s16.s16le.raw", 16);
    assert_eq!(audio.sample_rate, 16_000);
    assert_eq!(audio.channels, 1);
    assert_eq!(audio.frames(), 8_000);
    assert_eq!(
        audio.samples, reference,
        "lossless decode must be bit-exact"
    );
    assert!(
        audio.samples.iter().any(|&s| s.abs() > 0.3),
        "fixture is not silence"
    );
}

#[test]
fn flac_24_bit_stereo_equals_the_reference_decoder() {
    let audio = decode(&fixture("stereo_44k1_s24.flac")).unwrap();
    let reference = read_raw_pcm("stereo_44k1_s24.s24le.raw", 24);
    assert_eq!(audio.sample_rate, 44_100);
    assert_eq!(audio.channels, 2);
    assert_eq!(audio.frames(), 8_820);
    assert_eq!(audio.samples, reference);
    assert!((audio.duration_seconds() - 0.2).abs() < 1e-9);
}

#[test]
fn every_wav_sample_format_decodes_to_the_same_tone() {
    let float = decode(&fixture("tone_16k_f32.wav")).unwrap();
    assert_eq!(float.frames(), 1_600);
    let peak = float.samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!((peak - 0.5012).abs() < 1e-3, "-6 dB tone, got peak {peak}");

    // sox rounds to the nearest step, so each format is within half a step (plus float slack)
    // of the float original; a wrong scale, sign or byte order would be off by far more.
    for (name, bits) in [
        ("tone_16k_u8.wav", 8u32),
        ("tone_16k_s16.wav", 16),
        ("tone_16k_s24.wav", 24),
        ("tone_16k_s32.wav", 32),
    ] {
        let audio = decode(&fixture(name)).unwrap();
        assert_eq!((audio.sample_rate, audio.channels), (16_000, 1), "{name}");
        let step = 1.0 / (1u64 << (bits - 1)) as f32;
        let diff = max_abs_diff(&audio.samples, &float.samples);
        assert!(
            diff <= step * 0.5 + 1e-6,
            "{name}: max difference {diff} exceeds half a step {step}"
        );
        assert!(audio.samples.iter().all(|s| (-1.0..1.0).contains(s)));
    }
}

#[test]
fn three_channel_extensible_wav_mixes_down_like_sox() {
    let audio = decode(&fixture("three_channels_16k_s16.wav")).unwrap();
    assert_eq!(audio.channels, 3);
    assert_eq!(audio.frames(), 1_600);
    let reference = decode(&fixture("three_channels_mono_reference_f32.wav")).unwrap();
    assert_eq!(reference.channels, 1);
    let mono = audio.to_mono();
    let diff = max_abs_diff(&mono, &reference.samples);
    assert!(
        diff < 1e-6,
        "mix-down differs from sox's `remix -` by {diff}"
    );
}

#[test]
fn load_mono_16k_matches_sox_resampling_sample_by_sample() {
    let ours = load_mono_16k(&fixture("tone_1k_44k1_stereo_s16.flac")).unwrap();
    let sox = decode(&fixture("tone_1k_16k_sox_reference_f32.wav")).unwrap();
    assert_eq!(ours.len(), sox.samples.len());
    assert_eq!(ours.len(), 4_800);
    // The two resamplers use different filters, so compare the tone (not the file edges,
    // where each handles the boundary its own way) and demand agreement well below the
    // signal: a shift of even one output sample would give about -10 dB here.
    let edge = 400;
    let error: Vec<f32> = ours[edge..ours.len() - edge]
        .iter()
        .zip(&sox.samples[edge..sox.samples.len() - edge])
        .map(|(a, b)| a - b)
        .collect();
    let relative = common::db(
        common::energy(&error) / common::energy(&sox.samples[edge..sox.samples.len() - edge]),
    );
    assert!(relative < -60.0, "difference to sox is {relative:.1} dB");
}

#[test]
fn format_is_detected_from_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let disguised = copy_to(dir.path(), "speechlike_16k_s16.flac", "actually_flac.wav");
    let summary = summarize(&disguised).unwrap();
    assert_eq!(summary.format, AudioFormat::Flac);
    assert_eq!(summary.frames, 8_000);
    let no_extension = copy_to(dir.path(), "tone_16k_s16.wav", "no_extension");
    assert_eq!(summarize(&no_extension).unwrap().format, AudioFormat::Wav);
}

#[test]
fn id3_tagged_flac_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"ID3\x04\x00\x00\x00\x00\x00\x05hello".to_vec();
    bytes.extend(fs::read(fixture("speechlike_16k_s16.flac")).unwrap());
    let path = dir.path().join("tagged.flac");
    fs::write(&path, bytes).unwrap();
    let audio = decode(&path).unwrap();
    assert_eq!(
        audio.samples,
        read_raw_pcm("speechlike_16k_s16.s16le.raw", 16)
    );
}

#[test]
fn missing_file_is_not_found_and_names_the_path() {
    let path = Path::new("/nonexistent/dir/LA_T_0000000.flac");
    let error = decode(path).unwrap_err();
    assert!(matches!(error, AudioError::NotFound { .. }), "{error:?}");
    assert!(error.is_missing());
    assert!(error.to_string().contains("LA_T_0000000.flac"));
    assert_eq!(error.path(), Some(path));
}

#[test]
fn empty_file_is_reported_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.flac");
    fs::write(&path, b"").unwrap();
    let error = decode(&path).unwrap_err();
    assert!(matches!(error, AudioError::EmptyFile { .. }), "{error:?}");
    assert!(error.to_string().contains("empty.flac"));
}

#[test]
fn wav_with_a_header_but_no_samples_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("header_only.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&path, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let error = decode(&path).unwrap_err();
    assert!(matches!(error, AudioError::NoSamples { .. }), "{error:?}");
}

#[test]
fn wav_whose_header_claims_more_data_than_present_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixture("tone_16k_s16.wav")).unwrap();
    let path = dir.path().join("cut.wav");
    fs::write(&path, &bytes[..bytes.len() - 1_001]).unwrap();
    let error = decode(&path).unwrap_err();
    assert!(matches!(error, AudioError::Truncated { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("cut.wav") && message.contains("1600"),
        "{message}"
    );
}

#[test]
fn truncated_flac_is_reported_as_truncated_wherever_it_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixture("speechlike_16k_s16.flac")).unwrap();
    // Inside the STREAMINFO block, between frames / inside a frame, and one byte short.
    for cut in [20, 100, bytes.len() / 2, bytes.len() - 1] {
        let path = dir.path().join(format!("cut_{cut}.flac"));
        fs::write(&path, &bytes[..cut]).unwrap();
        let error = decode(&path).unwrap_err();
        assert!(
            matches!(error, AudioError::Truncated { .. }),
            "cut at {cut}: {error:?}"
        );
        assert!(error.to_string().contains(&format!("cut_{cut}.flac")));
    }
}

#[test]
fn flipped_bits_in_a_flac_frame_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(fixture("speechlike_16k_s16.flac")).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5A;
    }
    let path = dir.path().join("bitrot.flac");
    fs::write(&path, bytes).unwrap();
    let error = decode(&path).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Corrupt { .. } | AudioError::Truncated { .. }
        ),
        "{error:?}"
    );
}

#[test]
fn other_formats_are_unsupported_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, expected) in [
        ("a.aiff", b"FORM\x00\x00\x00\x2eAIFF".to_vec(), "AIFF"),
        ("a.wav", b"RF64\xff\xff\xff\xffWAVE".to_vec(), "RF64"),
        (
            "a.txt",
            b"hello, world\n".to_vec(),
            "not a known audio file",
        ),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let error = decode(&path).unwrap_err();
        assert!(matches!(error, AudioError::Unsupported { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(name) && message.contains(expected),
            "{message}"
        );
    }
}

#[test]
fn a_directory_is_an_io_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let error = decode(dir.path()).unwrap_err();
    assert!(!error.is_missing(), "{error:?}");
    assert_eq!(error.path(), Some(dir.path()));
}

/// Random bytes, alone and behind valid WAV/FLAC magic and headers, must give an error and
/// never reach a decoder panic (which `decode` would catch, but which would mean a decoder
/// bug we rely on catching).
#[test]
fn garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let flac = fs::read(fixture("speechlike_16k_s16.flac")).unwrap();
    let wav = fs::read(fixture("tone_16k_s16.wav")).unwrap();
    let mut rng = StdRng::seed_from_u64(2023);
    let path = dir.path().join("garbage");
    for trial in 0..600 {
        let len = rng.random_range(0..2_000);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        match trial % 3 {
            // A valid header followed by garbage exercises the frame decoders.
            0 => {
                let keep = rng.random_range(0..flac.len().min(200));
                bytes.splice(0..0, flac[..keep].iter().copied());
            }
            1 => {
                let keep = rng.random_range(0..wav.len().min(100));
                bytes.splice(0..0, wav[..keep].iter().copied());
            }
            _ => {}
        }
        fs::write(&path, &bytes).unwrap();
        if let Err(error) = decode(&path) {
            assert!(
                !matches!(error, AudioError::DecoderPanic { .. }),
                "trial {trial}: {error}"
            );
            assert_eq!(error.path(), Some(path.as_path()));
        }
    }
}

#[test]
fn parallel_decoding_keeps_order_and_reports_each_failure() {
    let paths = vec![
        fixture("tone_16k_s16.wav"),
        PathBuf::from("/nonexistent.flac"),
        fixture("stereo_44k1_s24.flac"),
        fixture("tone_1k_44k1_stereo_s16.flac"),
    ];
    let results = decode_many(&paths);
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().sample_rate, 16_000);
    assert!(results[1].as_ref().unwrap_err().is_missing());
    assert_eq!(results[2].as_ref().unwrap().channels, 2);
    assert_eq!(results[3].as_ref().unwrap().sample_rate, 44_100);

    let loaded = load_many_mono_16k(&paths);
    assert_eq!(loaded[0].as_ref().unwrap().len(), 1_600);
    assert!(loaded[1].is_err());
    // 8820 frames at 44.1 kHz -> 3200 at 16 kHz.
    assert_eq!(loaded[2].as_ref().unwrap().len(), 3_200);
}
