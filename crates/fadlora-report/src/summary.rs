//! The per-run frame (`summary.csv`) and its aggregation over seeds.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use fadlora_run::layout::SUMMARY_FILE;
use fadlora_run::write_atomic;
use fadlora_run::LoraTarget;
use fadlora_run::RunRecord;
use fadlora_run::{Mode, Plan, PlannedRun};
use polars::prelude::*;

use crate::ReportError;

/// The columns of [`summary_frame`], in order.
pub const SUMMARY_COLUMNS: [&str; 26] = [
    "id",
    "group",
    "mode",
    "targets",
    "rank",
    "alpha",
    "layers",
    "crop_samples",
    "seed",
    "trainable_params",
    "total_params",
    "peak_mem_bytes",
    "memory_kind",
    "step_ms_median",
    "step_ms_p90",
    "train_utt_per_s",
    "eval_utt_per_s",
    "dev_eer_percent",
    "eval_eer_percent",
    "eval_min_tdcf",
    "best_epoch",
    "epochs_run",
    "wall_seconds",
    "backend",
    "device",
    "git_commit",
];

/// Sample rate every input length is quoted at.
pub(crate) const SAMPLE_RATE: f64 = 16_000.0;

/// One finished run, flattened.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub id: String,
    pub group: String,
    pub mode: Mode,
    pub targets: Option<Vec<LoraTarget>>,
    pub targets_label: String,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub layers: Option<Vec<usize>>,
    pub layers_label: String,
    pub probe_layer: Option<usize>,
    /// A DoRA run (mode LoRA).
    pub dora: bool,
    /// Experts per projection of a mixture-of-LoRA-experts run (mode LoRA).
    pub experts: Option<usize>,
    pub adapter_kind: Option<fadlora_run::AdapterKind>,
    pub adapter_size: Option<usize>,
    pub partial_layers: Option<fadlora_run::PartialLayers>,
    pub partial_count: Option<usize>,
    pub partial_feature_projection: bool,
    pub crop_samples: usize,
    pub seed: u64,
    pub trainable: usize,
    pub total: usize,
    pub peak_mem_bytes: Option<u64>,
    pub memory_kind: String,
    pub step_ms_median: Option<f64>,
    pub step_ms_p90: Option<f64>,
    pub train_utt_per_s: f64,
    pub eval_utt_per_s: f64,
    pub dev_eer: f64,
    pub eval_eer: Option<f64>,
    pub eval_min_tdcf: Option<f64>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub wall_seconds: f64,
    pub backend: String,
    pub device: String,
    pub git_commit: Option<String>,
}

impl RunRow {
    pub fn new(run: &PlannedRun, record: &RunRecord) -> RunRow {
        let axes = &run.axes;
        let lora = record.config.lora.as_ref().or(run.config.lora.as_ref());
        let alpha = match axes.mode {
            Mode::Full
            | Mode::Probe
            | Mode::Ia3
            | Mode::Adapter
            | Mode::Partial
            | Mode::LayerSum
            | Mode::Frozen => None,
            Mode::Lora => axes.alpha.or(lora.map(|l| l.alpha())),
        };
        RunRow {
            id: run.id.clone(),
            group: run.group.clone(),
            mode: axes.mode,
            targets: axes.targets.clone(),
            targets_label: axes.targets_label(),
            rank: axes.rank,
            alpha,
            layers: axes.layers.clone(),
            layers_label: axes.layers_label(),
            probe_layer: axes.probe_layer,
            dora: axes.dora,
            experts: axes.experts,
            adapter_kind: axes.adapter_kind,
            adapter_size: axes.adapter_size,
            partial_layers: axes.partial_layers,
            partial_count: axes.partial_count,
            partial_feature_projection: axes.partial_feature_projection,
            crop_samples: axes.crop_samples,
            seed: axes.seed,
            trainable: record.params.trainable,
            total: record.params.total,
            peak_mem_bytes: record.memory.peak_mem_bytes,
            memory_kind: record.memory.kind.clone(),
            step_ms_median: record.step_time.as_ref().map(|t| t.median_ms),
            step_ms_p90: record.step_time.as_ref().map(|t| t.p90_ms),
            train_utt_per_s: record.train_utt_per_s,
            eval_utt_per_s: record.eval_utt_per_s,
            dev_eer: record.dev.eer_percent,
            eval_eer: record.eval.as_ref().map(|e| e.eer_percent),
            eval_min_tdcf: record.eval.as_ref().and_then(|e| e.min_tdcf),
            best_epoch: record.best_epoch,
            epochs_run: record.epochs.len(),
            wall_seconds: record.wall_seconds,
            backend: record.backend.clone(),
            device: record.device.clone(),
            git_commit: record.git_commit.clone(),
        }
    }
}

