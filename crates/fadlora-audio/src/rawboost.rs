//! RawBoost data augmentation (Tak et al., ICASSP 2022, "RawBoost: A Raw Data Boosting and
//! Augmentation Method applied to Automatic Speaker Verification Anti-Spoofing") as
//! SSL_Anti-spoofing applies it to training waveforms (`RawBoost.py`,
//! `process_Rawboost_feature`), with the defaults of its `main_SSL_LA.py`.
//!
//! Three distortions and their eight combinations ([`RawBoostMode`]):
//!
//! - **LnL**, linear and non-linear convolutive noise: the sum over `i = 1..=n_f` of `x^i`
//!   filtered by a random notch cascade, the linear term at `min_g..max_g` dB and the higher
//!   powers `min_bias..max_bias` dB below; mean removed, divided by its peak when above 1.
//! - **ISD**, impulsive signal-dependent noise: up to `p` % of the samples (the share is drawn
//!   uniformly in `[0, p)`) become `x + g_sd x f` with `f` a product of two uniforms on
//!   `[-1, 1)`; divided by the peak when above 1.
//! - **SSI**, stationary signal-independent noise: Gaussian noise through a random notch
//!   cascade, added at an SNR drawn uniformly in `[snr_min, snr_max)` dB; not renormalised.
//!
//! A notch cascade is `n_bands` Hamming-windowed-sinc FIR designs as `scipy.signal.firwin`
//! makes them with two cut-offs and its default `pass_zero=True`: each stops a random band
//! (centre, width, odd tap count) and passes the rest. The cascade is scaled so the peak of
//! its response on a 512-point grid of `[0, fs/2)` (`scipy.signal.freqz`) is the drawn gain.
//!
//! The random draws ([`RawBoost::draw`]) are separate from the processing
//! ([`RawBoost::apply`]), so the processing can be checked against a reference given the same
//! parameters, and a seeded RNG makes the augmentation reproducible. Everything is computed in
//! `f64`, as numpy does.

use rand::seq::index;
use rand::Rng;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

/// The sample rate RawBoost's frequencies refer to.
const SAMPLE_RATE_HZ: f64 = 16_000.0;

/// `scipy.signal.freqz`'s default number of frequencies.
const FREQZ_POINTS: usize = 512;

/// The ranges RawBoost draws from. [`Default`] gives SSL_Anti-spoofing's `main_SSL_LA.py`
/// defaults; frequencies are in Hz at 16 kHz, gains and SNRs in dB.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBoostConfig {
    /// Notch filters per cascade (`nBands`).
    pub n_bands: usize,
    /// Range of a notch's centre frequency (`minF`, `maxF`).
    pub min_f: f64,
    pub max_f: f64,
    /// Range of a notch's width (`minBW`, `maxBW`).
    pub min_bw: f64,
    pub max_bw: f64,
    /// Range of a notch's tap count (`minCoeff`, `maxCoeff`); the draw is truncated to an
    /// integer and made odd.
    pub min_coeff: usize,
    pub max_coeff: usize,
    /// Gain range of the linear LnL term and of the SSI noise filter (`minG`, `maxG`).
    pub min_g: f64,
    pub max_g: f64,
    /// How much lower the non-linear LnL terms' gain range lies (`minBiasLinNonLin`,
    /// `maxBiasLinNonLin`).
    pub min_bias_lin_non_lin: f64,
    pub max_bias_lin_non_lin: f64,
    /// Highest power of the signal LnL filters (`N_f`); 1 keeps only the linear term.
    pub n_f: usize,
    /// Largest share of samples ISD changes, in percent (`P`).
    pub p: f64,
    /// ISD's gain (`g_sd`).
    pub g_sd: f64,
    /// SNR range of the SSI noise (`SNRmin`, `SNRmax`).
    pub snr_min: f64,
    pub snr_max: f64,
}

impl Default for RawBoostConfig {
    fn default() -> Self {
        RawBoostConfig {
            n_bands: 5,
            min_f: 20.0,
            max_f: 8000.0,
            min_bw: 100.0,
            max_bw: 1000.0,
            min_coeff: 10,
            max_coeff: 100,
            min_g: 0.0,
            max_g: 0.0,
            min_bias_lin_non_lin: 5.0,
            max_bias_lin_non_lin: 20.0,
            n_f: 5,
            p: 10.0,
            g_sd: 2.0,
            snr_min: 10.0,
            snr_max: 40.0,
        }
    }
}

