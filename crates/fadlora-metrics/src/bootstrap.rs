//! Bootstrap confidence intervals for the EER, and the paired bootstrap of the EER difference
//! of two systems scored on the same trials.
//!
//! A replicate resamples the bona fide and the spoof trials separately, with replacement, each
//! to its own size: the class sizes of a corpus are fixed by design, and resampling them
//! jointly could leave a replicate without a class. The interval is the percentile interval of
//! the replicates (numpy's default `linear` percentile). Every replicate's EER is exactly what
//! [`crate::eer`] gives on the resampled score arrays.
//!
//! The indices come from [`Resampler`], SplitMix64 seeded with a fixed number, so a record's
//! interval can be reproduced bit for bit without depending on any random-number crate's
//! stream, which may change between versions. Functions taking [`Resample`]s accept indices
//! from anywhere (the tests feed numpy's).

use serde::{Deserialize, Serialize};

use crate::{check_scores, MetricError};

/// Resamples per interval unless told otherwise.
pub const DEFAULT_RESAMPLES: usize = 1000;
/// The seed every interval in a run record is drawn with: fixed, so an interval depends on
/// the scores alone.
pub const DEFAULT_SEED: u64 = 20_190_101;
/// Coverage of the intervals.
pub const DEFAULT_LEVEL: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    pub seed: u64,
    /// Coverage in (0, 1), e.g. 0.95.
    pub level: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
            level: DEFAULT_LEVEL,
        }
    }
}

/// A percentile interval, in the unit of what was resampled (EER fractions here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// One bootstrap replicate: indices into the bona fide and the spoof scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resample {
    pub bonafide: Vec<usize>,
    pub spoof: Vec<usize>,
}

/// SplitMix64 (Steele, Lea and Flood 2014), the generator of every resample fadlora draws.
#[derive(Debug, Clone)]
pub struct Resampler {
    state: u64,
}

impl Resampler {
    pub fn new(seed: u64) -> Self {
        Resampler { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }

    /// `n` indices drawn from `0..n` with replacement.
    pub fn indices(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.below(n)).collect()
    }

    /// A replicate of `n_bonafide` bona fide and `n_spoof` spoof trials.
    pub fn resample(&mut self, n_bonafide: usize, n_spoof: usize) -> Resample {
        Resample {
            bonafide: self.indices(n_bonafide),
            spoof: self.indices(n_spoof),
        }
    }
}

/// The trials of one system in the order the EER walks them: by score, bona fide first among
/// equal scores (as [`crate::det_curve`] sorts). A replicate then only needs a count per trial
/// and one pass, instead of a sort per replicate.
struct Ranked {
    /// `(is_bonafide, index within its class)`, ascending score.
    order: Vec<(bool, usize)>,
}

impl Ranked {
    fn new(bonafide: &[f64], spoof: &[f64]) -> Ranked {
        let mut trials: Vec<(f64, bool, usize)> = bonafide
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, true, i))
            .chain(spoof.iter().enumerate().map(|(i, &s)| (s, false, i)))
            .collect();
        trials.sort_by(|a, b| crate::score_order(a.0, b.0));
        Ranked {
            order: trials.into_iter().map(|(_, b, i)| (b, i)).collect(),
        }
    }

    /// The EER of the replicate that takes trial `i` of each class `counts[i]` times: the DET
    /// walk of [`crate::eer`], one step per copy. Copies of one trial are adjacent in the
    /// resampled and sorted array, and only the class sequence matters, so this is the EER of
    /// the resampled arrays exactly.
    fn eer(&self, bonafide_counts: &[u32], spoof_counts: &[u32]) -> f64 {
        let n_bonafide: usize = bonafide_counts.iter().map(|&c| c as usize).sum();
        let n_spoof: usize = spoof_counts.iter().map(|&c| c as usize).sum();
        let (mut best_gap, mut best_eer) = (1.0_f64, 0.5_f64);
        let (mut bonafide_below, mut spoof_below) = (0usize, 0usize);
        for &(is_bonafide, i) in &self.order {
            let copies = if is_bonafide {
                bonafide_counts[i]
            } else {
                spoof_counts[i]
            };
            for _ in 0..copies {
                if is_bonafide {
                    bonafide_below += 1;
                } else {
                    spoof_below += 1;
                }
                let frr = bonafide_below as f64 / n_bonafide as f64;
                let far = (n_spoof - spoof_below) as f64 / n_spoof as f64;
                let gap = (frr - far).abs();
                if gap < best_gap {
                    best_gap = gap;
                    best_eer = (frr + far) / 2.0;
                }
            }
        }
        best_eer
    }
}

