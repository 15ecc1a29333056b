//! What the report says about uncertainty and per-attack behaviour: each run's EER interval
//! and breakdown (from its record, or from its score file for records written before those
//! existed), the EER of each group's seeds pooled, and the paired bootstrap of LoRA (and probe)
//! runs against full fine-tuning of the same seed on the same trials.

use std::collections::HashMap;

use fadlora_data::{Split, Utterance};
use fadlora_metrics::{BootstrapOptions, PairedDifference};
use fadlora_run::scores::{eer_of, Scored};
use fadlora_run::stats::{
    breakdown, eer_ci_of, factor_map, paired_by_id, pooled_eer, pooled_eer_ci,
};
use fadlora_run::{Mode, PercentInterval, Plan, PlannedRun, RunRecord, SplitResult, SubsetEer};

/// One finished run's figures for the split the report tables (eval when every run has one).
#[derive(Debug, Clone)]
pub(crate) struct RunStats {
    pub split: String,
    pub n_bonafide: usize,
    pub n_spoof: usize,
    pub eer_percent: f64,
    pub eer_ci: Option<PercentInterval>,
    pub breakdown: Vec<SubsetEer>,
    /// The split's scores joined with the protocol; `None` when they could not be read.
    pub scores: Option<Vec<Scored>>,
}

/// A LoRA or probe run against full fine-tuning of the same seed and input length.
#[derive(Debug, Clone)]
pub(crate) struct Paired {
    pub group: String,
    pub full_group: String,
    pub seed: u64,
    pub split: String,
    pub n_bonafide: usize,
    pub n_spoof: usize,
    pub eer_percent: f64,
    pub full_eer_percent: f64,
    pub difference: PairedDifference,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    /// In the order of the finished runs.
    pub runs: Vec<RunStats>,
    /// Group -> EER (percent) of all its seeds' scores pooled.
    pub pooled: HashMap<String, f64>,
    /// Group -> interval of the pooled EER (trials resampled once for every seed).
    pub pooled_ci: HashMap<String, PercentInterval>,
    /// Bona fide and spoof trials of a group's first run (every seed scores the same trials).
    pub group_trials: HashMap<String, (usize, usize)>,
    pub paired: Vec<Paired>,
    pub bootstrap: BootstrapOptions,
    /// Runs whose interval or breakdown came from their score file, not their record.
    pub recomputed: usize,
    pub notes: Vec<String>,
}

/// Reads one split's scores and labels them from the run's own protocol; the protocol's
/// utterances come back too, for the breakdown.
fn load_scores<'p>(
    plan: &Plan,
    run: &PlannedRun,
    record: &RunRecord,
    split: &SplitResult,
    protocols: &'p mut HashMap<String, Result<Vec<Utterance>, String>>,
) -> Result<(Vec<Scored>, &'p [Utterance]), String> {
    let dataset = &record.config.data.dataset;
    let utterances = protocols
        .entry(dataset.clone())
        .or_insert_with(|| fadlora_run::scores::read_protocol(dataset).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| format!("the protocol of `{dataset}` could not be read ({e})"))?;
    let wanted = Split::parse(&split.split);
    let labels: HashMap<&str, fadlora_data::Label> = utterances
        .iter()
        .filter(|u| u.split == wanted)
        .map(|u| (u.id.as_str(), u.label))
        .collect();
    let path = plan.run_dir(run).join(&split.scores_file);
    let raw = fadlora_run::scores::read_score_file(&path).map_err(|e| e.to_string())?;
    let mut scores = Vec::with_capacity(raw.len());
    for (id, score) in raw {
        let label = *labels.get(id.as_str()).ok_or_else(|| {
            format!(
                "{}: `{id}` is not in the {} split of `{dataset}`",
                path.display(),
                split.split
            )
        })?;
        scores.push(Scored { id, label, score });
    }
    Ok((scores, utterances.as_slice()))
}

