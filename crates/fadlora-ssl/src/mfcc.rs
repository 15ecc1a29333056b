//! Kaldi MFCCs exactly as `torchaudio.compliance.kaldi.mfcc` computes them, plus the deltas
//! and per-utterance normalisation that turn them into HuBERT's first-iteration features.
//!
//! The pipeline of [`MfccExtractor::features`] mirrors HuBERT's `dump_mfcc_feature.py`:
//! `kaldi.mfcc` on the float waveform as loaded (samples in [-1, 1], *not* scaled by 32768:
//! that scale would only add a constant to every log-mel energy, hence to C0, except in
//! frames at the `f32::EPSILON` energy floor), then `torchaudio.functional.compute_deltas` twice, concatenated to `[c, Δc, ΔΔc]`. Two
//! deliberate differences: the frame shift is 20 ms instead of Kaldi's 10 ms, so that frame
//! `i` covers the same 320-sample step as output frame `i` of the wav2vec2 feature encoder,
//! and each utterance is then normalised to zero mean and unit (population) variance per
//! dimension, which HuBERT's script does not do.
//!
//! Per frame: remove the DC offset, pre-emphasise, apply the Povey window, zero-pad to the
//! next power of two, take the power spectrum, sum it through triangular mel filters, take
//! `ln(max(energy, f32::EPSILON))`, apply the DCT and the cepstral lifter. Options that
//! torchaudio exposes but HuBERT leaves at their defaults are fixed here: no dither,
//! `snip_edges = true`, Povey window, `use_energy = false`, `htk_compat = false`, no VTLN
//! warping, FFT length rounded up to a power of two.
//!
//! torchaudio computes in `f32`; this module computes in `f64` and rounds the outputs to
//! `f32`, so results agree to the precision of torchaudio's `f32` FFT, not bit for bit.

use crate::Frames;

/// The knobs of [`MfccExtractor`]; [`MfccConfig::hubert`] (also the `Default`) holds the
/// values this project uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MfccConfig {
    pub sample_frequency: f64,
    pub frame_length_ms: f64,
    pub frame_shift_ms: f64,
    /// Cepstra kept, C0 included.
    pub num_ceps: usize,
    pub num_mel_bins: usize,
    /// Lower edge of the first mel filter in Hz.
    pub low_freq: f64,
    /// Upper edge of the last mel filter in Hz; zero or negative counts from Nyquist.
    pub high_freq: f64,
    pub preemphasis_coefficient: f64,
    pub remove_dc_offset: bool,
    /// Kaldi's `cepstral-lifter` Q: cepstrum `i` is scaled by `1 + Q/2 sin(pi i / Q)`; 0 disables.
    pub cepstral_lifter: f64,
    /// Frames in the regression window of `compute_deltas` (torchaudio's `win_length`).
    pub delta_win_length: usize,
}

impl MfccConfig {
    /// torchaudio's `kaldi.mfcc` defaults (as HuBERT calls it) with a 20 ms frame shift.
    pub fn hubert() -> Self {
        Self {
            sample_frequency: 16000.0,
            frame_length_ms: 25.0,
            frame_shift_ms: 20.0,
            num_ceps: 13,
            num_mel_bins: 23,
            low_freq: 20.0,
            high_freq: 0.0,
            preemphasis_coefficient: 0.97,
            remove_dc_offset: true,
            cepstral_lifter: 22.0,
            delta_win_length: 5,
        }
    }

    /// Samples per frame, computed with torchaudio's expression so that rounding agrees.
    pub fn window_size(&self) -> usize {
        (self.sample_frequency * self.frame_length_ms * 0.001) as usize
    }

    /// Samples between frame starts, computed with torchaudio's expression.
    pub fn window_shift(&self) -> usize {
        (self.sample_frequency * self.frame_shift_ms * 0.001) as usize
    }

    /// Frames of a signal of `num_samples` (`snip_edges`: only frames that fit entirely).
    pub fn num_frames(&self, num_samples: usize) -> usize {
        let (size, shift) = (self.window_size(), self.window_shift());
        if num_samples < size || shift == 0 {
            0
        } else {
            1 + (num_samples - size) / shift
        }
    }

