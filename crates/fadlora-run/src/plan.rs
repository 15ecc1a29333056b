//! A sweep's plan (`plan.json`): its runs, their IDs and axes, and how far each has got.
//! See [`crate::layout`] for the results folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::write_atomic;
use crate::layout::{PLAN_FILE, PROGRESS_FILE, RECORD_FILE, RUN_CONFIG_FILE};
use crate::record::RunRecord;
use crate::vocab::{targets_label, AdapterKind, LoraTarget, Mode, PartialLayers};
use crate::{RunConfig, RunError};

/// Where a run sits on the sweep's axes. LoRA-only fields are `None` for full fine-tuning and
/// probes; `probe_layer` is set for probes only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAxes {
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<LoraTarget>>,
    /// Adapted encoder layers; `None` = every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// The hidden state a probe's head pools (`[probe] layer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_layer: Option<usize>,
    /// Weight-decomposed LoRA (DoRA) rather than plain LoRA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dora: bool,
    /// Experts per projection of a mixture of LoRA experts (`[lora.moe] experts`); `None` for
    /// one adapter per projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<usize>,
    /// Adapter layers' kind and width (`[adapter]`), for adapter runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_kind: Option<AdapterKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_size: Option<usize>,
    /// Partial fine-tuning's end of the encoder and layer count (`[partial]`), for partial
    /// runs only; `partial_feature_projection` when they also train the feature projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_layers: Option<PartialLayers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_count: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial_feature_projection: bool,
    pub crop_samples: usize,
    pub seed: u64,
}

impl RunAxes {
    /// `q+v`, `q+k+v+o+ffn_in+ffn_out`; `-` for full fine-tuning.
    pub fn targets_label(&self) -> String {
        match &self.targets {
            Some(t) => targets_label(t),
            None => "-".into(),
        }
    }

    /// `all`, or the layer indices joined by `,`; `-` for full fine-tuning; `L<k>` for a probe
    /// of hidden state `k`.
    pub fn layers_label(&self) -> String {
        match (self.mode, &self.layers) {
            (Mode::Full | Mode::Frozen, _) => "-".into(),
            (Mode::LayerSum, _) => "all".into(),
            (Mode::Partial, _) => match (self.partial_layers, self.partial_count) {
                (Some(end), Some(count)) => format!("{end} {count}"),
                _ => "-".into(),
            },
            (Mode::Probe, _) => match self.probe_layer {
                Some(layer) => format!("L{layer}"),
                None => "-".into(),
            },
            (Mode::Lora | Mode::Ia3 | Mode::Adapter, None) => "all".into(),
            (Mode::Lora | Mode::Ia3 | Mode::Adapter, Some(l)) => l
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// `<group>-s<seed>-<hash>`: the hash is taken over the run's configuration as written in
    /// the experiment (paths unresolved, output folder left out), so the ID stays put when the
    /// TOML grows new runs or the results folder moves, and changes when anything that shapes
    /// the run changes.
    pub id: String,
    /// The configuration without the seed (`lora-q+v-r4`, `full`, `probe-L4`): runs of one group are
    /// repetitions, which the report averages.
    pub group: String,
    pub axes: RunAxes,
    /// Resolved: absolute paths, `output_dir` = `<results>/<experiment>/<id>`.
    pub config: RunConfig,
}

/// The runs of one experiment TOML, as `plan.json` stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub experiment: String,
    #[serde(default)]
    pub description: String,
    /// The experiment TOML the plan was made from.
    pub source: PathBuf,
    /// `<results>/<experiment>`.
    pub dir: PathBuf,
    pub runs: Vec<PlannedRun>,
    /// Published figures the report prints beside the measured ones (the experiment's
    /// `[[reference.figures]]`). Absent from plans written before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishedFigure>,
}

/// A figure someone published for one configuration group of the experiment, with where it
/// comes from: the report sets it beside what the sweep measured for that group, never in
/// place of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedFigure {
    /// A run group of the experiment (`lora-q+v-r4`, `full`, ...): the runs it compares with.
    pub group: String,
    pub metric: PublishedMetric,
    pub value: f64,
    /// Where the number comes from, as a reader should be able to check it (paper and table,
    /// or "secondary source: ..." when the primary one could not be read).
    pub source: String,
    /// Anything that makes the comparison unequal (other back end, other recipe, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The measured quantities a published figure can be compared with; their names are the
/// columns of the report's `summary.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishedMetric {
    EvalEerPercent,
    DevEerPercent,
    EvalMinTdcf,
    TrainableParams,
}