fn counts(indices: &[usize], n: usize, class: &'static str) -> Result<Vec<u32>, MetricError> {
    if indices.len() != n {
        return Err(MetricError::BadResample(format!(
            "{} {class} indices for {n} {class} trials",
            indices.len()
        )));
    }
    let mut counts = vec![0u32; n];
    for &i in indices {
        *counts.get_mut(i).ok_or_else(|| {
            MetricError::BadResample(format!("{class} index {i} of {n} trials"))
        })? += 1;
    }
    Ok(counts)
}

/// The EER (a fraction) of every replicate.
pub fn eer_replicates(
    bonafide: &[f64],
    spoof: &[f64],
    resamples: impl IntoIterator<Item = Resample>,
) -> Result<Vec<f64>, MetricError> {
    check_scores(bonafide, spoof)?;
    let ranked = Ranked::new(bonafide, spoof);
    resamples
        .into_iter()
        .map(|r| {
            let b = counts(&r.bonafide, bonafide.len(), "bona fide")?;
            let s = counts(&r.spoof, spoof.len(), "spoof")?;
            Ok(ranked.eer(&b, &s))
        })
        .collect()
}

/// The EER difference `a - b` of every replicate, the same trial indices applied to both
/// systems: `a_bonafide[i]` and `b_bonafide[i]` must be one trial's scores (likewise spoof).
pub fn paired_difference_replicates(
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    resamples: impl IntoIterator<Item = Resample>,
) -> Result<Vec<f64>, MetricError> {
    check_scores(a.0, a.1)?;
    check_scores(b.0, b.1)?;
    if a.0.len() != b.0.len() || a.1.len() != b.1.len() {
        return Err(MetricError::UnpairedTrials {
            a: (a.0.len(), a.1.len()),
            b: (b.0.len(), b.1.len()),
        });
    }
    let (ranked_a, ranked_b) = (Ranked::new(a.0, a.1), Ranked::new(b.0, b.1));
    resamples
        .into_iter()
        .map(|r| {
            let bc = counts(&r.bonafide, a.0.len(), "bona fide")?;
            let sc = counts(&r.spoof, a.1.len(), "spoof")?;
            Ok(ranked_a.eer(&bc, &sc) - ranked_b.eer(&bc, &sc))
        })
        .collect()
}

/// numpy's default (`linear`) percentile of `values` at `q` in [0, 1], with numpy's own
/// two-sided interpolation so results agree to the last bit. `values` need not be sorted.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let virtual_index = (n - 1) as f64 * q;
    let below = (virtual_index.floor() as usize).min(n - 1);
    let above = (below + 1).min(n - 1);
    let t = virtual_index - below as f64;
    let (lo, hi) = (sorted[below], sorted[above]);
    let diff = hi - lo;
    // numpy's `_lerp`: from the upper end when t >= 0.5, for monotonicity.
    if t >= 0.5 {
        hi - diff * (1.0 - t)
    } else {
        lo + diff * t
    }
}

/// The central `level` percentile interval of `replicates`.
pub fn percentile_interval(replicates: &[f64], level: f64) -> Interval {
    let tail = (1.0 - level) / 2.0;
    Interval {
        low: percentile(replicates, tail),
        high: percentile(replicates, 1.0 - tail),
    }
}

