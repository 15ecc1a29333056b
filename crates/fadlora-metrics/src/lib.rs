//! Countermeasure metrics exactly as the ASVspoof challenges compute them.
//!
//! Scores follow the ASVspoof convention: higher means more bona fide. The DET curve and
//! EER reproduce `compute_det_curve` / `compute_eer` of the ASVspoof 2019/2021 evaluation
//! package (and SSL_Anti-spoofing) step for step, including its tie handling: all scores are
//! sorted with a stable sort, bona fide before spoof, so equal scores resolve the same way.
//! The minimum tandem detection cost function follows the 2019 package's `compute_tDCF`
//! with its cost model, given the organisers' ASV scores. [`dcf`] has the ASVspoof 5 Track 1
//! metrics (minDCF, actDCF, Cllr, minCllr). [`bootstrap`] adds confidence intervals of the EER
//! and the paired bootstrap of two systems' EER difference.

use serde::{Deserialize, Serialize};

pub mod bootstrap;
pub mod dcf;

pub use bootstrap::{BootstrapOptions, Interval, PairedDifference, Resample, Resampler};
pub use dcf::{act_dcf, cllr, min_cllr, min_dcf, track1_metrics, Dcf, DcfCostModel, Track1Metrics};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("no bona fide scores: the EER needs both classes")]
    NoBonafide,
    #[error("no spoof scores: the EER needs both classes")]
    NoSpoof,
    #[error("score {0} is not a finite number")]
    NonFiniteScore(f64),
    #[error("ASV scores need at least one {0} trial")]
    MissingAsvClass(&'static str),
    #[error(
        "t-DCF cost weights are negative (C1 = {c1}, C2 = {c2}): the ASV system is worse than \
         chance under this cost model"
    )]
    NegativeCostWeights { c1: f64, c2: f64 },
    #[error("bootstrap resample does not fit the trials: {0}")]
    BadResample(String),
    #[error(
        "a paired comparison needs the same trials: {} bona fide / {} spoof against {} / {}",
        a.0, a.1, b.0, b.1
    )]
    UnpairedTrials {
        a: (usize, usize),
        b: (usize, usize),
    },
}

/// The detection error trade-off over every threshold, as ASVspoof's `compute_det_curve`.
///
/// Entry 0 is the threshold just below the lowest score (everything accepted); entry `i > 0`
/// rejects the `i` lowest-ranked trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetCurve {
    /// Miss rate of bona fide trials (false rejection rate).
    pub frr: Vec<f64>,
    /// Acceptance rate of spoof trials (false acceptance rate).
    pub far: Vec<f64>,
    pub thresholds: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eer {
    /// Equal error rate as a fraction in [0, 1] (multiply by 100 for percent).
    pub eer: f64,
    pub threshold: f64,
}

pub(crate) fn check_scores(bonafide: &[f64], spoof: &[f64]) -> Result<(), MetricError> {
    if bonafide.is_empty() {
        return Err(MetricError::NoBonafide);
    }
    if spoof.is_empty() {
        return Err(MetricError::NoSpoof);
    }
    match bonafide.iter().chain(spoof).find(|s| !s.is_finite()) {
        Some(&bad) => Err(MetricError::NonFiniteScore(bad)),
        None => Ok(()),
    }
}

/// The order scores are ranked in: numeric, so `-0.0` ties with `0.0` as it does in numpy's
/// `argsort` (`total_cmp` would rank it lower and split a tie the reference keeps).
pub(crate) fn score_order(a: f64, b: f64) -> std::cmp::Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.total_cmp(&b))
}