/// The `algo` numbers of SSL_Anti-spoofing's `process_Rawboost_feature` (0, no augmentation,
/// is the absence of RawBoost here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawBoostMode {
    /// 1: LnL.
    Lnl,
    /// 2: ISD.
    Isd,
    /// 3: SSI.
    Ssi,
    /// 4: LnL, then ISD, then SSI.
    LnlIsdSsi,
    /// 5: LnL, then ISD (SSL_Anti-spoofing's default for ASVspoof 2019 LA training).
    LnlIsd,
    /// 6: LnL, then SSI.
    LnlSsi,
    /// 7: ISD, then SSI.
    IsdSsi,
    /// 8: LnL and ISD of the same input, summed and divided by the peak when above 1.
    LnlPlusIsd,
}

impl RawBoostMode {
    pub const ALL: [RawBoostMode; 8] = [
        RawBoostMode::Lnl,
        RawBoostMode::Isd,
        RawBoostMode::Ssi,
        RawBoostMode::LnlIsdSsi,
        RawBoostMode::LnlIsd,
        RawBoostMode::LnlSsi,
        RawBoostMode::IsdSsi,
        RawBoostMode::LnlPlusIsd,
    ];

    /// The mode SSL_Anti-spoofing's `--algo` number `n` selects; `None` outside 1..=8.
    pub fn from_number(n: u32) -> Option<Self> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        Self::ALL.get(i).copied()
    }

    /// SSL_Anti-spoofing's `--algo` number of this mode.
    pub fn number(self) -> u32 {
        Self::ALL.iter().position(|&m| m == self).expect("listed") as u32 + 1
    }

    /// Which of (LnL, ISD, SSI) the mode applies.
    fn uses(self) -> (bool, bool, bool) {
        match self {
            RawBoostMode::Lnl => (true, false, false),
            RawBoostMode::Isd => (false, true, false),
            RawBoostMode::Ssi => (false, false, true),
            RawBoostMode::LnlIsdSsi => (true, true, true),
            RawBoostMode::LnlIsd | RawBoostMode::LnlPlusIsd => (true, true, false),
            RawBoostMode::LnlSsi => (true, false, true),
            RawBoostMode::IsdSsi => (false, true, true),
        }
    }
}

/// One stop band of a notch cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct NotchBand {
    pub centre_hz: f64,
    pub width_hz: f64,
    /// Odd, so the band-stop design passes the Nyquist frequency.
    pub taps: usize,
}

/// A drawn notch cascade: its bands and the peak gain of its response.
#[derive(Debug, Clone, PartialEq)]
pub struct NotchParams {
    pub bands: Vec<NotchBand>,
    pub gain_db: f64,
}

impl NotchParams {
    /// The cascade's FIR coefficients at 16 kHz (`genNotchCoeffs`): the bands' band-stop
    /// designs convolved, scaled so the peak of the response on `freqz`'s 512-point grid is
    /// `10^(gain_db / 20)`.
    pub fn coefficients(&self) -> Vec<f64> {
        let fs = SAMPLE_RATE_HZ;
        let mut b = vec![1.0];
        for band in &self.bands {
            // The reference clamps edges into (0, fs/2) rather than rejecting the draw.
            let mut f1 = band.centre_hz - band.width_hz / 2.0;
            let mut f2 = band.centre_hz + band.width_hz / 2.0;
            if f1 <= 0.0 {
                f1 = 1e-3;
            }
            if f2 >= fs / 2.0 {
                f2 = fs / 2.0 - 1e-3;
            }
            b = convolve(&firwin_band_stop(band.taps, f1, f2, fs), &b);
        }
        let peak = freqz_peak(&b);
        let scale = 10f64.powf(self.gain_db / 20.0);
        if peak > 0.0 && peak.is_finite() {
            b.iter_mut().for_each(|c| *c = scale * *c / peak);
        }
        b
    }
}

