//! The ASVspoof 5 Track 1 metrics beside the EER: the normalised detection cost function at
//! its minimum (minDCF, the primary metric) and at the Bayes threshold (actDCF), and the
//! log-likelihood-ratio cost (Cllr) with its PAV-calibrated minimum (minCllr).
//!
//! minDCF, actDCF and Cllr follow `compute_mindcf`, `compute_actDCF` and `calculate_CLLR` of
//! the organisers' evaluation package step for step: minDCF runs over the same DET curve as
//! the EER ([`det_curve`]) and keeps the first minimum; actDCF rejects a trial as bona fide
//! when its score is below the threshold (`<`), as the package does. actDCF and Cllr read
//! scores as natural-log likelihood ratios of bona fide against spoof, so they measure
//! calibration as well as discrimination; minDCF, minCllr and the EER do not depend on it.

use serde::{Deserialize, Serialize};

use crate::{check_scores, det_curve, score_order, MetricError};

/// Prior and costs of a normalised detection cost function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DcfCostModel {
    /// Prior of a spoofed trial.
    pub p_spoof: f64,
    /// Cost of rejecting a bona fide trial.
    pub c_miss: f64,
    /// Cost of accepting a spoofed trial.
    pub c_fa: f64,
}

impl DcfCostModel {
    /// The ASVspoof 5 Track 1 parameters: `Pspoof = 0.05`, `Cmiss = 1`, `Cfa = 10`.
    pub fn asvspoof5() -> Self {
        Self {
            p_spoof: 0.05,
            c_miss: 1.0,
            c_fa: 10.0,
        }
    }

    /// The cost of the better of the two systems that decide without listening (accept all,
    /// reject all); dividing by it makes 1 the cost of a useless detector.
    pub fn default_cost(&self) -> f64 {
        (self.c_miss * (1.0 - self.p_spoof)).min(self.c_fa * self.p_spoof)
    }

    /// The score above which a calibrated log-likelihood ratio is best accepted as bona
    /// fide under this model: `-ln(Cmiss (1 - Pspoof) / (Cfa Pspoof))` (`ln(10/19)` for
    /// ASVspoof 5).
    pub fn bayes_threshold(&self) -> f64 {
        let beta = self.c_miss * (1.0 - self.p_spoof) / (self.c_fa * self.p_spoof);
        -beta.ln()
    }

    /// Normalised cost of a miss rate and a false-acceptance rate.
    pub fn normalised_cost(&self, p_miss: f64, p_fa: f64) -> f64 {
        (self.c_miss * (1.0 - self.p_spoof) * p_miss + self.c_fa * self.p_spoof * p_fa)
            / self.default_cost()
    }
}

/// A normalised DCF and the threshold it was reached at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dcf {
    pub dcf: f64,
    pub threshold: f64,
}

/// Minimum normalised DCF over every threshold of the DET curve (`compute_mindcf`).
pub fn min_dcf(bonafide: &[f64], spoof: &[f64], cost: &DcfCostModel) -> Result<Dcf, MetricError> {
    let curve = det_curve(bonafide, spoof)?;
    let mut best = Dcf {
        dcf: f64::INFINITY,
        threshold: f64::NAN,
    };
    for ((frr, far), &threshold) in curve.frr.iter().zip(&curve.far).zip(&curve.thresholds) {
        let dcf = cost.normalised_cost(*frr, *far);
        if dcf < best.dcf {
            best = Dcf { dcf, threshold };
        }
    }
    Ok(best)
}

/// Normalised DCF at the Bayes threshold of the cost model (`compute_actDCF`): what the
/// scores cost when they are taken at their word as log-likelihood ratios.
pub fn act_dcf(bonafide: &[f64], spoof: &[f64], cost: &DcfCostModel) -> Result<Dcf, MetricError> {
    check_scores(bonafide, spoof)?;
    let threshold = cost.bayes_threshold();
    let p_miss = fraction(bonafide, |s| s < threshold);
    let p_fa = fraction(spoof, |s| s >= threshold);
    Ok(Dcf {
        dcf: cost.normalised_cost(p_miss, p_fa),
        threshold,
    })
}