fn check_options(options: &BootstrapOptions) -> Result<(), MetricError> {
    if options.resamples == 0 || !(options.level > 0.0 && options.level < 1.0) {
        return Err(MetricError::BadResample(format!(
            "{} resamples at level {}: need at least one and a level in (0, 1)",
            options.resamples, options.level
        )));
    }
    Ok(())
}

/// The bootstrap interval of the EER of `bonafide` against `spoof`, with replicates drawn by
/// [`Resampler`] from `options.seed`.
pub fn eer_interval(
    bonafide: &[f64],
    spoof: &[f64],
    options: &BootstrapOptions,
) -> Result<Interval, MetricError> {
    check_options(options)?;
    let mut rng = Resampler::new(options.seed);
    let (nb, ns) = (bonafide.len(), spoof.len());
    let replicates = eer_replicates(
        bonafide,
        spoof,
        (0..options.resamples).map(|_| rng.resample(nb, ns)),
    )?;
    Ok(percentile_interval(&replicates, options.level))
}

/// The percentile interval of the EER of several systems' scores pooled into one set (the
/// seeds of one configuration), resampling trials: each replicate draws the trials once and
/// takes every system's scores of them, since the systems score the same trials (`sets[k].0[i]`
/// is system k's score of bona fide trial i; likewise spoof). Seeds are not independent draws
/// of trials, so pooling them must not shrink the interval as if they were. With one set this is
/// [`eer_interval`] exactly.
pub fn pooled_eer_interval(
    sets: &[(&[f64], &[f64])],
    options: &BootstrapOptions,
) -> Result<Interval, MetricError> {
    check_options(options)?;
    let Some(&(first_bona, first_spoof)) = sets.first() else {
        return Err(MetricError::NoBonafide);
    };
    let (nb, ns) = (first_bona.len(), first_spoof.len());
    if let Some(&(b, s)) = sets.iter().find(|(b, s)| b.len() != nb || s.len() != ns) {
        return Err(MetricError::UnpairedTrials {
            a: (nb, ns),
            b: (b.len(), s.len()),
        });
    }
    let bonafide: Vec<f64> = sets.iter().flat_map(|(b, _)| b.iter().copied()).collect();
    let spoof: Vec<f64> = sets.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    check_scores(&bonafide, &spoof)?;
    let ranked = Ranked::new(&bonafide, &spoof);
    let mut rng = Resampler::new(options.seed);
    let replicates = (0..options.resamples)
        .map(|_| {
            let r = rng.resample(nb, ns);
            let b = counts(&r.bonafide, nb, "bona fide")?.repeat(sets.len());
            let s = counts(&r.spoof, ns, "spoof")?.repeat(sets.len());
            Ok(ranked.eer(&b, &s))
        })
        .collect::<Result<Vec<f64>, MetricError>>()?;
    Ok(percentile_interval(&replicates, options.level))
}

/// The paired bootstrap of the EER difference `a - b` on the same trials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// EER(a) - EER(b) on the trials themselves (fractions).
    pub difference: f64,
    pub interval: Interval,
    /// Share of replicates in which `a` has the lower EER (ties count half).
    pub a_better: f64,
}