/// ISD's draw: the positions it changes and the factor of each.
#[derive(Debug, Clone, PartialEq)]
pub struct IsdParams {
    /// The drawn share in percent, in `[0, p)`; `positions` has `floor(len * percent / 100)`
    /// entries.
    pub percent: f64,
    pub positions: Vec<usize>,
    pub factors: Vec<f64>,
}

/// SSI's draw: white noise as long as the signal, its filter and the SNR.
#[derive(Debug, Clone, PartialEq)]
pub struct SsiParams {
    pub noise: Vec<f64>,
    pub filter: NotchParams,
    pub snr_db: f64,
}

/// Everything a mode draws; the algorithms it does not use are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBoostParams {
    /// One cascade per power of the signal, the linear term first.
    pub lnl: Option<Vec<NotchParams>>,
    pub isd: Option<IsdParams>,
    pub ssi: Option<SsiParams>,
}

/// Parameters that do not fit the mode or the signal given to [`RawBoost::apply`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RawBoostError {
    #[error("RawBoost mode {mode} needs {algorithm} parameters")]
    Missing { mode: u32, algorithm: &'static str },
    #[error("RawBoost {what} was drawn for {expected} samples, the signal has {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

/// A RawBoost mode with its ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBoost {
    pub mode: RawBoostMode,
    pub config: RawBoostConfig,
}

impl RawBoost {
    /// The mode with SSL_Anti-spoofing's default ranges.
    pub fn new(mode: RawBoostMode) -> Self {
        RawBoost {
            mode,
            config: RawBoostConfig::default(),
        }
    }

    /// Draws what the mode needs for a signal of `len` samples, in the reference's order
    /// (LnL, ISD, SSI).
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, len: usize) -> RawBoostParams {
        let c = &self.config;
        let (lnl, isd, ssi) = self.mode.uses();
        RawBoostParams {
            lnl: lnl.then(|| {
                (0..c.n_f)
                    .map(|i| {
                        let (lo, hi) = if i == 0 {
                            (c.min_g, c.max_g)
                        } else {
                            (
                                c.min_g - c.min_bias_lin_non_lin,
                                c.max_g - c.max_bias_lin_non_lin,
                            )
                        };
                        draw_notch(rng, c, lo, hi)
                    })
                    .collect()
            }),
            isd: isd.then(|| {
                let percent = uniform(rng, 0.0, c.p);
                let count = ((len as f64 * (percent / 100.0)) as usize).min(len);
                let positions = index::sample(rng, len, count).into_vec();
                let factors = (0..count)
                    .map(|_| uniform(rng, -1.0, 1.0) * uniform(rng, -1.0, 1.0))
                    .collect();
                IsdParams {
                    percent,
                    positions,
                    factors,
                }
            }),
            ssi: ssi.then(|| {
                let noise = (0..len).map(|_| standard_normal(rng)).collect();
                let filter = draw_notch(rng, c, c.min_g, c.max_g);
                let snr_db = uniform(rng, c.snr_min, c.snr_max);
                SsiParams {
                    noise,
                    filter,
                    snr_db,
                }
            }),
        }
    }

    /// The augmented signal for drawn `params`; the same length as `signal`.
    pub fn apply(
        &self,
        signal: &[f32],
        params: &RawBoostParams,
    ) -> Result<Vec<f32>, RawBoostError> {
        let missing = |algorithm| RawBoostError::Missing {
            mode: self.mode.number(),
            algorithm,
        };
        let (use_lnl, use_isd, use_ssi) = self.mode.uses();
        let lnl = |x: &[f64]| -> Result<Vec<f64>, RawBoostError> {
            Ok(lnl(x, params.lnl.as_ref().ok_or_else(|| missing("LnL"))?))
        };
        let isd = |x: &[f64]| -> Result<Vec<f64>, RawBoostError> {
            isd(
                x,
                params.isd.as_ref().ok_or_else(|| missing("ISD"))?,
                self.config.g_sd,
            )
        };
        let ssi = |x: &[f64]| -> Result<Vec<f64>, RawBoostError> {
            ssi(x, params.ssi.as_ref().ok_or_else(|| missing("SSI"))?)
        };
        let x: Vec<f64> = signal.iter().map(|&s| f64::from(s)).collect();
        let y = if self.mode == RawBoostMode::LnlPlusIsd {
            let mut sum = lnl(&x)?;
            for (s, v) in sum.iter_mut().zip(isd(&x)?) {
                *s += v;
            }
            normalise_above_one(&mut sum);
            sum
        } else {
            let mut y = x;
            if use_lnl {
                y = lnl(&y)?;
            }
            if use_isd {
                y = isd(&y)?;
            }
            if use_ssi {
                y = ssi(&y)?;
            }
            y
        };
        Ok(y.into_iter().map(|v| v as f32).collect())
    }

    /// [`RawBoost::draw`] then [`RawBoost::apply`]: the augmentation of one training waveform.
    pub fn augment<R: Rng + ?Sized>(&self, signal: &[f32], rng: &mut R) -> Vec<f32> {
        let params = self.draw(rng, signal.len());
        self.apply(signal, &params)
            .expect("parameters drawn for this mode and length always fit")
    }
}