    /// Dimension of [`MfccExtractor::features`]: cepstra, deltas and delta-deltas.
    pub fn feature_dim(&self) -> usize {
        3 * self.num_ceps
    }
}

impl Default for MfccConfig {
    fn default() -> Self {
        Self::hubert()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MfccError {
    #[error("invalid MFCC configuration: {0}")]
    InvalidConfig(String),
    #[error("{num_samples} samples are fewer than one {window_size}-sample window")]
    TooShort {
        num_samples: usize,
        window_size: usize,
    },
    #[error("sample {index} is not a finite number ({value})")]
    NonFiniteSample { index: usize, value: f32 },
}

/// An MFCC computer with its window, filter bank, DCT and FFT tables built once.
#[derive(Debug, Clone)]
pub struct MfccExtractor {
    config: MfccConfig,
    window_size: usize,
    window_shift: usize,
    window: Vec<f64>,
    fft: RealFft,
    /// `num_mel_bins` rows over the `fft_len / 2 + 1` power-spectrum bins.
    mel_banks: Vec<Vec<f64>>,
    /// `dct[bin][cep]`, a right-multiplied matrix as torchaudio's `_get_dct_matrix`.
    dct: Vec<Vec<f64>>,
    lifter: Vec<f64>,
}

impl MfccExtractor {
    pub fn new(config: MfccConfig) -> Result<Self, MfccError> {
        let window_size = config.window_size();
        let window_shift = config.window_shift();
        validate(&config, window_size, window_shift)?;
        let fft_len = window_size.next_power_of_two();
        let mel_banks = mel_banks(&config, fft_len)?;
        Ok(Self {
            window_size,
            window_shift,
            window: povey_window(window_size),
            fft: RealFft::new(fft_len),
            mel_banks,
            dct: dct_matrix(config.num_ceps, config.num_mel_bins),
            lifter: lifter_coefficients(config.num_ceps, config.cepstral_lifter),
            config,
        })
    }

    pub fn config(&self) -> &MfccConfig {
        &self.config
    }

    /// Raw cepstra, `num_ceps` per frame: what `kaldi.mfcc` returns.
    pub fn mfcc(&self, samples: &[f32]) -> Result<Frames, MfccError> {
        if let Some((index, &value)) = samples.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(MfccError::NonFiniteSample { index, value });
        }
        if samples.len() < self.window_size {
            return Err(MfccError::TooShort {
                num_samples: samples.len(),
                window_size: self.window_size,
            });
        }
        let num_frames = self.config.num_frames(samples.len());
        let num_ceps = self.config.num_ceps;
        let mut out = Vec::with_capacity(num_frames * num_ceps);
        let mut frame = vec![0.0f64; self.window_size];
        let mut padded = vec![0.0f64; self.fft.len()];
        let mut power = vec![0.0f64; self.fft.len() / 2 + 1];
        let mut log_mel = vec![0.0f64; self.config.num_mel_bins];
        for index in 0..num_frames {
            let start = index * self.window_shift;
            let raw = &samples[start..start + self.window_size];
            for (f, &s) in frame.iter_mut().zip(raw) {
                *f = f64::from(s);
            }
            self.windowed_frame(&mut frame);
            padded[..self.window_size].copy_from_slice(&frame);
            padded[self.window_size..].fill(0.0);
            self.fft.power_spectrum(&padded, &mut power);
            for (value, bank) in log_mel.iter_mut().zip(&self.mel_banks) {
                let energy: f64 = bank.iter().zip(&power).map(|(w, p)| w * p).sum();
                *value = energy.max(f64::from(f32::EPSILON)).ln();
            }
            for cep in 0..num_ceps {
                let sum: f64 = log_mel
                    .iter()
                    .zip(&self.dct)
                    .map(|(m, row)| m * row[cep])
                    .sum();
                out.push((sum * self.lifter[cep]) as f32);
            }
        }
        Ok(Frames {
            dim: num_ceps,
            data: out,
        })
    }

    /// HuBERT's first-iteration features: cepstra, deltas and delta-deltas
    /// (`3 * num_ceps` per frame), normalised per utterance by [`normalize_per_utterance`].
    pub fn features(&self, samples: &[f32]) -> Result<Frames, MfccError> {
        let mut features = with_deltas(&self.mfcc(samples)?, self.config.delta_win_length);
        normalize_per_utterance(&mut features);
        Ok(features)
    }

    /// DC removal, pre-emphasis and window, in torchaudio's order.
    fn windowed_frame(&self, frame: &mut [f64]) {
        if self.config.remove_dc_offset {
            let mean = frame.iter().sum::<f64>() / frame.len() as f64;
            frame.iter_mut().for_each(|x| *x -= mean);
        }
        let coefficient = self.config.preemphasis_coefficient;
        if coefficient != 0.0 {
            // Backwards so that each sample still sees its unmodified predecessor; the first
            // sample is its own predecessor (torchaudio pads with `replicate`).
            for j in (1..frame.len()).rev() {
                frame[j] -= coefficient * frame[j - 1];
            }
            frame[0] -= coefficient * frame[0];
        }
        for (x, w) in frame.iter_mut().zip(&self.window) {
            *x *= w;
        }
    }
}

fn validate(config: &MfccConfig, window_size: usize, window_shift: usize) -> Result<(), MfccError> {
    let invalid = |message: String| Err(MfccError::InvalidConfig(message));
    if !(config.sample_frequency > 0.0 && config.sample_frequency.is_finite()) {
        return invalid(format!(
            "sample_frequency {} must be positive",
            config.sample_frequency
        ));
    }
    if window_size < 2 {
        return invalid(format!(
            "a {} ms frame has {window_size} samples, fewer than 2",
            config.frame_length_ms
        ));
    }
    if window_shift == 0 {
        return invalid(format!(
            "a {} ms shift is less than one sample",
            config.frame_shift_ms
        ));
    }
    if !(0.0..=1.0).contains(&config.preemphasis_coefficient) {
        return invalid(format!(
            "preemphasis_coefficient {} is outside [0, 1]",
            config.preemphasis_coefficient
        ));
    }
    if config.num_mel_bins <= 3 {
        return invalid(format!(
            "num_mel_bins {} must be at least 4",
            config.num_mel_bins
        ));
    }
    if config.num_ceps == 0 || config.num_ceps > config.num_mel_bins {
        return invalid(format!(
            "num_ceps {} must be in [1, num_mel_bins = {}]",
            config.num_ceps, config.num_mel_bins
        ));
    }
    if !(config.cepstral_lifter >= 0.0 && config.cepstral_lifter.is_finite()) {
        return invalid(format!(
            "cepstral_lifter {} must be non-negative",
            config.cepstral_lifter
        ));
    }
    if config.delta_win_length < 3 {
        return invalid(format!(
            "delta_win_length {} must be at least 3",
            config.delta_win_length
        ));
    }
    Ok(())
}

/// Kaldi's Povey window: the symmetric Hann window raised to the power 0.85.
fn povey_window(size: usize) -> Vec<f64> {
    let denominator = (size - 1) as f64;
    (0..size)
        .map(|n| {
            (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / denominator).cos()).powf(0.85)
        })
        .collect()
}