pub(crate) fn run_rows(plan: &Plan) -> Vec<RunRow> {
    plan.finished()
        .iter()
        .map(|(run, record)| RunRow::new(run, record))
        .collect()
}

/// One row per finished run of `plan`, in plan order, with the columns of
/// [`SUMMARY_COLUMNS`]. `rank`, `alpha`, `peak_mem_bytes`, `step_ms_*`, `eval_eer_percent`
/// and `git_commit` are null where a run has no such value.
pub fn summary_frame(plan: &Plan) -> Result<DataFrame, ReportError> {
    frame_of_runs(&run_rows(plan)).map_err(|e| ReportError::table(&plan.dir.join(SUMMARY_FILE), e))
}

/// Writes `plan.dir/summary.csv` (through a temporary file, so a reader never sees a part of
/// it) and returns its path.
pub fn write_summary(plan: &Plan) -> Result<PathBuf, ReportError> {
    let path = plan.dir.join(SUMMARY_FILE);
    let mut frame = summary_frame(plan)?;
    let bytes = csv_bytes(&mut frame, &path)?;
    write_atomic(&path, &bytes)?;
    Ok(path)
}

pub(crate) fn csv_bytes(frame: &mut DataFrame, path: &Path) -> Result<Vec<u8>, ReportError> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(frame)
        .map_err(|e| ReportError::table(path, e))?;
    Ok(bytes)
}

fn u64s(values: impl Iterator<Item = usize>) -> Vec<u64> {
    values.map(|v| v as u64).collect()
}