fn fraction(scores: &[f64], pred: impl Fn(f64) -> bool) -> f64 {
    scores.iter().filter(|&&s| pred(s)).count() as f64 / scores.len() as f64
}

/// `ln(1 + e^x)` without overflow for large `x`.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Cost of log-likelihood ratios in bits (`calculate_CLLR`): the mean of `log2(1 + e^-s)`
/// over bona fide and of `log2(1 + e^s)` over spoofed trials, the two classes weighted
/// equally. 0 is perfect, 1 is what a system that always says "no idea" (score 0) costs.
/// Unlike the package's `log1p(exp(.))`, very confident wrong scores give a large finite cost
/// instead of infinity.
pub fn cllr(bonafide: &[f64], spoof: &[f64]) -> Result<f64, MetricError> {
    check_scores(bonafide, spoof)?;
    let mean = |scores: &[f64], sign: f64| {
        scores.iter().map(|&s| softplus(sign * s)).sum::<f64>() / scores.len() as f64
    };
    Ok((mean(bonafide, -1.0) + mean(spoof, 1.0)) / 2.0 / std::f64::consts::LN_2)
}

/// The Cllr after the best monotonic recalibration of the scores: the pool-adjacent-violators
/// (PAV) fit of the bona fide posterior against score rank, turned into log-likelihood ratios
/// by removing the set's own class proportions. It measures discrimination only, so
/// `Cllr - minCllr` is the calibration loss. Tied scores get one value: bona fide trials are
/// ranked before spoofs among equal scores (as the DET curve ranks them), which forces PAV to
/// pool every tie, the pessimistic choice.
pub fn min_cllr(bonafide: &[f64], spoof: &[f64]) -> Result<f64, MetricError> {
    check_scores(bonafide, spoof)?;
    let mut trials: Vec<(f64, bool)> = bonafide
        .iter()
        .map(|&s| (s, true))
        .chain(spoof.iter().map(|&s| (s, false)))
        .collect();
    trials.sort_by(|a, b| score_order(a.0, b.0));

    // Blocks of (bona fide count, trial count), kept non-decreasing in bona fide proportion;
    // compared by cross-multiplying integer counts, so the fit is exact.
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    for &(_, is_bonafide) in &trials {
        let mut block = (u64::from(is_bonafide), 1);
        while let Some(&(b, n)) = blocks.last() {
            if u128::from(b) * u128::from(block.1) < u128::from(block.0) * u128::from(n) {
                break;
            }
            blocks.pop();
            block = (block.0 + b, block.1 + n);
        }
        blocks.push(block);
    }

    // In a block with b bona fide and s spoofed trials the recalibrated ratio is
    // (b / s) / (N_bonafide / N_spoof); costs written with counts avoid infinite ratios in
    // blocks that hold one class only (their own class then costs nothing).
    let (n_bona, n_spoof) = (bonafide.len() as f64, spoof.len() as f64);
    let (mut bona_cost, mut spoof_cost) = (0.0, 0.0);
    for (b, n) in blocks {
        let (b, s) = (b as f64, (n - b) as f64);
        if b > 0.0 {
            bona_cost += b * (s * n_bona / (b * n_spoof)).ln_1p();
        }
        if s > 0.0 {
            spoof_cost += s * (b * n_spoof / (s * n_bona)).ln_1p();
        }
    }
    Ok((bona_cost / n_bona + spoof_cost / n_spoof) / 2.0 / std::f64::consts::LN_2)
}

/// The four ASVspoof 5 Track 1 numbers of a score set beside its EER.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Track1Metrics {
    /// Primary metric.
    pub min_dcf: f64,
    pub act_dcf: f64,
    /// In bits.
    pub cllr: f64,
    /// In bits.
    pub min_cllr: f64,
}