fn mel_scale(freq: f64) -> f64 {
    1127.0 * (1.0 + freq / 700.0).ln()
}

/// torchaudio's `get_mel_banks` without VTLN, with the zero Nyquist column `fbank` appends.
fn mel_banks(config: &MfccConfig, fft_len: usize) -> Result<Vec<Vec<f64>>, MfccError> {
    let nyquist = 0.5 * config.sample_frequency;
    let low_freq = config.low_freq;
    let high_freq = if config.high_freq <= 0.0 {
        config.high_freq + nyquist
    } else {
        config.high_freq
    };
    if !((0.0..nyquist).contains(&low_freq)
        && 0.0 < high_freq
        && high_freq <= nyquist
        && low_freq < high_freq)
    {
        return Err(MfccError::InvalidConfig(format!(
            "low_freq {low_freq} and high_freq {high_freq} must satisfy 0 <= low < high <= Nyquist {nyquist}"
        )));
    }
    let fft_bin_width = config.sample_frequency / fft_len as f64;
    let mel_low = mel_scale(low_freq);
    let mel_high = mel_scale(high_freq);
    // num_bins + 1 intervals: the outer filters' tails reach low_freq and high_freq.
    let mel_delta = (mel_high - mel_low) / (config.num_mel_bins + 1) as f64;
    let banks = (0..config.num_mel_bins)
        .map(|bin| {
            let left = mel_low + bin as f64 * mel_delta;
            let center = mel_low + (bin as f64 + 1.0) * mel_delta;
            let right = mel_low + (bin as f64 + 2.0) * mel_delta;
            let mut row: Vec<f64> = (0..fft_len / 2)
                .map(|k| {
                    let mel = mel_scale(fft_bin_width * k as f64);
                    let up = (mel - left) / (center - left);
                    let down = (right - mel) / (right - center);
                    up.min(down).max(0.0)
                })
                .collect();
            row.push(0.0);
            row
        })
        .collect();
    Ok(banks)
}

