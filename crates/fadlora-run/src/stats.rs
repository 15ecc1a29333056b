//! Uncertainty and breakdowns of a score set: the bootstrap interval of the EER, the EER per
//! attack and per recording condition, the paired bootstrap of two systems on the same trials,
//! and the EER of several seeds' scores pooled.
//!
//! A breakdown groups trials by a factor of the protocol ([`FACTORS`]). For each value of a
//! factor, the spoof trials with that value are compared with the bona fide trials with that
//! value when there are any (codecs and channels apply to both classes, as ASVspoof 2021 reports
//! its conditions), else with every bona fide trial (attacks and vocoders exist only for spoofs:
//! each attack's EER is all bona fide trials against that attack's spoofs, as ASVspoof 2019
//! reports A07-A19). A value that only bona fide trials carry (2021 keys write `bonafide` in the
//! attack column) has no EER of its own and is left out.

use std::collections::{BTreeMap, HashMap};

use fadlora_data::{Label, Utterance};
use fadlora_metrics::bootstrap::{eer_interval, paired_difference};
use fadlora_metrics::{BootstrapOptions, Interval, PairedDifference};

use crate::record::{PercentInterval, SubsetEer};
use crate::scores::{split_by_label, Scored};
use crate::RunError;

/// The factors a breakdown groups by, in report order: the attack (spoofing system) id, and the
/// ASVspoof 2021 key columns `codec`, `transmission` (LA), `source` corpus and `vocoder` (DF).
pub const FACTORS: [&str; 5] = ["attack", "codec", "transmission", "source", "vocoder"];

/// The factor values the protocol gives a trial, as `(factor, value)`.
pub fn factors_of(u: &Utterance) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(system) = &u.system {
        out.push(("attack", system.clone()));
    }
    if let Some(c) = &u.conditions {
        out.push(("codec", c.codec.clone()));
        if let Some(t) = &c.transmission {
            out.push(("transmission", t.clone()));
        }
        if let Some(s) = &c.source_corpus {
            out.push(("source", s.clone()));
        }
        if let Some(v) = &c.vocoder {
            out.push(("vocoder", v.clone()));
        }
    }
    out
}

impl From<Interval> for PercentInterval {
    fn from(i: Interval) -> Self {
        PercentInterval {
            low_percent: i.low * 100.0,
            high_percent: i.high * 100.0,
        }
    }
}

/// The bootstrap interval of a score set's EER, in percent.
pub fn eer_ci_of(
    scores: &[Scored],
    options: &BootstrapOptions,
) -> Result<PercentInterval, RunError> {
    let (bona, spoof) = split_by_label(scores);
    Ok(eer_interval(&bona, &spoof, options)?.into())
}