/// minDCF, actDCF, Cllr and minCllr with the ASVspoof 5 cost model.
pub fn track1_metrics(bonafide: &[f64], spoof: &[f64]) -> Result<Track1Metrics, MetricError> {
    let cost = DcfCostModel::asvspoof5();
    Ok(Track1Metrics {
        min_dcf: min_dcf(bonafide, spoof, &cost)?.dcf,
        act_dcf: act_dcf(bonafide, spoof, &cost)?.dcf,
        cllr: cllr(bonafide, spoof)?,
        min_cllr: min_cllr(bonafide, spoof)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST: DcfCostModel = DcfCostModel {
        p_spoof: 0.05,
        c_miss: 1.0,
        c_fa: 10.0,
    };

    #[test]
    fn asvspoof5_model_normalises_by_the_spoof_side() {
        assert_eq!(DcfCostModel::asvspoof5(), COST);
        // min(1 * 0.95, 10 * 0.05) = 0.5
        assert_eq!(COST.default_cost(), 0.5);
        assert!((COST.bayes_threshold() - (10.0f64 / 19.0).ln()).abs() < 1e-15);
        // Rejecting everything costs 0.95 / 0.5, accepting everything exactly 1.
        assert!((COST.normalised_cost(1.0, 0.0) - 1.9).abs() < 1e-15);
        assert_eq!(COST.normalised_cost(0.0, 1.0), 1.0);
    }

    #[test]
    fn hand_computed_dcfs() {
        let bona = [2.0, 0.5, -1.0, 3.0];
        let spoof = [-2.0, 0.0, -3.0, 1.0];
        // Bayes threshold ln(10/19) = -0.642: one bona fide miss (-1.0), two spoofs accepted
        // (0.0, 1.0): (0.95 * 1/4 + 0.5 * 2/4) / 0.5.
        let act = act_dcf(&bona, &spoof, &COST).unwrap();
        assert!((act.dcf - (0.95 * 0.25 + 0.5 * 0.5) / 0.5).abs() < 1e-15);
        // Best: reject only the two lowest spoofs (threshold -2.0 on the DET curve, which
        // rejects scores up to and including it): no miss, half the spoofs accepted,
        // 0.5 * 2/4 / 0.5.
        let min = min_dcf(&bona, &spoof, &COST).unwrap();
        assert!((min.dcf - 0.5).abs() < 1e-15, "{min:?}");
        assert_eq!(min.threshold, -2.0);
    }

    #[test]
    fn cllr_of_uninformative_and_confident_scores() {
        assert!((cllr(&[0.0, 0.0], &[0.0]).unwrap() - 1.0).abs() < 1e-15);
        assert!(cllr(&[40.0], &[-40.0]).unwrap() < 1e-15);
        // Confidently wrong: about 1000 / ln 2 bits, finite.
        let wrong = cllr(&[-1000.0], &[1000.0]).unwrap();
        assert!((wrong - 1000.0 / std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn min_cllr_is_zero_when_separable_and_one_when_all_tied() {
        assert_eq!(min_cllr(&[5.0, 6.0], &[-1.0, 0.0, 4.9]).unwrap(), 0.0);
        // One block of everything: the ratio is 1, one bit per trial.
        let tied = min_cllr(&[1.0, 1.0, 1.0], &[1.0]).unwrap();
        assert!((tied - 1.0).abs() < 1e-15, "{tied}");
        // A scaled, shifted copy has the same minCllr: only the ranking counts.
        let bona = [0.3, 1.2, -0.4, 2.2, 0.9];
        let spoof = [-1.0, 0.5, -2.0, 0.95, -0.1, 0.2];
        let a = min_cllr(&bona, &spoof).unwrap();
        let scale = |v: &[f64]| v.iter().map(|s| 3.0 * s + 7.0).collect::<Vec<_>>();
        let b = min_cllr(&scale(&bona), &scale(&spoof)).unwrap();
        assert_eq!(a, b);
        assert!(a < cllr(&bona, &spoof).unwrap());
    }

    #[test]
    fn empty_classes_are_errors() {
        assert_eq!(min_dcf(&[], &[1.0], &COST), Err(MetricError::NoBonafide));
        assert_eq!(act_dcf(&[1.0], &[], &COST), Err(MetricError::NoSpoof));
        assert_eq!(cllr(&[], &[1.0]), Err(MetricError::NoBonafide));
        assert!(matches!(
            min_cllr(&[f64::INFINITY], &[1.0]),
            Err(MetricError::NonFiniteScore(_))
        ));
    }
}