/// DET curve of bona fide (target) against spoof (non-target) scores.
pub fn det_curve(bonafide: &[f64], spoof: &[f64]) -> Result<DetCurve, MetricError> {
    check_scores(bonafide, spoof)?;
    let n_bonafide = bonafide.len();
    let n_spoof = spoof.len();
    let n_scores = n_bonafide + n_spoof;
    // Bona fide first, then a stable sort: ties put bona fide before spoof as numpy's
    // mergesort does in the reference implementation.
    let mut trials: Vec<(f64, bool)> = bonafide
        .iter()
        .map(|&s| (s, true))
        .chain(spoof.iter().map(|&s| (s, false)))
        .collect();
    trials.sort_by(|a, b| score_order(a.0, b.0));

    let mut frr = Vec::with_capacity(n_scores + 1);
    let mut far = Vec::with_capacity(n_scores + 1);
    let mut thresholds = Vec::with_capacity(n_scores + 1);
    frr.push(0.0);
    far.push(1.0);
    thresholds.push(trials[0].0 - 0.001);
    let mut bonafide_below = 0usize;
    for (rank, &(score, is_bonafide)) in trials.iter().enumerate() {
        if is_bonafide {
            bonafide_below += 1;
        }
        let spoof_below = rank + 1 - bonafide_below;
        frr.push(bonafide_below as f64 / n_bonafide as f64);
        far.push((n_spoof - spoof_below) as f64 / n_spoof as f64);
        thresholds.push(score);
    }
    Ok(DetCurve {
        frr,
        far,
        thresholds,
    })
}

/// Equal error rate and its threshold, as ASVspoof's `compute_eer`: the mean of FRR and FAR at
/// the first threshold where |FRR - FAR| is smallest.
pub fn eer(bonafide: &[f64], spoof: &[f64]) -> Result<Eer, MetricError> {
    let curve = det_curve(bonafide, spoof)?;
    Ok(eer_from_curve(&curve))
}

fn eer_from_curve(curve: &DetCurve) -> Eer {
    let mut best = 0;
    let mut best_gap = f64::INFINITY;
    for (i, (frr, far)) in curve.frr.iter().zip(&curve.far).enumerate() {
        let gap = (frr - far).abs();
        if gap < best_gap {
            best_gap = gap;
            best = i;
        }
    }
    Eer {
        eer: (curve.frr[best] + curve.far[best]) / 2.0,
        threshold: curve.thresholds[best],
    }
}

/// The ASVspoof 2019 t-DCF cost model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TdcfCostModel {
    /// Prior of a spoofing attack.
    pub p_spoof: f64,
    /// Prior of a target speaker (bona fide, genuine claimant).
    pub p_target: f64,
    /// Prior of a bona fide non-target speaker (zero-effort impostor).
    pub p_nontarget: f64,
    pub c_miss_asv: f64,
    pub c_fa_asv: f64,
    pub c_miss_cm: f64,
    pub c_fa_cm: f64,
}

impl TdcfCostModel {
    /// The cost model of the ASVspoof 2019 evaluation package.
    pub fn asvspoof2019() -> Self {
        let p_spoof = 0.05;
        Self {
            p_spoof,
            p_target: (1.0 - p_spoof) * 0.99,
            p_nontarget: (1.0 - p_spoof) * 0.01,
            c_miss_asv: 1.0,
            c_fa_asv: 10.0,
            c_miss_cm: 1.0,
            c_fa_cm: 10.0,
        }
    }
}

/// Scores of the fixed ASV system that the countermeasure protects, split by trial type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AsvScores {
    pub target: Vec<f64>,
    pub nontarget: Vec<f64>,
    pub spoof: Vec<f64>,
}

/// ASV error rates at the ASV system's own EER threshold (`obtain_asv_error_rates`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AsvErrorRates {
    pub threshold: f64,
    pub p_fa: f64,
    pub p_miss: f64,
    pub p_miss_spoof: f64,
}