/// Orthonormal DCT-II with Kaldi's first column, `sqrt(1 / num_mel_bins)`, as `_get_dct_matrix`.
fn dct_matrix(num_ceps: usize, num_mel_bins: usize) -> Vec<Vec<f64>> {
    let n_mels = num_mel_bins as f64;
    (0..num_mel_bins)
        .map(|n| {
            (0..num_ceps)
                .map(|k| {
                    if k == 0 {
                        (1.0 / n_mels).sqrt()
                    } else {
                        (std::f64::consts::PI / n_mels * (n as f64 + 0.5) * k as f64).cos()
                            * (2.0 / n_mels).sqrt()
                    }
                })
                .collect()
        })
        .collect()
}

fn lifter_coefficients(num_ceps: usize, cepstral_lifter: f64) -> Vec<f64> {
    (0..num_ceps)
        .map(|i| {
            if cepstral_lifter == 0.0 {
                1.0
            } else {
                1.0 + 0.5
                    * cepstral_lifter
                    * (std::f64::consts::PI * i as f64 / cepstral_lifter).sin()
            }
        })
        .collect()
}

/// `[c, Δc, ΔΔc]` per frame, each delta as `torchaudio.functional.compute_deltas` with
/// `win_length` and `replicate` padding: `d_t = Σ_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 Σ n²)`,
/// `N = (win_length - 1) / 2`. The delta-deltas are taken from the `f32`-rounded deltas, as
/// torchaudio does.
pub fn with_deltas(cepstra: &Frames, win_length: usize) -> Frames {
    let first = deltas(cepstra, win_length);
    let second = deltas(&first, win_length);
    let dim = cepstra.dim();
    let mut data = Vec::with_capacity(3 * cepstra.as_slice().len());
    for ((c, d), dd) in cepstra.iter().zip(first.iter()).zip(second.iter()) {
        data.extend_from_slice(c);
        data.extend_from_slice(d);
        data.extend_from_slice(dd);
    }
    Frames { dim: 3 * dim, data }
}

/// One application of `compute_deltas` over time, per dimension (a `win_length` below
/// torchaudio's minimum of 3 counts as 3).
pub fn deltas(frames: &Frames, win_length: usize) -> Frames {
    let half = (win_length.max(3) - 1) / 2;
    let denominator = (half * (half + 1) * (2 * half + 1)) as f64 / 3.0;
    let num_frames = frames.num_frames();
    let dim = frames.dim();
    let mut data = vec![0.0f32; frames.as_slice().len()];
    if num_frames == 0 {
        return Frames { dim, data };
    }
    let last = num_frames - 1;
    for t in 0..num_frames {
        for d in 0..dim {
            let mut sum = 0.0f64;
            for n in 1..=half {
                let ahead = frames.frame((t + n).min(last))[d];
                let behind = frames.frame(t.saturating_sub(n))[d];
                sum += n as f64 * (f64::from(ahead) - f64::from(behind));
            }
            data[t * dim + d] = (sum / denominator) as f32;
        }
    }
    Frames { dim, data }
}

