//! Resampling quality: frequency, level and timing are kept, aliases and images are removed.

mod common;

use common::{db, energy, sine};
use fadlora_audio::{resample, TARGET_SAMPLE_RATE};

/// Skip the first and last 50 ms, where the filter sees the zeros outside the clip.
const EDGE_SECONDS: f64 = 0.05;

fn interior(samples: &[f32], rate: u32) -> &[f32] {
    let edge = (EDGE_SECONDS * f64::from(rate)) as usize;
    &samples[edge..samples.len() - edge]
}

/// Least-squares amplitude of a sinusoid of `frequency` in `samples` (sin and cos parts).
fn fitted_amplitude(samples: &[f32], frequency: f64, rate: u32) -> f64 {
    let (mut ss, mut cc, mut sc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &x) in samples.iter().enumerate() {
        let w = 2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate);
        let (s, c) = w.sin_cos();
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += f64::from(x) * s;
        xc += f64::from(x) * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    a.hypot(b)
}

/// Frequency from interpolated rising zero crossings: independent of any assumed frequency.
fn zero_crossing_frequency(samples: &[f32], rate: u32) -> f64 {
    let crossings: Vec<f64> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + f64::from(w[0] / (w[0] - w[1])))
        .collect();
    let periods = (crossings.len() - 1) as f64;
    periods * f64::from(rate) / (crossings[crossings.len() - 1] - crossings[0])
}

fn check_tone(from_hz: u32, frequency: f64) {
    let amplitude = 0.5;
    let phase = 0.3;
    let input = sine(frequency, amplitude, phase, from_hz, from_hz as usize);
    let output = resample(&input, from_hz, TARGET_SAMPLE_RATE).unwrap();
    assert_eq!(output.len(), TARGET_SAMPLE_RATE as usize, "{from_hz} Hz");

    // The exact same tone sampled at 16 kHz: comparing against it checks level, frequency and
    // timing at once. Any delay left in would show up as a large residual.
    let ideal = sine(
        frequency,
        amplitude,
        phase,
        TARGET_SAMPLE_RATE,
        output.len(),
    );
    let residual: Vec<f32> = interior(&output, TARGET_SAMPLE_RATE)
        .iter()
        .zip(interior(&ideal, TARGET_SAMPLE_RATE))
        .map(|(a, b)| a - b)
        .collect();
    let residual_db = db(energy(&residual) / energy(interior(&ideal, TARGET_SAMPLE_RATE)));
    assert!(
        residual_db < -60.0,
        "{from_hz} Hz -> 16 kHz, {frequency} Hz tone: distortion, aliases and timing error \
         together at {residual_db:.1} dB"
    );

    let level_db = 20.0
        * (fitted_amplitude(
            interior(&output, TARGET_SAMPLE_RATE),
            frequency,
            TARGET_SAMPLE_RATE,
        ) / amplitude)
            .log10();
    assert!(
        level_db.abs() < 0.1,
        "{from_hz} Hz: level off by {level_db:.3} dB"
    );

    let measured =
        zero_crossing_frequency(interior(&output, TARGET_SAMPLE_RATE), TARGET_SAMPLE_RATE);
    assert!(
        (measured - frequency).abs() < 0.05,
        "{from_hz} Hz: frequency {measured:.3} instead of {frequency}"
    );
}

#[test]
fn tone_from_44_1_khz_keeps_frequency_level_and_timing() {
    check_tone(44_100, 1_000.0);
    check_tone(44_100, 3_700.0);
}

#[test]
fn tone_from_48_khz_keeps_frequency_level_and_timing() {
    check_tone(48_000, 1_000.0);
    check_tone(48_000, 5_100.0);
}

#[test]
fn tone_from_8_khz_keeps_frequency_level_and_timing_without_images() {
    // Upsampling: an image of the 1 kHz tone would appear at 7 kHz and count in the residual.
    check_tone(8_000, 1_000.0);
    check_tone(8_000, 2_900.0);
}

#[test]
fn tones_above_the_new_nyquist_are_removed_not_aliased() {
    for from_hz in [44_100u32, 48_000] {
        for frequency in [9_000.0, 12_345.0, 20_000.0] {
            let input = sine(frequency, 0.5, 0.0, from_hz, from_hz as usize);
            let output = resample(&input, from_hz, TARGET_SAMPLE_RATE).unwrap();
            let leak_db = db(energy(interior(&output, TARGET_SAMPLE_RATE))
                / TARGET_SAMPLE_RATE as f64
                / (energy(interior(&input, from_hz)) / from_hz as f64));
            assert!(
                leak_db < -60.0,
                "{from_hz} Hz: a {frequency} Hz tone leaks through at {leak_db:.1} dB"
            );
        }
    }
}

#[test]
fn an_impulse_stays_at_the_same_time() {
    for from_hz in [44_100u32, 48_000, 8_000, 22_050] {
        let mut input = vec![0.0f32; from_hz as usize / 2];
        // At a time that is a whole number of output samples: 0.2 s.
        let at = from_hz as usize / 5;
        input[at] = 1.0;
        let output = resample(&input, from_hz, TARGET_SAMPLE_RATE).unwrap();
        let peak = output
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(peak, TARGET_SAMPLE_RATE as usize / 5, "{from_hz} Hz");
    }
}

#[test]
fn repeated_calls_are_independent() {
    // The resampler is cached per thread; state from one file must not leak into the next.
    let tone = sine(1_000.0, 0.5, 0.0, 44_100, 20_000);
    let first = resample(&tone, 44_100, 16_000).unwrap();
    let _other = resample(&vec![0.9f32; 5_000], 44_100, 16_000).unwrap();
    let again = resample(&tone, 44_100, 16_000).unwrap();
    assert_eq!(first, again);
}