pub fn asv_error_rates(asv: &AsvScores) -> Result<AsvErrorRates, MetricError> {
    if asv.target.is_empty() {
        return Err(MetricError::MissingAsvClass("target"));
    }
    if asv.nontarget.is_empty() {
        return Err(MetricError::MissingAsvClass("nontarget"));
    }
    if asv.spoof.is_empty() {
        return Err(MetricError::MissingAsvClass("spoof"));
    }
    let threshold = eer(&asv.target, &asv.nontarget)?.threshold;
    let fraction = |scores: &[f64], pred: &dyn Fn(f64) -> bool| {
        scores.iter().filter(|&&s| pred(s)).count() as f64 / scores.len() as f64
    };
    Ok(AsvErrorRates {
        threshold,
        p_fa: fraction(&asv.nontarget, &|s| s >= threshold),
        p_miss: fraction(&asv.target, &|s| s < threshold),
        p_miss_spoof: fraction(&asv.spoof, &|s| s < threshold),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinTdcf {
    /// Minimum normalised t-DCF over all countermeasure thresholds.
    pub min_tdcf: f64,
    pub threshold: f64,
}

/// Minimum normalised t-DCF of a countermeasure (ASVspoof 2019 `compute_tDCF`).
pub fn min_tdcf(
    bonafide: &[f64],
    spoof: &[f64],
    asv: &AsvScores,
    cost: &TdcfCostModel,
) -> Result<MinTdcf, MetricError> {
    let rates = asv_error_rates(asv)?;
    let curve = det_curve(bonafide, spoof)?;
    let c1 = cost.p_target * (cost.c_miss_cm - cost.c_miss_asv * rates.p_miss)
        - cost.p_nontarget * cost.c_fa_asv * rates.p_fa;
    let c2 = cost.c_fa_cm * cost.p_spoof * (1.0 - rates.p_miss_spoof);
    if c1 < 0.0 || c2 < 0.0 {
        return Err(MetricError::NegativeCostWeights { c1, c2 });
    }
    let norm = c1.min(c2);
    let mut best = MinTdcf {
        min_tdcf: f64::INFINITY,
        threshold: f64::NAN,
    };
    for ((p_miss_cm, p_fa_cm), &threshold) in
        curve.frr.iter().zip(&curve.far).zip(&curve.thresholds)
    {
        let tdcf = (c1 * p_miss_cm + c2 * p_fa_cm) / norm;
        if tdcf < best.min_tdcf {
            best = MinTdcf {
                min_tdcf: tdcf,
                threshold,
            };
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separated_scores_have_zero_eer() {
        let result = eer(&[2.0, 3.0, 4.0], &[-1.0, 0.0, 1.0]).unwrap();
        assert_eq!(result.eer, 0.0);
        // The first zero-gap point rejects all three spoofs: threshold at the highest spoof.
        assert_eq!(result.threshold, 1.0);
    }

    #[test]
    fn inverted_scores_have_full_eer() {
        let result = eer(&[-1.0, 0.0], &[1.0, 2.0]).unwrap();
        assert_eq!(result.eer, 1.0);
    }

    #[test]
    fn hand_computed_det_curve_with_a_tie() {
        // Sorted: s0.1, b0.2, (b0.5, s0.5 tie -> bona fide first), s0.9, b1.0
        let curve = det_curve(&[0.2, 0.5, 1.0], &[0.1, 0.5, 0.9]).unwrap();
        let third = 1.0 / 3.0;
        let two_thirds = 2.0 / 3.0;
        assert_eq!(
            curve.frr,
            vec![0.0, 0.0, third, two_thirds, two_thirds, two_thirds, 1.0]
        );
        assert_eq!(
            curve.far,
            vec![1.0, two_thirds, two_thirds, two_thirds, third, 0.0, 0.0]
        );
        assert_eq!(
            curve.thresholds,
            vec![0.1 - 0.001, 0.1, 0.2, 0.5, 0.5, 0.9, 1.0]
        );
        // The gap |frr - far| first reaches 0 at index 3.
        let result = eer_from_curve(&curve);
        assert_eq!(result.eer, two_thirds);
        assert_eq!(result.threshold, 0.5);
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        // A tie separates nothing: bona fide is ranked first, as numpy's stable argsort does.
        assert_eq!(eer(&[0.0], &[-0.0]).unwrap().eer, 1.0);
        assert_eq!(eer(&[-0.0], &[0.0]).unwrap().eer, 1.0);
    }

    #[test]
    fn empty_classes_and_nan_are_errors() {
        assert_eq!(eer(&[], &[1.0]), Err(MetricError::NoBonafide));
        assert_eq!(eer(&[1.0], &[]), Err(MetricError::NoSpoof));
        assert!(matches!(
            eer(&[f64::NAN], &[1.0]),
            Err(MetricError::NonFiniteScore(_))
        ));
    }

    #[test]
    fn min_tdcf_of_a_perfect_countermeasure_is_zero() {
        let asv = AsvScores {
            target: vec![3.0, 4.0, 5.0],
            nontarget: vec![-3.0, -2.0, -1.0],
            spoof: vec![1.0, 2.0, 0.5],
        };
        let result = min_tdcf(
            &[1.0, 2.0],
            &[-2.0, -1.0],
            &asv,
            &TdcfCostModel::asvspoof2019(),
        )
        .unwrap();
        assert_eq!(result.min_tdcf, 0.0);
    }
}
