//! RawBoost against the numpy/scipy reference of `fixtures/rawboost/` (written by
//! `tools/fixtures/make_rawboost_fixtures.py` from SSL_Anti-spoofing's `RawBoost.py`), given the
//! same drawn parameters; then what the draws promise, with this crate's RNG.

use std::path::{Path, PathBuf};

use fadlora_audio::rawboost::{
    IsdParams, NotchBand, NotchParams, RawBoost, RawBoostMode, RawBoostParams, SsiParams,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rawboost")
}

struct Fixture {
    json: Value,
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Self {
        let dir = fixture_dir();
        let json = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
        )
        .unwrap();
        let bytes = std::fs::read(dir.join("reference.safetensors")).expect("safetensors");
        Fixture { json, bytes }
    }

    fn tensor_f64(&self, name: &str) -> Vec<f64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        match t.dtype() {
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            Dtype::I64 => t
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{name}: unexpected {other:?}"),
        }
    }

    fn notch(value: &Value) -> NotchParams {
        NotchParams {
            bands: value["bands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| NotchBand {
                    centre_hz: b[0].as_f64().unwrap(),
                    width_hz: b[1].as_f64().unwrap(),
                    taps: b[2].as_u64().unwrap() as usize,
                })
                .collect(),
            gain_db: value["gain_db"].as_f64().unwrap(),
        }
    }

    fn params(&self) -> RawBoostParams {
        let lnl = self.json["lnl"]
            .as_array()
            .unwrap()
            .iter()
            .map(Self::notch)
            .collect();
        let isd = IsdParams {
            percent: self.json["isd"]["beta"].as_f64().unwrap(),
            positions: self
                .tensor_f64("isd/positions")
                .into_iter()
                .map(|p| p as usize)
                .collect(),
            factors: self.tensor_f64("isd/factors"),
        };
        let ssi = SsiParams {
            noise: self.tensor_f64("ssi/noise"),
            filter: Self::notch(&self.json["ssi"]["notch"]),
            snr_db: self.json["ssi"]["snr_db"].as_f64().unwrap(),
        };
        RawBoostParams {
            lnl: Some(lnl),
            isd: Some(isd),
            ssi: Some(ssi),
        }
    }
}

/// Largest |a - b| over the largest |b|.
fn relative_gap(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gap = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    gap / scale
}