/// The EER of every attack and condition in `scores` (see the module documentation), each with
/// its bootstrap interval when `options` is given. `factors` maps an utterance id to what
/// [`factors_of`] gives for it; a scored id it does not know is an error. Empty when the
/// protocol names no attack or condition.
pub fn breakdown(
    scores: &[Scored],
    factors: &HashMap<&str, Vec<(&'static str, String)>>,
    options: Option<&BootstrapOptions>,
) -> Result<Vec<SubsetEer>, RunError> {
    // factor -> value -> (bona fide, spoof) scores.
    type Classes = (Vec<f64>, Vec<f64>);
    let mut groups: BTreeMap<usize, BTreeMap<String, Classes>> = BTreeMap::new();
    let mut all_bona = Vec::new();
    for s in scores {
        let trial = factors.get(s.id.as_str()).ok_or_else(|| {
            RunError::Invalid(format!(
                "scored utterance `{}` is not in the protocol the breakdown is made from",
                s.id
            ))
        })?;
        if s.label == Label::Bonafide {
            all_bona.push(s.score);
        }
        for (factor, value) in trial {
            let order = FACTORS
                .iter()
                .position(|f| f == factor)
                .unwrap_or(FACTORS.len());
            let classes = groups
                .entry(order)
                .or_default()
                .entry(value.clone())
                .or_default();
            match s.label {
                Label::Bonafide => classes.0.push(s.score),
                Label::Spoof => classes.1.push(s.score),
            }
        }
    }
    let mut out = Vec::new();
    for (order, values) in groups {
        let factor = FACTORS.get(order).copied().unwrap_or("other");
        for (value, (bona, spoof)) in values {
            if spoof.is_empty() {
                continue;
            }
            let bona = if bona.is_empty() { &all_bona } else { &bona };
            if bona.is_empty() {
                continue;
            }
            let eer = fadlora_metrics::eer(bona, &spoof)?;
            let eer_ci = match options {
                Some(o) => Some(eer_interval(bona, &spoof, o)?.into()),
                None => None,
            };
            out.push(SubsetEer {
                factor: factor.to_string(),
                value,
                n_bonafide: bona.len(),
                n_spoof: spoof.len(),
                eer_percent: eer.eer * 100.0,
                eer_ci,
            });
        }
    }
    Ok(out)
}

/// [`factors_of`] for every utterance, keyed by id.
pub fn factor_map(utterances: &[Utterance]) -> HashMap<&str, Vec<(&'static str, String)>> {
    utterances
        .iter()
        .map(|u| (u.id.as_str(), factors_of(u)))
        .collect()
}

/// The paired bootstrap of EER(a) - EER(b) on the same trials, matched by utterance id: both
/// must score exactly the same utterances, with the same labels.
pub fn paired_by_id(
    a: &[Scored],
    b: &[Scored],
    options: &BootstrapOptions,
) -> Result<PairedDifference, RunError> {
    let by_id: HashMap<&str, &Scored> = b.iter().map(|s| (s.id.as_str(), s)).collect();
    let mismatch = |why: String| {
        RunError::Invalid(format!(
            "a paired comparison needs both systems scored on the same trials: {why}"
        ))
    };
    let (mut a_bona, mut a_spoof, mut b_bona, mut b_spoof) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in a {
        let other = by_id.get(s.id.as_str()).ok_or_else(|| {
            mismatch(format!(
                "`{}` is scored by the first but not the second",
                s.id
            ))
        })?;
        if other.label != s.label {
            return Err(mismatch(format!(
                "`{}` is {} in one and {} in the other",
                s.id, s.label, other.label
            )));
        }
        match s.label {
            Label::Bonafide => {
                a_bona.push(s.score);
                b_bona.push(other.score);
            }
            Label::Spoof => {
                a_spoof.push(s.score);
                b_spoof.push(other.score);
            }
        }
    }
    if a.len() != b.len() {
        let in_a: std::collections::HashSet<&str> = a.iter().map(|s| s.id.as_str()).collect();
        let extra = b
            .iter()
            .find(|s| !in_a.contains(s.id.as_str()))
            .map_or("?", |s| s.id.as_str());
        return Err(mismatch(format!(
            "{} trials against {}; `{extra}` is scored by the second but not the first",
            a.len(),
            b.len()
        )));
    }
    Ok(paired_difference(
        (&a_bona, &a_spoof),
        (&b_bona, &b_spoof),
        options,
    )?)
}

/// The 95 % (or `options.level`) interval of [`pooled_eer`]: trials are resampled once per
/// replicate and every set's scores of them pooled
/// ([`fadlora_metrics::bootstrap::pooled_eer_interval`]), so the sets must score the same trials
/// (matched by id, in any order).
pub fn pooled_eer_ci(
    sets: &[&[Scored]],
    options: &BootstrapOptions,
) -> Result<PercentInterval, RunError> {
    let Some(first) = sets.first() else {
        return Err(RunError::Invalid("no score sets to pool".into()));
    };
    let (bona_ids, spoof_ids): (Vec<&Scored>, Vec<&Scored>) =
        first.iter().partition(|s| s.label == Label::Bonafide);
    let mut aligned: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(sets.len());
    for set in sets {
        let by_id: HashMap<&str, &Scored> = set.iter().map(|s| (s.id.as_str(), s)).collect();
        if by_id.len() != first.len() || set.len() != first.len() {
            return Err(RunError::Invalid(format!(
                "pooled seeds must score the same trials: {} against {}",
                set.len(),
                first.len()
            )));
        }
        let pick = |trials: &[&Scored]| -> Result<Vec<f64>, RunError> {
            trials
                .iter()
                .map(|t| match by_id.get(t.id.as_str()) {
                    Some(s) if s.label == t.label => Ok(s.score),
                    _ => Err(RunError::Invalid(format!(
                        "pooled seeds must score the same trials: `{}` ({}) is missing from one",
                        t.id, t.label
                    ))),
                })
                .collect()
        };
        aligned.push((pick(&bona_ids)?, pick(&spoof_ids)?));
    }
    let views: Vec<(&[f64], &[f64])> = aligned
        .iter()
        .map(|(b, s)| (b.as_slice(), s.as_slice()))
        .collect();
    Ok(fadlora_metrics::bootstrap::pooled_eer_interval(&views, options)?.into())
}

/// The EER (percent) of several score sets pooled into one, with the trial counts pooled.
/// Seeds score on their own scales, so one threshold over all of them is not what any single
/// model would use: this is the figure papers report, not a deployable operating point.
pub fn pooled_eer(sets: &[&[Scored]]) -> Result<(f64, usize, usize), RunError> {
    let (mut bona, mut spoof) = (Vec::new(), Vec::new());
    for set in sets {
        let (b, s) = split_by_label(set);
        bona.extend(b);
        spoof.extend(s);
    }
    let eer = fadlora_metrics::eer(&bona, &spoof)?;
    Ok((eer.eer * 100.0, bona.len(), spoof.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fadlora_data::{Split, TrialConditions};

    fn scored(id: &str, label: Label, score: f64) -> Scored {
        Scored {
            id: id.into(),
            label,
            score,
        }
    }

    fn utt(id: &str, label: Label, system: Option<&str>, codec: Option<&str>) -> Utterance {
        Utterance {
            id: id.into(),
            path: id.into(),
            label,
            speaker: None,
            system: system.map(Into::into),
            split: Split::Eval,
            conditions: codec.map(|c| TrialConditions {
                codec: c.into(),
                transmission: None,
                source_corpus: None,
                trim: "notrim".into(),
                subset: "eval".into(),
                vocoder: None,
            }),
        }
    }

    #[test]
    fn hand_computed_per_attack_eer() {
        use Label::{Bonafide as B, Spoof as S};
        // Bona fide 0.9 0.8 0.4 0.35. A07 spoofs 0.1 0.2 lie below every bona fide: EER 0.
        // A08 spoofs 0.5 0.85: sorted b.35 b.4 s.5 b.8 s.85 b.9; rejecting the three lowest
        // gives FRR 2/4 and FAR 1/2 (s.85 accepted), the first zero gap: EER 50 %.
        let s = [
            scored("b1", B, 0.9),
            scored("b2", B, 0.8),
            scored("b3", B, 0.4),
            scored("b4", B, 0.35),
            scored("a1", S, 0.1),
            scored("a2", S, 0.2),
            scored("c1", S, 0.5),
            scored("c2", S, 0.85),
        ];
        let utts = [
            utt("b1", B, None, None),
            utt("b2", B, None, None),
            utt("b3", B, None, None),
            utt("b4", B, None, None),
            utt("a1", S, Some("A07"), None),
            utt("a2", S, Some("A07"), None),
            utt("c1", S, Some("A08"), None),
            utt("c2", S, Some("A08"), None),
        ];
        let got = breakdown(&s, &factor_map(&utts), None).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].value.as_str(), got[0].n_bonafide, got[0].n_spoof),
            ("A07", 4, 2)
        );
        assert_eq!(got[0].eer_percent, 0.0);
        assert_eq!((got[1].value.as_str(), got[1].eer_percent), ("A08", 50.0));
        assert!(got
            .iter()
            .all(|e| e.factor == "attack" && e.eer_ci.is_none()));
    }

    #[test]
    fn a_value_only_bona_fide_carries_is_left_out_and_conditions_split_both_classes() {
        use Label::{Bonafide as B, Spoof as S};
        let s = [
            scored("b1", B, 1.0),
            scored("b2", B, 0.0),
            scored("s1", S, 0.5),
            scored("s2", S, -1.0),
        ];
        let utts = [
            utt("b1", B, Some("bonafide"), Some("alaw")),
            utt("b2", B, Some("bonafide"), Some("gsm")),
            utt("s1", S, Some("A07"), Some("alaw")),
            utt("s2", S, Some("A07"), Some("gsm")),
        ];
        let got = breakdown(&s, &factor_map(&utts), None).unwrap();
        let keys: Vec<(&str, &str, usize, usize)> = got
            .iter()
            .map(|e| (e.factor.as_str(), e.value.as_str(), e.n_bonafide, e.n_spoof))
            .collect();
        assert_eq!(
            keys,
            [
                ("attack", "A07", 2, 2),
                ("codec", "alaw", 1, 1),
                ("codec", "gsm", 1, 1)
            ]
        );
        // A score the protocol does not know is an error, not a silently smaller table.
        let mut more = s.to_vec();
        more.push(scored("zz", S, 0.0));
        assert!(breakdown(&more, &factor_map(&utts), None).is_err());
    }

    #[test]
    fn paired_comparison_matches_by_id_and_refuses_other_trials() {
        use Label::{Bonafide as B, Spoof as S};
        let a = [
            scored("x", B, 1.0),
            scored("y", S, 0.0),
            scored("z", B, 0.2),
        ];
        // The same trials in another order, with other scores.
        let b = [
            scored("z", B, 0.9),
            scored("x", B, 0.1),
            scored("y", S, 0.5),
        ];
        let d = paired_by_id(&a, &b, &BootstrapOptions::default()).unwrap();
        // a separates perfectly (EER 0). b: sorted b.1 s.5 b.9; rejecting b.1 gives FRR 1/2,
        // FAR 1 (gap 1/2), which rejecting s.5 (FRR 1/2, FAR 0) does not beat: EER 3/4.
        assert_eq!(d.difference, -0.75);
        let other = [
            scored("x", B, 1.0),
            scored("w", S, 0.0),
            scored("z", B, 0.2),
        ];
        let err = paired_by_id(&a, &other, &BootstrapOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("`y` is scored by the first"),
            "{err}"
        );
        let relabelled = [
            scored("x", B, 1.0),
            scored("y", B, 0.0),
            scored("z", B, 0.2),
        ];
        assert!(paired_by_id(&a, &relabelled, &BootstrapOptions::default()).is_err());
        let longer = [
            scored("x", B, 1.0),
            scored("y", S, 0.0),
            scored("z", B, 0.2),
            scored("v", S, 0.2),
        ];
        let err = paired_by_id(&a, &longer, &BootstrapOptions::default()).unwrap_err();
        assert!(err.to_string().contains("`v`"), "{err}");
    }

    #[test]
    fn pooled_interval_matches_trials_by_id_and_refuses_other_trials() {
        let seed = |shift: f64| -> Vec<Scored> {
            (0..12)
                .map(|i| {
                    let label = if i % 3 == 0 {
                        Label::Bonafide
                    } else {
                        Label::Spoof
                    };
                    let base = if label == Label::Bonafide { 1.0 } else { -0.5 };
                    scored(
                        &format!("t{i}"),
                        label,
                        base + shift * ((i * 7 % 5) as f64 - 2.0),
                    )
                })
                .collect()
        };
        let (a, b) = (seed(0.6), seed(0.9));
        let options = BootstrapOptions::default();
        let in_order = pooled_eer_ci(&[&a, &b], &options).unwrap();
        let mut shuffled = b.clone();
        shuffled.reverse();
        assert_eq!(pooled_eer_ci(&[&a, &shuffled], &options).unwrap(), in_order);
        assert_eq!(
            pooled_eer_ci(&[&a], &options).unwrap(),
            eer_ci_of(&a, &options).unwrap()
        );
        let mut other = b.clone();
        other[4].id = "elsewhere".into();
        let err = pooled_eer_ci(&[&a, &other], &options).unwrap_err();
        assert!(err.to_string().contains("`t4`"), "{err}");
    }
}