/// numpy's `uniform(low, high)`: `low + (high - low) u`, also when `low > high` (LnL's
/// non-linear gain range is (-5, -20) with the defaults).
fn uniform<R: Rng + ?Sized>(rng: &mut R, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.random::<f64>()
}

/// Box-Muller: one N(0, 1) draw without another dependency.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn draw_notch<R: Rng + ?Sized>(
    rng: &mut R,
    c: &RawBoostConfig,
    min_g: f64,
    max_g: f64,
) -> NotchParams {
    let bands = (0..c.n_bands)
        .map(|_| {
            let centre_hz = uniform(rng, c.min_f, c.max_f);
            let width_hz = uniform(rng, c.min_bw, c.max_bw);
            // `int(...)` truncates toward zero; an even count is made odd.
            let taps = uniform(rng, c.min_coeff as f64, c.max_coeff as f64).max(0.0) as usize;
            NotchBand {
                centre_hz,
                width_hz,
                taps: taps | 1,
            }
        })
        .collect();
    NotchParams {
        bands,
        gain_db: uniform(rng, min_g, max_g),
    }
}

/// `scipy.signal.firwin(taps, [f1, f2], window="hamming", fs=fs)`: with its default
/// `pass_zero=True` the bands are `[0, f1]` and `[f2, fs/2]`, scaled to unit gain at DC.
fn firwin_band_stop(taps: usize, f1: f64, f2: f64, fs: f64) -> Vec<f64> {
    let nyquist = fs / 2.0;
    let (c1, c2) = (f1 / nyquist, f2 / nyquist);
    let alpha = 0.5 * (taps as f64 - 1.0);
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let m = n as f64 - alpha;
            c1 * sinc(c1 * m) + sinc(m) - c2 * sinc(c2 * m)
        })
        .collect();
    for (n, v) in h.iter_mut().enumerate() {
        *v *= hamming(n, taps);
    }
    let dc: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= dc);
    h
}

/// numpy's normalised sinc.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = std::f64::consts::PI * x;
        y.sin() / y
    }
}

/// The symmetric Hamming window (`get_window("hamming", taps, fftbins=False)`).
fn hamming(n: usize, taps: usize) -> f64 {
    if taps == 1 {
        return 1.0;
    }
    0.54 - 0.46 * (std::f64::consts::TAU * n as f64 / (taps - 1) as f64).cos()
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        for (j, &y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// The largest `|H(w)|` of FIR `b` over `freqz`'s grid `w = pi k / 512`, `k = 0..512`.
fn freqz_peak(b: &[f64]) -> f64 {
    // e^{-i pi k n / 512} depends only on k n mod 1024: one table instead of a sine per term.
    let period = 2 * FREQZ_POINTS;
    let table: Vec<(f64, f64)> = (0..period)
        .map(|j| {
            let w = std::f64::consts::TAU * j as f64 / period as f64;
            (w.cos(), w.sin())
        })
        .collect();
    (0..FREQZ_POINTS)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &c) in b.iter().enumerate() {
                let (cos, sin) = table[(k * n) % period];
                re += c * cos;
                im -= c * sin;
            }
            re.hypot(im)
        })
        .fold(0.0, f64::max)
}

