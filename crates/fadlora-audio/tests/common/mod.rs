//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A committed fixture made by `tools/audio-fixtures/generate.sh`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Little-endian signed PCM as written by `flac -d --force-raw-format`, scaled like the decoder.
pub fn read_raw_pcm(name: &str, bits: u32) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let width = (bits / 8) as usize;
    assert_eq!(bytes.len() % width, 0);
    let scale = 1.0 / (1u64 << (bits - 1)) as f64;
    bytes
        .chunks_exact(width)
        .map(|chunk| {
            let mut value: i32 = 0;
            for (i, &b) in chunk.iter().enumerate() {
                value |= i32::from(b) << (8 * i);
            }
            // Sign-extend from `bits`.
            let shift = 32 - bits;
            let value = (value << shift) >> shift;
            (f64::from(value) * scale) as f32
        })
        .collect()
}

pub fn sine(frequency: f64, amplitude: f64, phase: f64, sample_rate: u32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let t = i as f64 / f64::from(sample_rate);
            (amplitude * (2.0 * std::f64::consts::PI * frequency * t + phase).sin()) as f32
        })
        .collect()
}

pub fn energy(samples: &[f32]) -> f64 {
    samples.iter().map(|&x| f64::from(x).powi(2)).sum()
}

pub fn db(ratio_of_energies: f64) -> f64 {
    10.0 * ratio_of_energies.log10()
}