#[test]
fn notch_cascades_match_scipy_firwin_and_freqz() {
    let fx = Fixture::load();
    let params = fx.params();
    let mut worst = 0.0f64;
    for (i, notch) in params.lnl.as_ref().unwrap().iter().enumerate() {
        let ours = notch.coefficients();
        let reference = fx.tensor_f64(&format!("lnl/b{i}"));
        worst = worst.max(relative_gap(&ours, &reference));
    }
    let ssi = &params.ssi.as_ref().unwrap().filter;
    worst = worst.max(relative_gap(&ssi.coefficients(), &fx.tensor_f64("ssi/b")));
    eprintln!("notch coefficients: largest gap {worst:.2e} of the largest coefficient");
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn every_mode_matches_the_reference_given_its_draws() {
    let fx = Fixture::load();
    let params = fx.params();
    let signal: Vec<f32> = fx
        .tensor_f64("signal")
        .into_iter()
        .map(|v| v as f32)
        .collect();
    assert_eq!(signal.len(), fx.json["samples"].as_u64().unwrap() as usize);
    for mode in RawBoostMode::ALL {
        let ours: Vec<f64> = RawBoost::new(mode)
            .apply(&signal, &params)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let reference = fx.tensor_f64(&format!("mode{}", mode.number()));
        let gap = relative_gap(&ours, &reference);
        eprintln!("mode {}: largest gap {gap:.2e} of the peak", mode.number());
        assert!(gap < 1e-5, "mode {}: {gap:e}", mode.number());
        // The comparison can fail: the output is not the input.
        let input: Vec<f64> = signal.iter().map(|&v| f64::from(v)).collect();
        assert!(relative_gap(&input, &reference) > 1e-3);
    }
}

/// A deterministic signal with no zero sample: sum of tones around 0.3.
fn tones(len: usize, peak: f64) -> Vec<f32> {
    (0..len)
        .map(|n| {
            let t = n as f64 / 16_000.0;
            let v = (std::f64::consts::TAU * 440.0 * t).sin() * 0.5
                + (std::f64::consts::TAU * 1_733.0 * t).sin() * 0.3
                + 0.2 * (std::f64::consts::TAU * 97.0 * t).cos();
            (peak * (0.7 + 0.3 * v)) as f32
        })
        .collect()
}

fn l2(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[test]
fn ssi_adds_noise_at_an_snr_in_the_drawn_range() {
    let x = tones(4000, 0.5);
    let xf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let rb = RawBoost::new(RawBoostMode::Ssi);
    let mut rng = StdRng::seed_from_u64(11);
    let mut snrs = Vec::new();
    for _ in 0..60 {
        let y = rb.augment(&x, &mut rng);
        let noise: Vec<f64> = y.iter().zip(&xf).map(|(&a, b)| f64::from(a) - b).collect();
        let snr = 20.0 * (l2(&xf) / l2(&noise)).log10();
        // f32 output rounding moves the measured SNR by far less than 0.01 dB.
        assert!((9.99..=40.01).contains(&snr), "SNR {snr}");
        snrs.push(snr);
    }
    let mean = snrs.iter().sum::<f64>() / snrs.len() as f64;
    // U(10, 40): mean 25, sd of a 60-draw mean 8.66 / sqrt(60) = 1.1.
    assert!((21.0..29.0).contains(&mean), "mean SNR {mean}");
    assert!(snrs.iter().any(|&s| s < 16.0) && snrs.iter().any(|&s| s > 34.0));
}

#[test]
fn isd_changes_a_drawn_share_of_at_most_p_percent_of_the_samples() {
    // Quiet enough that |x (1 + 2 f)| < 1: no renormalisation, so untouched samples stay equal.
    let x = tones(5000, 0.2);
    let rb = RawBoost::new(RawBoostMode::Isd);
    let mut rng = StdRng::seed_from_u64(12);
    let mut shares = Vec::new();
    for _ in 0..200 {
        let params = rb.draw(&mut rng, x.len());
        let isd = params.isd.as_ref().unwrap();
        let y = rb.apply(&x, &params).unwrap();
        let changed = y.iter().zip(&x).filter(|(a, b)| a != b).count();
        // A factor can be (almost) 0, leaving its sample unchanged in f32.
        assert!(changed <= isd.positions.len());
        assert!(
            changed + 2 >= isd.positions.len(),
            "{changed} of {}",
            isd.positions.len()
        );
        let share = 100.0 * isd.positions.len() as f64 / x.len() as f64;
        assert!(share < 10.0, "{share}%");
        shares.push(share);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    // beta ~ U(0, 10) %: mean 5, sd of a 200-draw mean 2.89 / sqrt(200) = 0.2.
    assert!((4.2..5.8).contains(&mean), "mean share {mean}%");
    assert!(shares.iter().any(|&s| s < 1.0) && shares.iter().any(|&s| s > 9.0));
}

/// |H(f)| of FIR `b` at `f` Hz (16 kHz).
fn response(b: &[f64], f: f64) -> f64 {
    let w = std::f64::consts::TAU * f / 16_000.0;
    let (re, im) = b.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, &c)| {
        (re + c * (w * n as f64).cos(), im - c * (w * n as f64).sin())
    });
    f64::hypot(re, im)
}

#[test]
fn lnl_filters_stop_their_drawn_bands_and_pass_frequencies_far_from_them() {
    // firwin's default pass_zero=True: every RawBoost band is a stop band. A Hamming design
    // of `taps` taps blurs edges over about 2 * 16000 / taps Hz on each side, so only bands
    // wider than that can be deep and only frequencies clear of it are surely passed.
    let rb = RawBoost::new(RawBoostMode::Lnl);
    let mut rng = StdRng::seed_from_u64(13);
    let (mut stopped, mut passed) = (0, 0);
    for _ in 0..60 {
        let filters = rb.draw(&mut rng, 0).lnl.unwrap();
        for (i, notch) in filters.iter().enumerate() {
            let b = notch.coefficients();
            let peak = 10f64.powf(notch.gain_db / 20.0);
            if i == 0 {
                assert_eq!(notch.gain_db, 0.0);
            } else {
                assert!((-20.0..=-5.0).contains(&notch.gain_db));
            }
            for band in &notch.bands {
                let (lo, hi) = (
                    band.centre_hz - band.width_hz / 2.0,
                    band.centre_hz + band.width_hz / 2.0,
                );
                if band.width_hz * band.taps as f64 >= 3.0 * 16_000.0 && lo > 0.0 && hi < 8_000.0 {
                    let depth = response(&b, band.centre_hz) / peak;
                    assert!(depth < 0.05, "band {band:?}: {depth} of the peak");
                    stopped += 1;
                }
            }
            for k in 0..=160 {
                let f = 50.0 * k as f64;
                let clear = notch.bands.iter().all(|band| {
                    (f - band.centre_hz).abs()
                        > band.width_hz / 2.0 + 4.0 * 16_000.0 / band.taps as f64
                });
                if clear {
                    let gain = response(&b, f) / peak;
                    assert!((0.95..1.01).contains(&gain), "{f} Hz: {gain} of the peak");
                    passed += 1;
                }
            }
        }
    }
    // The checks above ran on enough bands and frequencies to mean something.
    assert!(
        stopped >= 50 && passed >= 2000,
        "{stopped} bands, {passed} frequencies"
    );
}

#[test]
fn augmentation_is_reproducible_per_seed_and_changes_the_signal() {
    let x = tones(3000, 0.5);
    for mode in RawBoostMode::ALL {
        let rb = RawBoost::new(mode);
        let a = rb.augment(&x, &mut StdRng::seed_from_u64(1));
        let b = rb.augment(&x, &mut StdRng::seed_from_u64(1));
        let c = rb.augment(&x, &mut StdRng::seed_from_u64(2));
        assert_eq!(a, b, "mode {}", mode.number());
        assert_ne!(a, c, "mode {}", mode.number());
        assert_ne!(a, x, "mode {}", mode.number());
        assert_eq!(a.len(), x.len());
        assert!(a.iter().all(|v| v.is_finite()));
    }
}