/// Everything [`Stats`] holds, for the finished runs; `eval` says which split the tables use.
pub(crate) fn compute(plan: &Plan, finished: &[(&PlannedRun, RunRecord)], eval: bool) -> Stats {
    let mut stats = Stats::default();
    let options = stats.bootstrap;
    let mut protocols = HashMap::new();
    let mut problems = Vec::new();
    for (run, record) in finished {
        let split = match (&record.eval, eval) {
            (Some(e), true) => e,
            _ => &record.dev,
        };
        let loaded = load_scores(plan, run, record, split, &mut protocols);
        let mut run_stats = RunStats {
            split: split.split.clone(),
            n_bonafide: split.n_bonafide,
            n_spoof: split.n_spoof,
            eer_percent: split.eer_percent,
            eer_ci: split.eer_ci,
            breakdown: split.breakdown.clone(),
            scores: None,
        };
        match loaded {
            Ok((scores, utterances)) => {
                // A record written before intervals existed has no `bootstrap`: its interval
                // and breakdown are made here, from the scores, the way the trainer makes them.
                if split.bootstrap.is_none() {
                    let made = eer_ci_of(&scores, &options).and_then(|ci| {
                        let factors = factor_map(utterances);
                        Ok((ci, breakdown(&scores, &factors, Some(&options))?))
                    });
                    match made {
                        Ok((ci, parts)) => {
                            run_stats.eer_ci = Some(ci);
                            run_stats.breakdown = parts;
                            stats.recomputed += 1;
                        }
                        Err(e) => problems.push(format!("`{}`: {e}", run.id)),
                    }
                }
                run_stats.scores = Some(scores);
            }
            Err(e) => problems.push(format!("`{}`: {e}", run.id)),
        }
        stats.runs.push(run_stats);
    }
    if !problems.is_empty() {
        stats.notes.push(format!(
            "Intervals, breakdowns, pooled and paired EERs leave out what could not be read: {}.",
            problems.join("; ")
        ));
    }
    pool_groups(&mut stats, finished);
    pair_with_full(&mut stats, finished);
    stats
}

fn pool_groups(stats: &mut Stats, finished: &[(&PlannedRun, RunRecord)]) {
    let mut groups: Vec<&str> = Vec::new();
    for (run, _) in finished {
        if !groups.contains(&run.group.as_str()) {
            groups.push(&run.group);
        }
    }
    for group in groups {
        if let Some((_, s)) = finished
            .iter()
            .zip(&stats.runs)
            .find(|((run, _), _)| run.group == group)
        {
            stats
                .group_trials
                .insert(group.to_string(), (s.n_bonafide, s.n_spoof));
        }
        let sets: Option<Vec<&[Scored]>> = finished
            .iter()
            .zip(&stats.runs)
            .filter(|((run, _), _)| run.group == group)
            .map(|(_, s)| s.scores.as_deref())
            .collect();
        // Pooling only some seeds would be a different number under the same name.
        let Some(sets) = sets else { continue };
        match pooled_eer(&sets) {
            Ok((eer_percent, _, _)) => {
                stats.pooled.insert(group.to_string(), eer_percent);
                match pooled_eer_ci(&sets, &stats.bootstrap) {
                    Ok(ci) => {
                        stats.pooled_ci.insert(group.to_string(), ci);
                    }
                    Err(e) => stats
                        .notes
                        .push(format!("No pooled interval for group `{group}`: {e}.")),
                }
            }
            Err(e) => stats
                .notes
                .push(format!("No pooled EER for group `{group}`: {e}.")),
        }
    }
}

fn pair_with_full(stats: &mut Stats, finished: &[(&PlannedRun, RunRecord)]) {
    let options = stats.bootstrap;
    let mut paired = Vec::new();
    for (i, (run, _)) in finished.iter().enumerate() {
        if run.axes.mode == Mode::Full {
            continue;
        }
        let full = finished.iter().position(|(f, _)| {
            f.axes.mode == Mode::Full
                && f.axes.seed == run.axes.seed
                && f.axes.crop_samples == run.axes.crop_samples
        });
        let Some(j) = full else { continue };
        let (a, b) = (&stats.runs[i], &stats.runs[j]);
        let (Some(sa), Some(sb)) = (&a.scores, &b.scores) else {
            continue;
        };
        // Both EERs from the scores the difference is made of, so the row adds up.
        let eers = eer_of(sa).and_then(|ea| Ok((ea, eer_of(sb)?)));
        match paired_by_id(sa, sb, &options).and_then(|d| Ok((d, eers?))) {
            Ok((difference, (ea, eb))) => paired.push(Paired {
                group: run.group.clone(),
                full_group: finished[j].0.group.clone(),
                seed: run.axes.seed,
                split: a.split.clone(),
                n_bonafide: a.n_bonafide,
                n_spoof: a.n_spoof,
                eer_percent: ea.eer * 100.0,
                full_eer_percent: eb.eer * 100.0,
                difference,
            }),
            Err(e) => stats.notes.push(format!(
                "`{}` is not compared with `{}`: {e}.",
                run.id, finished[j].0.id
            )),
        }
    }
    stats.paired = paired;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bootstrap_is_the_records() {
        // The report's recomputed intervals must be the trainer's: both use the default.
        let stats = Stats::default();
        assert_eq!(stats.bootstrap, BootstrapOptions::default());
        assert_eq!(stats.bootstrap.resamples, 1000);
    }
}