/// Per-utterance CMVN: each dimension minus its mean over the frames, divided by its
/// population standard deviation (divisor `n`, not `n - 1`). A dimension that is exactly
/// constant over the utterance (digital silence, a single frame) has no spread to divide by
/// and becomes all zeros.
pub fn normalize_per_utterance(frames: &mut Frames) {
    let num_frames = frames.num_frames();
    if num_frames == 0 {
        return;
    }
    let dim = frames.dim();
    for d in 0..dim {
        let column = || {
            frames
                .data
                .iter()
                .skip(d)
                .step_by(dim)
                .map(|&x| f64::from(x))
        };
        let mean = column().sum::<f64>() / num_frames as f64;
        let (min, max) = column().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        // Distinct f32 values always leave a positive f64 variance, so only a truly constant
        // column needs the guard; a threshold on the std would also flatten real dimensions.
        let scale = if min == max {
            0.0
        } else {
            let variance = column().map(|x| (x - mean).powi(2)).sum::<f64>() / num_frames as f64;
            1.0 / variance.sqrt()
        };
        for x in frames.data.iter_mut().skip(d).step_by(dim) {
            *x = ((f64::from(*x) - mean) * scale) as f32;
        }
    }
}

/// Power spectrum of a real signal through an iterative radix-2 complex FFT.
#[derive(Debug, Clone)]
struct RealFft {
    len: usize,
    /// `exp(-2 pi i k / len)` for `k < len / 2`.
    twiddles: Vec<(f64, f64)>,
    bit_reversed: Vec<usize>,
}