/// `filterFIR`: `b` applied to `x` followed by zeros, keeping `x.len()` samples from
/// `(len(b) + 1) / 2` on, which is how the reference compensates the filter's delay.
fn filter_fir(x: &[f64], b: &[f64]) -> Vec<f64> {
    let shift = b.len().div_ceil(2);
    let full = fft_convolve(x, b);
    (0..x.len())
        .map(|k| full.get(k + shift).copied().unwrap_or(0.0))
        .collect()
}

/// The full linear convolution of `x` and `b` (length `x.len() + b.len() - 1`) through one real
/// FFT: with a direct loop, mode 5 on 4 s of audio took ~0.2 s (LnL's five cascades have up to
/// ~500 taps each), with FFTs ~0.06 s.
fn fft_convolve(x: &[f64], b: &[f64]) -> Vec<f64> {
    if x.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let len = x.len() + b.len() - 1;
    let n = len.next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum = |v: &[f64]| {
        let mut input = forward.make_input_vec();
        input[..v.len()].copy_from_slice(v);
        let mut out = forward.make_output_vec();
        forward
            .process(&mut input, &mut out)
            .expect("buffers made by the plan");
        out
    };
    let mut product: Vec<Complex<f64>> = spectrum(x)
        .iter()
        .zip(spectrum(b))
        .map(|(p, q)| p * q)
        .collect();
    // The product of two real signals' spectra is real at DC and Nyquist up to rounding;
    // the inverse transform wants those exactly real.
    let last = product.len() - 1;
    product[0].im = 0.0;
    product[last].im = 0.0;
    let mut out = inverse.make_output_vec();
    inverse
        .process(&mut product, &mut out)
        .expect("buffers made by the plan");
    out.truncate(len);
    out.iter_mut().for_each(|v| *v /= n as f64);
    out
}

/// `normWav(y, 0)`: divide by the peak only when it exceeds 1.
fn normalise_above_one(y: &mut [f64]) {
    let peak = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if peak > 1.0 {
        y.iter_mut().for_each(|v| *v /= peak);
    }
}

fn lnl(x: &[f64], filters: &[NotchParams]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (i, filter) in filters.iter().enumerate() {
        let power: Vec<f64> = x.iter().map(|v| v.powi(i as i32 + 1)).collect();
        for (acc, v) in y.iter_mut().zip(filter_fir(&power, &filter.coefficients())) {
            *acc += v;
        }
    }
    if !y.is_empty() {
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        y.iter_mut().for_each(|v| *v -= mean);
    }
    normalise_above_one(&mut y);
    y
}

fn isd(x: &[f64], p: &IsdParams, g_sd: f64) -> Result<Vec<f64>, RawBoostError> {
    if let Some(&bad) = p.positions.iter().find(|&&i| i >= x.len()) {
        return Err(RawBoostError::Length {
            what: "ISD's positions",
            expected: bad + 1,
            got: x.len(),
        });
    }
    if p.factors.len() != p.positions.len() {
        return Err(RawBoostError::Length {
            what: "ISD's factors",
            expected: p.positions.len(),
            got: p.factors.len(),
        });
    }
    let mut y = x.to_vec();
    for (&i, &f) in p.positions.iter().zip(&p.factors) {
        y[i] = x[i] + g_sd * x[i] * f;
    }
    normalise_above_one(&mut y);
    Ok(y)
}

fn ssi(x: &[f64], p: &SsiParams) -> Result<Vec<f64>, RawBoostError> {
    if p.noise.len() != x.len() {
        return Err(RawBoostError::Length {
            what: "SSI's noise",
            expected: p.noise.len(),
            got: x.len(),
        });
    }
    let mut noise = filter_fir(&p.noise, &p.filter.coefficients());
    let peak = noise.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // A silent filtered noise would divide 0 by 0: nothing is added then.
    if !(peak > 0.0 && peak.is_finite()) {
        return Ok(x.to_vec());
    }
    noise.iter_mut().for_each(|v| *v /= peak);
    let noise_norm = l2(&noise);
    let signal_norm = l2(x);
    let snr = 10f64.powf(0.05 * p.snr_db);
    Ok(x.iter()
        .zip(&noise)
        .map(|(s, n)| s + n / noise_norm * signal_norm / snr)
        .collect())
}