pub(crate) fn frame_of_runs(rows: &[RunRow]) -> PolarsResult<DataFrame> {
    let s = |f: fn(&RunRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let f = |f: fn(&RunRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let of = |f: fn(&RunRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<Option<f64>>>();
    let mode: Vec<String> = rows.iter().map(|r| r.mode.to_string()).collect();
    let columns = vec![
        Column::new("id".into(), s(|r| &r.id)),
        Column::new("group".into(), s(|r| &r.group)),
        Column::new("mode".into(), mode),
        Column::new("targets".into(), s(|r| &r.targets_label)),
        Column::new(
            "rank".into(),
            rows.iter()
                .map(|r| r.rank.map(|v| v as u64))
                .collect::<Vec<_>>(),
        ),
        Column::new("alpha".into(), of(|r| r.alpha)),
        Column::new("layers".into(), s(|r| &r.layers_label)),
        Column::new(
            "crop_samples".into(),
            u64s(rows.iter().map(|r| r.crop_samples)),
        ),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        Column::new(
            "trainable_params".into(),
            u64s(rows.iter().map(|r| r.trainable)),
        ),
        Column::new("total_params".into(), u64s(rows.iter().map(|r| r.total))),
        Column::new(
            "peak_mem_bytes".into(),
            rows.iter().map(|r| r.peak_mem_bytes).collect::<Vec<_>>(),
        ),
        Column::new("memory_kind".into(), s(|r| &r.memory_kind)),
        Column::new("step_ms_median".into(), of(|r| r.step_ms_median)),
        Column::new("step_ms_p90".into(), of(|r| r.step_ms_p90)),
        Column::new("train_utt_per_s".into(), f(|r| r.train_utt_per_s)),
        Column::new("eval_utt_per_s".into(), f(|r| r.eval_utt_per_s)),
        Column::new("dev_eer_percent".into(), f(|r| r.dev_eer)),
        Column::new("eval_eer_percent".into(), of(|r| r.eval_eer)),
        Column::new("eval_min_tdcf".into(), of(|r| r.eval_min_tdcf)),
        Column::new("best_epoch".into(), u64s(rows.iter().map(|r| r.best_epoch))),
        Column::new("epochs_run".into(), u64s(rows.iter().map(|r| r.epochs_run))),
        Column::new("wall_seconds".into(), f(|r| r.wall_seconds)),
        Column::new("backend".into(), s(|r| &r.backend)),
        Column::new("device".into(), s(|r| &r.device)),
        Column::new(
            "git_commit".into(),
            rows.iter()
                .map(|r| r.git_commit.as_deref())
                .collect::<Vec<Option<&str>>>(),
        ),
    ];
    debug_assert_eq!(columns.len(), SUMMARY_COLUMNS.len());
    DataFrame::new(rows.len(), columns)
}

/// A group of runs (one configuration over seeds), aggregated.
#[derive(Debug, Clone)]
pub(crate) struct GroupRow {
    pub group: String,
    pub mode: Mode,
    pub targets: Option<Vec<LoraTarget>>,
    pub targets_label: String,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub layers: Option<Vec<usize>>,
    pub layers_label: String,
    pub probe_layer: Option<usize>,
    pub dora: bool,
    pub experts: Option<usize>,
    pub adapter_kind: Option<fadlora_run::AdapterKind>,
    pub adapter_size: Option<usize>,
    pub partial_layers: Option<fadlora_run::PartialLayers>,
    pub partial_count: Option<usize>,
    pub partial_feature_projection: bool,
    pub crop_samples: usize,
    pub n: usize,
    pub dev_mean: f64,
    pub dev_std: Option<f64>,
    pub eval_mean: Option<f64>,
    pub eval_std: Option<f64>,
    pub tdcf_mean: Option<f64>,
    pub tdcf_std: Option<f64>,
    pub trainable: f64,
    pub total: f64,
    pub peak_mem_bytes: Option<f64>,
    pub step_ms_median: Option<f64>,
    pub train_utt_per_s: f64,
    pub eval_utt_per_s: f64,
    /// Full fine-tuning's trainable parameters / this group's.
    pub reduction: Option<f64>,
}

impl GroupRow {
    pub fn crop_seconds(&self) -> f64 {
        self.crop_samples as f64 / SAMPLE_RATE
    }

    pub fn is_full(&self) -> bool {
        self.mode == Mode::Full
    }

    pub fn is_lora(&self) -> bool {
        self.mode == Mode::Lora
    }

    pub fn is_probe(&self) -> bool {
        self.mode == Mode::Probe
    }

    pub fn is_ia3(&self) -> bool {
        self.mode == Mode::Ia3
    }

    pub fn is_adapter(&self) -> bool {
        self.mode == Mode::Adapter
    }

    pub fn is_partial(&self) -> bool {
        self.mode == Mode::Partial
    }

    pub fn is_layer_sum(&self) -> bool {
        self.mode == Mode::LayerSum
    }

    /// The head alone on a frozen front end (the sweep's `sls` method).
    pub fn is_frozen(&self) -> bool {
        self.mode == Mode::Frozen
    }

    /// The marker of this group's LoRA-family points: an x for mixtures of experts.
    pub fn lora_marker(&self) -> crate::figures::Marker {
        if self.experts.is_some() {
            crate::figures::Marker::Cross
        } else {
            crate::figures::Marker::Circle
        }
    }

    /// `LoRA`, `DoRA` or `MoE-LoRA x<experts>`, for labels.
    pub fn adapter_name(&self) -> String {
        match self.experts {
            Some(k) => format!("MoE-LoRA x{k}"),
            None if self.dora => "DoRA".into(),
            None => "LoRA".into(),
        }
    }
}

/// Columns averaged per group.
const MEAN_COLUMNS: [&str; 9] = [
    "dev_eer_percent",
    "eval_eer_percent",
    "eval_min_tdcf",
    "trainable_params",
    "total_params",
    "peak_mem_bytes",
    "step_ms_median",
    "train_utt_per_s",
    "eval_utt_per_s",
];
/// Columns with a standard deviation over seeds.
const STD_COLUMNS: [&str; 3] = ["dev_eer_percent", "eval_eer_percent", "eval_min_tdcf"];

/// Mean, standard deviation (ddof 1) and count per `group`, groups in order of first
/// appearance. Columns: `group`, `<col>_mean`, `<col>_std`, `n`.
#[allow(deprecated)] // the eager group-by aggregations: this crate has no lazy engine
pub(crate) fn aggregate_frame(runs: &DataFrame) -> PolarsResult<DataFrame> {
    let mut out = runs
        .group_by_stable(["group"])?
        .select(MEAN_COLUMNS)
        .mean()?;
    let stds = runs
        .group_by_stable(["group"])?
        .select(STD_COLUMNS)
        .std(1)?;
    let counts = runs
        .group_by_stable(["group"])?
        .select(["dev_eer_percent"])
        .count()?;
    for other in [&stds, &counts] {
        if other.column("group")?.as_materialized_series()
            != out.column("group")?.as_materialized_series()
        {
            polars_bail!(ComputeError: "group order differs between aggregations");
        }
    }
    let mut extra: Vec<Column> = Vec::new();
    for name in STD_COLUMNS {
        // polars names it `<col>_agg_std`.
        let std = stds.column(&format!("{name}_agg_std"))?.clone();
        extra.push(std.with_name(format!("{name}_std").into()));
    }
    extra.push(
        counts
            .column("dev_eer_percent_count")?
            .clone()
            .with_name("n".into()),
    );
    out.hstack_mut(&extra)?;
    Ok(out)
}

fn value(frame: &DataFrame, name: &str, row: usize) -> PolarsResult<Option<f64>> {
    let column = frame.column(name)?.cast(&DataType::Float64)?;
    Ok(column.f64()?.get(row).filter(|v| v.is_finite()))
}

/// The groups of `rows`, aggregated with polars, sorted: full fine-tuning first, then LoRA by
/// targets, layers, input length, rank and alpha, then probes by layer and input length.
pub(crate) fn group_rows(rows: &[RunRow]) -> PolarsResult<Vec<GroupRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let frame = frame_of_runs(rows)?;
    let agg = aggregate_frame(&frame)?;
    let names = agg.column("group")?.str()?.clone();
    let mut groups = Vec::with_capacity(agg.height());
    for i in 0..agg.height() {
        let name = names.get(i).unwrap_or_default();
        let first = rows
            .iter()
            .find(|r| r.group == name)
            .expect("every aggregated group comes from a row");
        let mean = |col: &str| value(&agg, &format!("{col}_mean"), i);
        groups.push(GroupRow {
            group: name.to_string(),
            mode: first.mode,
            targets: first.targets.clone(),
            targets_label: first.targets_label.clone(),
            rank: first.rank,
            alpha: first.alpha,
            layers: first.layers.clone(),
            layers_label: first.layers_label.clone(),
            probe_layer: first.probe_layer,
            dora: first.dora,
            experts: first.experts,
            adapter_kind: first.adapter_kind,
            adapter_size: first.adapter_size,
            partial_layers: first.partial_layers,
            partial_count: first.partial_count,
            partial_feature_projection: first.partial_feature_projection,
            crop_samples: first.crop_samples,
            n: value(&agg, "n", i)?.unwrap_or(0.0) as usize,
            dev_mean: mean("dev_eer_percent")?.unwrap_or(f64::NAN),
            dev_std: value(&agg, "dev_eer_percent_std", i)?,
            eval_mean: mean("eval_eer_percent")?,
            eval_std: value(&agg, "eval_eer_percent_std", i)?,
            tdcf_mean: mean("eval_min_tdcf")?,
            tdcf_std: value(&agg, "eval_min_tdcf_std", i)?,
            trainable: mean("trainable_params")?.unwrap_or(f64::NAN),
            total: mean("total_params")?.unwrap_or(f64::NAN),
            peak_mem_bytes: mean("peak_mem_bytes")?,
            step_ms_median: mean("step_ms_median")?,
            train_utt_per_s: mean("train_utt_per_s")?.unwrap_or(f64::NAN),
            eval_utt_per_s: mean("eval_utt_per_s")?.unwrap_or(f64::NAN),
            reduction: None,
        });
    }
    groups.sort_by(compare_groups);
    let full_trainable = groups
        .iter()
        .find(|g| g.is_full())
        .map(|g| g.trainable)
        .filter(|t| *t > 0.0);
    for g in &mut groups {
        g.reduction = full_trainable
            .filter(|_| g.trainable > 0.0)
            .map(|full| full / g.trainable);
    }
    Ok(groups)
}

fn target_key(targets: &Option<Vec<LoraTarget>>) -> (usize, Vec<usize>) {
    match targets {
        None => (0, Vec::new()),
        Some(t) => (
            t.len(),
            t.iter()
                .map(|x| {
                    LoraTarget::ALL
                        .iter()
                        .position(|a| a == x)
                        .unwrap_or(usize::MAX)
                })
                .collect(),
        ),
    }
}

/// Full fine-tuning first, then LoRA, then probes (the order of [`Mode`]); then targets (fewer
/// first), layers (all first), the probed layer, input length, rank, alpha; the group name
/// breaks ties.
pub(crate) fn compare_groups(a: &GroupRow, b: &GroupRow) -> Ordering {
    a.mode
        .cmp(&b.mode)
        .then_with(|| target_key(&a.targets).cmp(&target_key(&b.targets)))
        .then_with(|| {
            (
                a.layers.is_some(),
                a.layers.as_ref().map_or(0, Vec::len),
                &a.layers,
            )
                .cmp(&(
                    b.layers.is_some(),
                    b.layers.as_ref().map_or(0, Vec::len),
                    &b.layers,
                ))
        })
        .then_with(|| a.probe_layer.cmp(&b.probe_layer))
        .then_with(|| a.crop_samples.cmp(&b.crop_samples))
        .then_with(|| a.rank.cmp(&b.rank))
        .then_with(|| a.alpha.unwrap_or(0.0).total_cmp(&b.alpha.unwrap_or(0.0)))
        .then_with(|| a.group.cmp(&b.group))
}

/// The per-group table as a frame (`report/summary.csv`), in the order of `groups`.
pub(crate) fn frame_of_groups(groups: &[GroupRow]) -> PolarsResult<DataFrame> {
    let s = |f: fn(&GroupRow) -> &str| groups.iter().map(f).collect::<Vec<&str>>();
    let f = |f: fn(&GroupRow) -> f64| groups.iter().map(f).collect::<Vec<f64>>();
    let of = |f: fn(&GroupRow) -> Option<f64>| groups.iter().map(f).collect::<Vec<Option<f64>>>();
    let columns = vec![
        Column::new("group".into(), s(|g| &g.group)),
        Column::new(
            "mode".into(),
            groups
                .iter()
                .map(|g| g.mode.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new("targets".into(), s(|g| &g.targets_label)),
        Column::new(
            "rank".into(),
            groups
                .iter()
                .map(|g| g.rank.map(|r| r as u64))
                .collect::<Vec<_>>(),
        ),
        Column::new("alpha".into(), of(|g| g.alpha)),
        Column::new("layers".into(), s(|g| &g.layers_label)),
        Column::new(
            "crop_samples".into(),
            u64s(groups.iter().map(|g| g.crop_samples)),
        ),
        Column::new("crop_seconds".into(), f(|g| g.crop_seconds())),
        Column::new("n_seeds".into(), u64s(groups.iter().map(|g| g.n))),
        Column::new("dev_eer_mean".into(), f(|g| g.dev_mean)),
        Column::new("dev_eer_std".into(), of(|g| g.dev_std)),
        Column::new("eval_eer_mean".into(), of(|g| g.eval_mean)),
        Column::new("eval_eer_std".into(), of(|g| g.eval_std)),
        Column::new("eval_min_tdcf_mean".into(), of(|g| g.tdcf_mean)),
        Column::new("eval_min_tdcf_std".into(), of(|g| g.tdcf_std)),
        Column::new("trainable_params".into(), f(|g| g.trainable)),
        Column::new("total_params".into(), f(|g| g.total)),
        Column::new("reduction_vs_full".into(), of(|g| g.reduction)),
        Column::new(
            "peak_mem_mib".into(),
            of(|g| g.peak_mem_bytes.map(|b| b / MIB)),
        ),
        Column::new("step_ms_median".into(), of(|g| g.step_ms_median)),
        Column::new("train_utt_per_s".into(), f(|g| g.train_utt_per_s)),
        Column::new("eval_utt_per_s".into(), f(|g| g.eval_utt_per_s)),
    ];
    DataFrame::new(groups.len(), columns)
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;