impl RealFft {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two() && len >= 2);
        let bits = len.trailing_zeros();
        let twiddles = (0..len / 2)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI * k as f64 / len as f64;
                (angle.cos(), angle.sin())
            })
            .collect();
        let bit_reversed = (0..len)
            .map(|i| i.reverse_bits() >> (usize::BITS - bits))
            .collect();
        Self {
            len,
            twiddles,
            bit_reversed,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// `power[k] = |X_k|²` for `k in 0..=len/2`.
    fn power_spectrum(&self, signal: &[f64], power: &mut [f64]) {
        let mut re: Vec<f64> = self.bit_reversed.iter().map(|&i| signal[i]).collect();
        let mut im = vec![0.0f64; self.len];
        let mut half = 1;
        while half < self.len {
            let stride = self.len / (2 * half);
            for start in (0..self.len).step_by(2 * half) {
                for j in 0..half {
                    let (wr, wi) = self.twiddles[j * stride];
                    let (a, b) = (start + j, start + j + half);
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            half *= 2;
        }
        for (k, p) in power.iter_mut().enumerate() {
            *p = re[k] * re[k] + im[k] * im[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_power(signal: &[f64]) -> Vec<f64> {
        let n = signal.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, &x) in signal.iter().enumerate() {
                    let angle = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    re += x * angle.cos();
                    im += x * angle.sin();
                }
                re * re + im * im
            })
            .collect()
    }

    #[test]
    fn fft_power_matches_a_naive_dft() {
        let signal: Vec<f64> = (0..512)
            .map(|t| ((t * 37 % 101) as f64 / 50.0 - 1.0) * (t as f64 * 0.01).sin())
            .collect();
        let fft = RealFft::new(512);
        let mut power = vec![0.0; 257];
        fft.power_spectrum(&signal, &mut power);
        let expected = naive_power(&signal);
        for (k, (got, want)) in power.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= 1e-9 * (1.0 + want),
                "bin {k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn hubert_geometry_is_320_sample_steps_of_400_samples() {
        let config = MfccConfig::hubert();
        assert_eq!((config.window_size(), config.window_shift()), (400, 320));
        assert_eq!(config.num_frames(399), 0);
        assert_eq!(config.num_frames(400), 1);
        assert_eq!(config.num_frames(719), 1);
        assert_eq!(config.num_frames(720), 2);
        assert_eq!(config.num_frames(16000), (16000 - 400) / 320 + 1);
        assert_eq!(config.feature_dim(), 39);
    }

    #[test]
    fn frame_count_follows_snip_edges_and_short_input_is_an_error() {
        let extractor = MfccExtractor::new(MfccConfig::hubert()).unwrap();
        let samples: Vec<f32> = (0..16000).map(|t| (t as f32 * 0.05).sin() * 0.3).collect();
        let features = extractor.features(&samples).unwrap();
        assert_eq!(features.dim(), 39);
        assert_eq!(features.num_frames(), 49);
        assert_eq!(
            extractor.mfcc(&samples[..399]),
            Err(MfccError::TooShort {
                num_samples: 399,
                window_size: 400
            })
        );
        let mut bad = samples.clone();
        bad[7] = f32::NAN;
        assert!(matches!(
            extractor.mfcc(&bad),
            Err(MfccError::NonFiniteSample { index: 7, .. })
        ));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let cases = [
            MfccConfig {
                num_ceps: 24,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                num_mel_bins: 3,
                num_ceps: 3,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                frame_shift_ms: 0.01,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                preemphasis_coefficient: 1.5,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                low_freq: 9000.0,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                high_freq: -8000.0,
                ..MfccConfig::hubert()
            },
            MfccConfig {
                delta_win_length: 2,
                ..MfccConfig::hubert()
            },
        ];
        for config in cases {
            assert!(
                matches!(
                    MfccExtractor::new(config.clone()),
                    Err(MfccError::InvalidConfig(_))
                ),
                "{config:?} was accepted"
            );
        }
    }

    #[test]
    fn deltas_of_a_ramp_are_its_slope_away_from_the_edges() {
        let frames = Frames::new(2, (0..10).flat_map(|t| [t as f32 * 2.0, 5.0]).collect()).unwrap();
        let d = deltas(&frames, 5);
        for t in 2..8 {
            assert_eq!(d.frame(t), [2.0, 0.0]);
        }
        // Replicate padding: at t = 0 the window is [0, 0, 0, 2, 4] * 2 -> (1*2 + 2*4) / 10.
        assert!((d.frame(0)[0] - 1.0).abs() < 1e-6);
        assert!((d.frame(9)[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn per_utterance_normalisation_gives_zero_mean_unit_population_std() {
        let mut frames = Frames::new(
            3,
            (0..40)
                .flat_map(|t| [t as f32, (t % 3) as f32 * 0.5 - 7.0, 4.25])
                .collect(),
        )
        .unwrap();
        normalize_per_utterance(&mut frames);
        for d in 0..2 {
            let column: Vec<f64> = frames.iter().map(|f| f64::from(f[d])).collect();
            let mean = column.iter().sum::<f64>() / 40.0;
            let variance = column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 40.0;
            assert!(mean.abs() < 1e-6, "dim {d}: mean {mean}");
            assert!(
                (variance - 1.0).abs() < 1e-5,
                "dim {d}: population variance {variance}"
            );
        }
        assert!(
            frames.iter().all(|f| f[2] == 0.0),
            "a constant dimension becomes zeros, not NaN"
        );
    }

    #[test]
    fn digital_silence_gives_finite_features() {
        let extractor = MfccExtractor::new(MfccConfig::hubert()).unwrap();
        let features = extractor.features(&vec![0.0; 4000]).unwrap();
        assert!(features.as_slice().iter().all(|&x| x == 0.0));
        let mfcc = extractor.mfcc(&vec![0.0; 4000]).unwrap();
        // ln(f32::EPSILON) in every mel bin: C0 = sqrt(23) ln(eps), higher cepstra 0.
        assert!(
            (f64::from(mfcc.frame(0)[0]) - 23f64.sqrt() * f64::from(f32::EPSILON).ln()).abs()
                < 1e-4
        );
        assert!(mfcc.frame(0)[1..].iter().all(|c| c.abs() < 1e-4));
    }
}