fn l2(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn mode_numbers_round_trip_and_zero_is_not_a_mode() {
        for (i, mode) in RawBoostMode::ALL.iter().enumerate() {
            assert_eq!(mode.number(), i as u32 + 1);
            assert_eq!(RawBoostMode::from_number(mode.number()), Some(*mode));
        }
        assert_eq!(RawBoostMode::from_number(0), None);
        assert_eq!(RawBoostMode::from_number(9), None);
    }

    #[test]
    fn filter_fir_with_a_unit_impulse_filter_shifts_as_the_reference() {
        // b = [0, 1, 0]: delay 1; the reference keeps from (3 + 1) / 2 = 2 on, so the output
        // is the input advanced by one sample.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = filter_fir(&x, &[0.0, 1.0, 0.0]);
        for (a, b) in y.iter().zip([2.0, 3.0, 4.0, 0.0]) {
            assert!((a - b).abs() < 1e-12, "{y:?}");
        }
    }

    #[test]
    fn fft_convolution_matches_the_direct_sum() {
        let mut rng = StdRng::seed_from_u64(9);
        for (n, l) in [(1, 1), (7, 3), (300, 99), (1000, 491), (513, 512)] {
            let x: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
            let b: Vec<f64> = (0..l).map(|_| standard_normal(&mut rng)).collect();
            let mut direct = vec![0.0; n + l - 1];
            for (i, xi) in x.iter().enumerate() {
                for (j, bj) in b.iter().enumerate() {
                    direct[i + j] += xi * bj;
                }
            }
            let fft = fft_convolve(&x, &b);
            assert_eq!(fft.len(), direct.len());
            let scale = direct.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (a, d) in fft.iter().zip(&direct) {
                assert!((a - d).abs() <= 1e-12 * scale, "{n}x{l}: {a} vs {d}");
            }
        }
    }

    #[test]
    fn draws_are_reproducible_and_only_what_the_mode_needs() {
        let rb = RawBoost::new(RawBoostMode::LnlIsd);
        let a = rb.draw(&mut StdRng::seed_from_u64(3), 1000);
        let b = rb.draw(&mut StdRng::seed_from_u64(3), 1000);
        assert_eq!(a, b);
        assert!(a.lnl.is_some() && a.isd.is_some() && a.ssi.is_none());
        let lnl = a.lnl.unwrap();
        assert_eq!(lnl.len(), 5);
        assert_eq!(lnl[0].gain_db, 0.0);
        for f in &lnl[1..] {
            assert!((-20.0..=-5.0).contains(&f.gain_db), "{}", f.gain_db);
        }
        for band in lnl.iter().flat_map(|f| &f.bands) {
            assert!(band.taps % 2 == 1 && (11..=99).contains(&band.taps));
        }
    }

    #[test]
    fn missing_or_misfit_parameters_are_errors() {
        let x = vec![0.1f32; 100];
        let params = RawBoost::new(RawBoostMode::Isd).draw(&mut StdRng::seed_from_u64(1), 100);
        let err = RawBoost::new(RawBoostMode::Ssi)
            .apply(&x, &params)
            .unwrap_err();
        assert!(
            matches!(err, RawBoostError::Missing { mode: 3, .. }),
            "{err}"
        );
        let ssi = RawBoost::new(RawBoostMode::Ssi);
        let params = ssi.draw(&mut StdRng::seed_from_u64(1), 50);
        assert!(matches!(
            ssi.apply(&x, &params),
            Err(RawBoostError::Length { .. })
        ));
    }

    #[test]
    fn empty_and_silent_signals_stay_finite() {
        for mode in RawBoostMode::ALL {
            let rb = RawBoost::new(mode);
            let mut rng = StdRng::seed_from_u64(5);
            assert!(rb.augment(&[], &mut rng).is_empty());
            let y = rb.augment(&[0.0; 300], &mut rng);
            assert!(y.iter().all(|v| *v == 0.0), "mode {}", mode.number());
        }
    }
}
