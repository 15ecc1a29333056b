//! The run record (`record.json`): the one machine-readable result of a run, which the sweep
//! and the report read without loading a network.

use fadlora_metrics::BootstrapOptions;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::vocab::Mode;

/// Bumped when a field changes meaning.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub record_version: u32,
    pub name: Option<String>,
    pub mode: Mode,
    pub backend: String,
    pub device: String,
    pub git_commit: Option<String>,
    /// The fully resolved run configuration (every default filled in).
    pub config: RunConfig,
    pub params: ParamCounts,
    pub memory: PeakMemory,
    /// Optimizer steps after `train.timing_warmup_steps`: forward + backward + optimizer,
    /// without data loading; over every invocation of a resumed run.
    pub step_time: Option<TimeStats>,
    /// Training utterances per second of epoch wall time (data loading included).
    pub train_utt_per_s: f64,
    /// Scoring throughput on the dev set (data loading included), at the selected epoch.
    pub eval_utt_per_s: f64,
    pub epochs: Vec<EpochLog>,
    pub steps: u64,
    /// 1-based epoch of the selected checkpoint.
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub dev: SplitResult,
    pub eval: Option<SplitResult>,
    /// The `[[eval_sets]]` of the configuration, scored with the selected checkpoint, in the
    /// configuration's order (records before the key have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_evals: Vec<NamedSplitResult>,
    /// Total wall time of all invocations (seconds).
    pub wall_seconds: f64,
}

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps completed at the end of the epoch.
    pub steps: u64,
    /// Mean class-weighted loss of the training forward passes.
    pub train_loss: f64,
    /// Train EER in eval mode, when `train.score_train` is set.
    pub train_eer_percent: Option<f64>,
    pub dev_loss: f64,
    pub dev_eer_percent: f64,
    pub lr: f64,
    pub wall_seconds: f64,
    pub improved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    pub split: String,
    pub n_bonafide: usize,
    pub n_spoof: usize,
    pub eer_percent: f64,
    pub threshold: f64,
    pub loss: f64,
    /// Min t-DCF (ASVspoof 2019 cost model), when `data.asv_scores` gives the organisers' ASV
    /// scores (eval split only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tdcf: Option<f64>,
    /// Relative to the output folder.
    pub scores_file: String,
    /// Bootstrap interval of `eer_percent` over trials (records before it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eer_ci: Option<PercentInterval>,
    /// How every interval of this split was drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapOptions>,
    /// EER per attack and per recording condition (`crate::stats::breakdown`); empty when the
    /// protocol names none, and in records written before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<SubsetEer>,
}

/// One extra evaluation set's result; `result.split` is the split kept (`all` when none was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedSplitResult {
    /// The set's `name` in `[[eval_sets]]`.
    pub name: String,
    /// The dataset spec as the run read it (resolved path).
    pub dataset: String,
    #[serde(flatten)]
    pub result: SplitResult,
}

/// A confidence interval of an EER, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentInterval {
    pub low_percent: f64,
    pub high_percent: f64,
}

/// The EER of one attack or condition: which trials it compares is said in
/// `crate::stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetEer {
    /// One of `crate::stats::FACTORS`: `attack`, `codec`, `transmission`, `source`, `vocoder`.
    pub factor: String,
    /// The attack id (`A07`) or condition (`alaw`) as the protocol writes it.
    pub value: String,
    pub n_bonafide: usize,
    pub n_spoof: usize,
    pub eer_percent: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eer_ci: Option<PercentInterval>,
}

/// Trainable and total parameters, in Hugging Face / PEFT accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Parameters with `require_grad`: those an optimizer updates. Only an autodiff backend
    /// tracks gradients; on any other backend this is 0.
    pub trainable: usize,
    pub total: usize,
}

impl ParamCounts {
    /// How many times fewer parameters train than in `full` (full fine-tuning's count).
    pub fn reduction_vs(&self, full: usize) -> f64 {
        full as f64 / self.trainable.max(1) as f64
    }
}

/// Peak memory as recorded in run records and benchmark output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakMemory {
    /// The figure to compare: peak RSS on the CPU; on cubecl backends the largest number of
    /// bytes in use (allocated tensors plus their padding) seen at the sampling points, which
    /// follow a device sync. Compare with PyTorch's `max_memory_allocated`.
    pub peak_mem_bytes: Option<u64>,
    /// cubecl only: the largest pool reservation seen (what the device had to set aside),
    /// comparable with PyTorch's `max_memory_reserved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_reserved_bytes: Option<u64>,
    /// What the numbers are, in words.
    pub kind: String,
}

/// Summary of per-step durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeStats {
    pub count: usize,
    pub median_ms: f64,
    /// Nearest-rank 90th percentile (as `tools/bench/torch_step.py`).
    pub p90_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
}

impl TimeStats {
    /// `None` for an empty sample.
    pub fn of(samples_ms: &[f64]) -> Option<TimeStats> {
        if samples_ms.is_empty() {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Some(TimeStats {
            count: n,
            median_ms: median,
            p90_ms: sorted[rank - 1],
            min_ms: sorted[0],
            mean_ms: sorted.iter().sum::<f64>() / n as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stats_median_and_nearest_rank_p90() {
        let s = TimeStats::of(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(s.median_ms, 5.5);
        assert_eq!(s.p90_ms, 9.0);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(TimeStats::of(&[2.0]).unwrap().p90_ms, 2.0);
        assert!(TimeStats::of(&[]).is_none());
    }

    #[test]
    fn a_named_split_result_is_a_split_result_with_its_name_and_dataset() {
        let json = r#"{"name":"itw","dataset":"itw:/data/itw","split":"all","n_bonafide":3,
            "n_spoof":5,"eer_percent":20.0,"threshold":0.5,"loss":0.7,
            "scores_file":"scores/itw.txt"}"#;
        let named: NamedSplitResult = serde_json::from_str(json).unwrap();
        assert_eq!(named.name, "itw");
        assert_eq!(named.result.scores_file, "scores/itw.txt");
        let back: NamedSplitResult =
            serde_json::from_str(&serde_json::to_string(&named).unwrap()).unwrap();
        assert_eq!(back, named);
    }

    #[test]
    fn a_split_result_written_before_intervals_and_breakdowns_still_reads() {
        let old = r#"{"split":"eval","n_bonafide":100,"n_spoof":160,"eer_percent":12.5,
            "threshold":0.25,"loss":0.5,"scores_file":"scores/eval.txt"}"#;
        let split: SplitResult = serde_json::from_str(old).unwrap();
        assert_eq!(split.eer_ci, None);
        assert_eq!(split.bootstrap, None);
        assert!(split.breakdown.is_empty());
        // And none of the new keys is written when absent: old readers see the old shape.
        let written = serde_json::to_string(&split).unwrap();
        assert!(
            !written.contains("eer_ci") && !written.contains("breakdown"),
            "{written}"
        );

        let new = SplitResult {
            eer_ci: Some(PercentInterval {
                low_percent: 9.0,
                high_percent: 16.0,
            }),
            bootstrap: Some(BootstrapOptions::default()),
            breakdown: vec![SubsetEer {
                factor: "attack".into(),
                value: "A07".into(),
                n_bonafide: 100,
                n_spoof: 16,
                eer_percent: 3.0,
                eer_ci: None,
            }],
            ..split
        };
        let back: SplitResult =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