impl PublishedMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishedMetric::EvalEerPercent => "eval_eer_percent",
            PublishedMetric::DevEerPercent => "dev_eer_percent",
            PublishedMetric::EvalMinTdcf => "eval_min_tdcf",
            PublishedMetric::TrainableParams => "trainable_params",
        }
    }

    /// Why `value` cannot be a figure of this metric, if it cannot.
    pub fn check(self, value: f64) -> Result<(), String> {
        let ok = match self {
            PublishedMetric::EvalEerPercent | PublishedMetric::DevEerPercent => {
                (0.0..=100.0).contains(&value)
            }
            PublishedMetric::EvalMinTdcf => value.is_finite() && value >= 0.0,
            PublishedMetric::TrainableParams => value.is_finite() && value >= 1.0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{value} is no {}: {}",
                self.as_str(),
                match self {
                    PublishedMetric::EvalEerPercent | PublishedMetric::DevEerPercent =>
                        "an EER in percent lies in [0, 100]",
                    PublishedMetric::EvalMinTdcf => "a min t-DCF is a finite number >= 0",
                    PublishedMetric::TrainableParams => "a parameter count is at least 1",
                }
            ))
        }
    }
}

/// How far a planned run has got, judged from its folder.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Pending,
    /// Interrupted after `epochs_done` checkpointed epochs; the next invocation resumes.
    Partial {
        epochs_done: usize,
    },
    Finished,
}

impl Plan {
    pub fn run_dir(&self, run: &PlannedRun) -> PathBuf {
        self.dir.join(&run.id)
    }

    /// Reads `<dir>/plan.json`. The plan's folder is `dir`, wherever the sweep wrote it: a
    /// results folder that was moved or copied still finds its runs.
    pub fn load(dir: &Path) -> Result<Plan, RunError> {
        let path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| RunError::io(&path, e))?;
        let mut plan: Plan = serde_json::from_str(&text).map_err(|e| RunError::Corrupt {
            path,
            message: e.to_string(),
        })?;
        plan.dir = dir.to_path_buf();
        Ok(plan)
    }

    /// Writes `plan.json` atomically.
    pub fn save(&self) -> Result<(), RunError> {
        let json = serde_json::to_string_pretty(self).expect("a plan always serialises");
        write_atomic(&self.dir.join(PLAN_FILE), json.as_bytes())
    }

    pub fn state(&self, run: &PlannedRun) -> RunState {
        let dir = self.run_dir(run);
        if read_record(&dir).is_some() {
            return RunState::Finished;
        }
        #[derive(Deserialize)]
        struct Progress {
            epochs_done: usize,
        }
        match std::fs::read_to_string(dir.join(PROGRESS_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<Progress>(&t).ok())
        {
            Some(p) => RunState::Partial {
                epochs_done: p.epochs_done,
            },
            None => RunState::Pending,
        }
    }

    /// The record of every finished run, in plan order.
    pub fn finished(&self) -> Vec<(&PlannedRun, RunRecord)> {
        self.runs
            .iter()
            .filter_map(|run| read_record(&self.run_dir(run)).map(|record| (run, record)))
            .collect()
    }

    /// Folders under [`Plan::dir`] that hold a run but are not in this plan (left by an earlier
    /// version of the experiment TOML). They are kept, and ignored by the summary and report.
    pub fn stray_run_dirs(&self) -> Vec<PathBuf> {
        let planned: BTreeMap<&str, ()> = self.runs.iter().map(|r| (r.id.as_str(), ())).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut stray: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(RUN_CONFIG_FILE).is_file())
            .filter(|e| !planned.contains_key(e.file_name().to_string_lossy().as_ref()))
            .map(|e| e.path())
            .collect();
        stray.sort();
        stray
    }
}

/// The run record in `dir`, if the run finished (a record that does not parse counts as
/// unfinished: the run is redone rather than reported wrongly).
pub fn read_record(dir: &Path) -> Option<RunRecord> {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}