/// [`PairedDifference`] of two systems' scores on the same, aligned trials.
pub fn paired_difference(
    a: (&[f64], &[f64]),
    b: (&[f64], &[f64]),
    options: &BootstrapOptions,
) -> Result<PairedDifference, MetricError> {
    check_options(options)?;
    let mut rng = Resampler::new(options.seed);
    let (nb, ns) = (a.0.len(), a.1.len());
    let replicates =
        paired_difference_replicates(a, b, (0..options.resamples).map(|_| rng.resample(nb, ns)))?;
    let difference = crate::eer(a.0, a.1)?.eer - crate::eer(b.0, b.1)?.eer;
    let better: f64 = replicates
        .iter()
        .map(|d| match d.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Less) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .sum();
    Ok(PairedDifference {
        difference,
        interval: percentile_interval(&replicates, options.level),
        a_better: better / replicates.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_published_first_outputs() {
        // The reference outputs of SplitMix64 from seed 1234567 (the generator's C reference).
        let mut rng = Resampler::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn indices_stay_in_range_and_repeat_with_the_seed() {
        let a = Resampler::new(7).indices(1000);
        assert!(a.iter().all(|&i| i < 1000));
        assert_eq!(a, Resampler::new(7).indices(1000));
        assert_ne!(a, Resampler::new(8).indices(1000));
        // With replacement: 1000 draws from 1000 leave about 1/e of the values out.
        let mut distinct = a.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!((550..720).contains(&distinct.len()), "{}", distinct.len());
    }

    #[test]
    fn the_identity_replicate_gives_the_eer_itself() {
        let bona = [0.2, 0.5, 1.0, 0.7, 0.7];
        let spoof = [0.1, 0.5, 0.9, 0.7, -1.0, 0.3];
        let identity = Resample {
            bonafide: (0..bona.len()).collect(),
            spoof: (0..spoof.len()).collect(),
        };
        let got = eer_replicates(&bona, &spoof, [identity]).unwrap();
        assert_eq!(got, vec![crate::eer(&bona, &spoof).unwrap().eer]);
    }

    #[test]
    fn replicates_equal_the_eer_of_the_resampled_arrays() {
        let mut rng = Resampler::new(3);
        let bona: Vec<f64> = (0..40).map(|_| (rng.below(20) as f64) / 4.0).collect();
        let spoof: Vec<f64> = (0..60)
            .map(|_| (rng.below(16) as f64) / 4.0 - 1.0)
            .collect();
        for _ in 0..50 {
            let r = rng.resample(bona.len(), spoof.len());
            let b: Vec<f64> = r.bonafide.iter().map(|&i| bona[i]).collect();
            let s: Vec<f64> = r.spoof.iter().map(|&i| spoof[i]).collect();
            let want = crate::eer(&b, &s).unwrap().eer;
            assert_eq!(eer_replicates(&bona, &spoof, [r]).unwrap(), vec![want]);
        }
    }

    #[test]
    fn percentile_is_numpys_linear() {
        // np.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) = 1.075, 2.5, 3.925
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert!((percentile(&v, 0.975) - 3.925).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 0.975), 5.0);
    }

    #[test]
    fn bad_resamples_are_errors() {
        let wrong_length = Resample {
            bonafide: vec![0],
            spoof: vec![0, 1],
        };
        assert!(matches!(
            eer_replicates(&[1.0, 2.0], &[0.0, 1.0], [wrong_length]),
            Err(MetricError::BadResample(_))
        ));
        let out_of_range = Resample {
            bonafide: vec![0, 2],
            spoof: vec![0, 1],
        };
        assert!(matches!(
            eer_replicates(&[1.0, 2.0], &[0.0, 1.0], [out_of_range]),
            Err(MetricError::BadResample(_))
        ));
        assert!(matches!(
            paired_difference(
                (&[1.0, 2.0], &[0.0]),
                (&[1.0], &[0.0]),
                &BootstrapOptions::default()
            ),
            Err(MetricError::UnpairedTrials { .. })
        ));
    }

    #[test]
    fn a_system_against_itself_differs_by_zero() {
        let bona = [0.2, 0.5, 1.0, 0.7];
        let spoof = [0.1, 0.5, 0.9, -1.0];
        let d = paired_difference(
            (&bona, &spoof),
            (&bona, &spoof),
            &BootstrapOptions::default(),
        )
        .unwrap();
        assert_eq!(d.difference, 0.0);
        assert_eq!(
            d.interval,
            Interval {
                low: 0.0,
                high: 0.0
            }
        );
        assert_eq!(d.a_better, 0.5);
    }
}
