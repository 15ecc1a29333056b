//! `results/<experiment>/report/`: tables, figures and `report.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use fadlora_data::{Label, Split};
use fadlora_run::layout::PRETRAINING_RECORD_FILE;
use fadlora_run::PercentInterval;
use fadlora_run::RunRecord;
use fadlora_run::SplitResult;
use fadlora_run::{write_atomic, RunState};
use fadlora_run::{Mode, Plan, PlannedRun, PublishedFigure, PublishedMetric};
use plotters::style::RGBColor;

use crate::figures::{
    save_figure, BarPanel, BarsFigure, CurveLine, CurvePanel, CurvesFigure, DetData, DetFigure,
    HLine, Marker, Point, Series, XScale, XyFigure, ADAPTER_COLOR, FULL_COLORS, IA3_COLOR,
    LAYER_SUM_COLOR, PALETTE, PARTIAL_COLOR, PROBE_COLORS, SLS_COLOR,
};
use crate::stats::{self, Stats};
use crate::summary::{
    csv_bytes, frame_of_groups, frame_of_runs, group_rows, GroupRow, RunRow, MIB, SAMPLE_RATE,
};
use crate::table::{mean_std, opt, thousands, Align, Table};
use crate::ReportError;
use polars::prelude::{Column, DataFrame};

/// The report's folder inside `results/<experiment>/`.
pub use fadlora_run::layout::REPORT_DIR;

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `results/<experiment>/report`.
    pub dir: PathBuf,
    /// Every file written, in the order written; `report.md` last.
    pub files: Vec<PathBuf>,
    /// Figures skipped and why, and other remarks (also listed in `report.md`).
    pub notes: Vec<String>,
}

/// Writes `dir/report/` for the sweep in `dir` (= `results/<experiment>`, holding `plan.json`):
/// `runs.{md,csv,tex}`, `summary.{md,csv,tex}`, `breakdown.{md,csv,tex}` and
/// `paired.{md,csv,tex}` when there are attacks or pairs to show, `cross_corpus.{md,csv,tex}`
/// when some run has `[[eval_sets]]`, the figures (`eer_vs_rank`,
/// `eer_vs_params`, `eer_vs_memory`, `memory_time`, `det`, `learning_curves`, and `eer_vs_length` when the input
/// length varies; PNG and SVG each) and `report.md`. Tables are always written, even with no finished run; a figure that makes
/// no sense for the runs at hand is skipped with a note.
pub fn write_report(dir: &Path) -> Result<ReportFiles, ReportError> {
    let plan = Plan::load(dir)?;
    let out = dir.join(REPORT_DIR);
    std::fs::create_dir_all(&out).map_err(|e| ReportError::io(&out, e))?;
    // Unlike a sweep, a report takes no lock: two reports of one folder at once could remove
    // each other's temporaries and fail a write: run one report per folder at a time.
    fadlora_run::fs::remove_stale_temporaries(&out);
    let finished = plan.finished();
    let rows: Vec<RunRow> = finished
        .iter()
        .map(|(run, record)| RunRow::new(run, record))
        .collect();
    let groups = group_rows(&rows).map_err(|e| ReportError::table(&out.join("summary.csv"), e))?;
    let mut files = Vec::new();
    let mut notes = Vec::new();

    let metric = Metric::choose(&rows);
    let mut stats = stats::compute(&plan, &finished, metric == Metric::Eval);
    // The paired table in the summary's group order, seeds within a group.
    let group_order = |g: &str| groups.iter().position(|x| x.group == g);
    stats
        .paired
        .sort_by_key(|p| (group_order(&p.group), p.seed));
    notes.extend(stats.notes.iter().cloned());
    let mut tables = write_tables(&out, &rows, &groups, &stats, metric, &mut files)?;
    if let Some(cross) = cross_corpus(&finished, &rows, &groups) {
        let csv = out.join("cross_corpus.csv");
        let mut frame = cross.frame().map_err(|e| ReportError::table(&csv, e))?;
        write(&csv, &csv_bytes(&mut frame, &csv)?, &mut files)?;
        let table = cross.table();
        write(
            &out.join("cross_corpus.md"),
            table.markdown().as_bytes(),
            &mut files,
        )?;
        write(
            &out.join("cross_corpus.tex"),
            table.latex().as_bytes(),
            &mut files,
        )?;
        tables.cross_corpus = Some((table, cross.trials_note()));
    }
    if !plan.published.is_empty() {
        let table = published_table(&plan.published, &groups);
        write(
            &out.join("published.md"),
            table.markdown().as_bytes(),
            &mut files,
        )?;
        write(
            &out.join("published.tex"),
            table.latex().as_bytes(),
            &mut files,
        )?;
        tables.published = Some(table);
    }
    let figures = draw_figures(
        &out, &plan, &finished, &rows, &groups, metric, &mut files, &mut notes,
    )?;

    let stray = plan.stray_run_dirs();
    if !stray.is_empty() {
        notes.push(format!(
            "{} in `{}` not in the current plan ignored: {}.",
            count(stray.len(), "run folder"),
            plan.dir.display(),
            stray
                .iter()
                .map(|p| format!("`{}`", p.file_name().unwrap_or_default().to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let md = report_markdown(
        &plan,
        &MarkdownInputs {
            finished: &finished,
            rows: &rows,
            groups: &groups,
            metric,
            tables: &tables,
            stats: &stats,
            figures: &figures,
            notes: &notes,
        },
    );
    write(&out.join("report.md"), md.as_bytes(), &mut files)?;
    Ok(ReportFiles {
        dir: out,
        files,
        notes,
    })
}

/// The tables `report.md` shows.
struct Tables {
    summary: Table,
    /// Absent when the experiment lists no published figure.
    published: Option<Table>,
    /// Absent when no run's protocol names an attack or condition.
    breakdown: Option<Table>,
    /// Absent without a LoRA or probe run paired with full fine-tuning of its seed.
    paired: Option<Table>,
    /// Absent when no run has `[[eval_sets]]`: the table and its trial-count note.
    cross_corpus: Option<(Table, String)>,
}

/// `runs.{csv,md,tex}`, `summary.{csv,md,tex}`, and where there is something to show
/// `breakdown.{csv,md,tex}` and `paired.{csv,md,tex}`.
fn write_tables(
    out: &Path,
    rows: &[RunRow],
    groups: &[GroupRow],
    stats: &Stats,
    metric: Metric,
    files: &mut Vec<PathBuf>,
) -> Result<Tables, ReportError> {
    let runs_csv = out.join("runs.csv");
    let mut frame = frame_of_runs(rows).map_err(|e| ReportError::table(&runs_csv, e))?;
    write(&runs_csv, &csv_bytes(&mut frame, &runs_csv)?, files)?;
    let runs = runs_table(rows, groups, stats, metric);
    write(&out.join("runs.md"), runs.markdown().as_bytes(), files)?;
    write(&out.join("runs.tex"), runs.latex().as_bytes(), files)?;
    let summary_csv = out.join("summary.csv");
    let mut frame = frame_of_groups(groups)
        .and_then(|f| with_pooled_columns(f, groups, stats))
        .map_err(|e| ReportError::table(&summary_csv, e))?;
    write(&summary_csv, &csv_bytes(&mut frame, &summary_csv)?, files)?;
    let summary = summary_table(groups, stats, metric);
    write(
        &out.join("summary.md"),
        summary.markdown().as_bytes(),
        files,
    )?;
    write(&out.join("summary.tex"), summary.latex().as_bytes(), files)?;

    let breakdown = if stats.runs.iter().any(|r| !r.breakdown.is_empty()) {
        let csv = out.join("breakdown.csv");
        let mut frame = breakdown_frame(rows, stats).map_err(|e| ReportError::table(&csv, e))?;
        write(&csv, &csv_bytes(&mut frame, &csv)?, files)?;
        let table = breakdown_table(rows, groups, stats);
        write(
            &out.join("breakdown.md"),
            table.markdown().as_bytes(),
            files,
        )?;
        write(&out.join("breakdown.tex"), table.latex().as_bytes(), files)?;
        Some(table)
    } else {
        None
    };
    let paired = if stats.paired.is_empty() {
        None
    } else {
        let csv = out.join("paired.csv");
        let mut frame = paired_frame(stats).map_err(|e| ReportError::table(&csv, e))?;
        write(&csv, &csv_bytes(&mut frame, &csv)?, files)?;
        let table = paired_table(stats);
        write(&out.join("paired.md"), table.markdown().as_bytes(), files)?;
        write(&out.join("paired.tex"), table.latex().as_bytes(), files)?;
        Some(table)
    };
    Ok(Tables {
        summary,
        published: None,
        breakdown,
        paired,
        cross_corpus: None,
    })
}

/// The measured value of `metric` for a group, as the summary table gives it: mean ± sample
/// std over seeds, with the number of seeds.
fn measured_cell(metric: PublishedMetric, group: Option<&GroupRow>) -> String {
    let Some(g) = group else {
        return "no finished run".into();
    };
    let cell = match metric {
        PublishedMetric::EvalEerPercent => mean_std(g.eval_mean, g.eval_std, 2),
        PublishedMetric::DevEerPercent => mean_std(Some(g.dev_mean), g.dev_std, 2),
        PublishedMetric::EvalMinTdcf => mean_std(g.tdcf_mean, g.tdcf_std, 4),
        // Every seed of a group trains the same parameters.
        PublishedMetric::TrainableParams => return thousands(g.trainable.round() as u64),
    };
    format!("{cell} (n = {})", g.n)
}

fn published_cell(metric: PublishedMetric, value: f64) -> String {
    match metric {
        PublishedMetric::EvalEerPercent | PublishedMetric::DevEerPercent => format!("{value:.2}"),
        PublishedMetric::EvalMinTdcf => format!("{value:.4}"),
        PublishedMetric::TrainableParams => thousands(value.round() as u64),
    }
}

/// Each published figure beside what this sweep measured for its group.
fn published_table(figures: &[PublishedFigure], groups: &[GroupRow]) -> Table {
    let mut table = Table::new(&[
        ("Group", Align::Left),
        ("Metric", Align::Left),
        ("Published", Align::Right),
        ("Measured here", Align::Right),
        ("Source", Align::Left),
        ("Note", Align::Left),
    ]);
    for f in figures {
        let group = groups.iter().find(|g| g.group == f.group);
        table.push(vec![
            f.group.clone(),
            f.metric.as_str().into(),
            published_cell(f.metric, f.value),
            measured_cell(f.metric, group),
            f.source.clone(),
            f.note.clone().unwrap_or_default(),
        ]);
    }
    table
}

/// Draws every figure that makes sense for the finished runs (PNG and SVG) and says why each
/// other one was skipped; returns `(stem, title)` of those drawn.
#[allow(clippy::too_many_arguments)]
fn draw_figures(
    out: &Path,
    plan: &Plan,
    finished: &[(&PlannedRun, RunRecord)],
    rows: &[RunRow],
    groups: &[GroupRow],
    metric: Metric,
    files: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
) -> Result<Vec<(&'static str, &'static str)>, ReportError> {
    let style = SeriesStyle::new(groups);
    let mut figures: Vec<(&'static str, &'static str)> = Vec::new();
    let mut figure = |stem: &'static str,
                      title: &'static str,
                      made: Result<Vec<PathBuf>, String>,
                      files: &mut Vec<PathBuf>,
                      notes: &mut Vec<String>| {
        match made {
            Ok(paths) => {
                files.extend(paths);
                figures.push((stem, title));
            }
            Err(why) => notes.push(format!("`{stem}` not drawn: {why}.")),
        }
    };
    let made = eer_vs_rank(groups, metric, &style)
        .map(|fig| save_figure(&fig, out, "eer_vs_rank"))
        .transpose()?
        .ok_or_else(|| "no finished LoRA run".to_string());
    figure("eer_vs_rank", "EER vs LoRA rank", made, files, notes);

    let made = if groups.len() < 2 {
        Err(format!(
            "it compares configurations, and {} finished",
            count(groups.len(), "configuration")
        ))
    } else {
        Ok(save_figure(
            &eer_vs_params(groups, metric, &style),
            out,
            "eer_vs_params",
        )?)
    };
    figure(
        "eer_vs_params",
        "EER vs trainable parameters",
        made,
        files,
        notes,
    );

    let made = eer_vs_memory(groups, metric, &style)
        .map(|fig| save_figure(&fig, out, "eer_vs_memory"))
        .transpose()?
        .ok_or_else(|| "fewer than two configurations measured their peak memory".to_string());
    figure("eer_vs_memory", "EER vs peak memory", made, files, notes);

    let made = memory_time(groups, &style)
        .map(|fig| save_figure(&fig, out, "memory_time"))
        .transpose()?
        .ok_or_else(|| "no finished run measured memory or step time".to_string());
    figure(
        "memory_time",
        "Peak memory and step time",
        made,
        files,
        notes,
    );

    let made = match det_figure(plan, finished, rows) {
        Ok(fig) => Ok(save_figure(&fig, out, "det")?),
        Err(why) => Err(why),
    };
    figure("det", "DET curves", made, files, notes);

    let made = learning_curves(finished, groups, &style)
        .map(|fig| save_figure(&fig, out, "learning_curves"))
        .transpose()?
        .ok_or_else(|| "no finished run logged an epoch".to_string());
    figure("learning_curves", "Learning curves", made, files, notes);

    let crops: BTreeSet<usize> = groups.iter().map(|g| g.crop_samples).collect();
    if crops.len() > 1 {
        let fig = eer_vs_length(groups, metric, &style);
        let made = Ok(save_figure(&fig, out, "eer_vs_length")?);
        figure("eer_vs_length", "EER vs input length", made, files, notes);
    }

    Ok(figures)
}

fn write(path: &Path, bytes: &[u8], files: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    write_atomic(path, bytes)?;
    files.push(path.to_path_buf());
    Ok(())
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

// ---------------------------------------------------------------------------------------------
// Tables

fn input_cell(crop_samples: usize) -> String {
    format!(
        "{} ({:.2} s)",
        crop_samples,
        crop_samples as f64 / SAMPLE_RATE
    )
}

fn reduction_cell(reduction: Option<f64>) -> String {
    reduction.map(|r| format!("{r:.1}x")).unwrap_or_default()
}

fn rank_cell(rank: Option<usize>) -> String {
    rank.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
}

fn alpha_cell(alpha: Option<f64>) -> String {
    alpha
        .map(|a| crate::figures::trim_number(a, 3))
        .unwrap_or_else(|| "-".into())
}

fn mib(bytes: Option<f64>) -> String {
    opt(bytes.map(|b| b / MIB), 1)
}

const CONFIG_HEADERS: [(&str, Align); 6] = [
    ("Mode", Align::Left),
    ("Targets", Align::Left),
    ("Rank", Align::Right),
    ("Alpha", Align::Right),
    ("Layers", Align::Left),
    ("Input samples (s)", Align::Right),
];

/// The cells under [`CONFIG_HEADERS`], for a run or a group.
fn config_cells(
    mode: Mode,
    targets_label: &str,
    rank: Option<usize>,
    alpha: Option<f64>,
    layers_label: &str,
    crop_samples: usize,
) -> [String; 6] {
    [
        mode.to_string(),
        targets_label.to_string(),
        rank_cell(rank),
        alpha_cell(alpha),
        layers_label.to_string(),
        input_cell(crop_samples),
    ]
}

const RESOURCE_HEADERS: [(&str, Align); 6] = [
    ("Trainable params", Align::Right),
    ("Reduction vs full", Align::Right),
    ("Peak memory MiB", Align::Right),
    ("Median step ms", Align::Right),
    ("Train utt/s", Align::Right),
    ("Eval utt/s", Align::Right),
];

fn summary_table(groups: &[GroupRow], stats: &Stats, metric: Metric) -> Table {
    let pooled_header = format!("{} EER % pooled seeds", cap(metric.name()));
    let trials_header = format!("{} bona fide / spoof", cap(metric.name()));
    let mut headers = vec![("Group", Align::Left)];
    headers.extend(CONFIG_HEADERS);
    headers.extend([
        ("Seeds", Align::Right),
        ("Dev EER %", Align::Right),
        ("Eval EER %", Align::Right),
        (pooled_header.as_str(), Align::Right),
        (trials_header.as_str(), Align::Right),
    ]);
    // Only runs given the organisers' ASV scores have a min t-DCF.
    let tdcf = groups.iter().any(|g| g.tdcf_mean.is_some());
    if tdcf {
        headers.push(("Eval min t-DCF", Align::Right));
    }
    headers.extend(RESOURCE_HEADERS);
    let mut table = Table::new(&headers);
    for g in groups {
        let mut cells = vec![g.group.clone()];
        cells.extend(config_cells(
            g.mode,
            &g.targets_label,
            g.rank,
            g.alpha,
            &g.layers_label,
            g.crop_samples,
        ));
        cells.extend([
            g.n.to_string(),
            mean_std(Some(g.dev_mean), g.dev_std, 2),
            mean_std(g.eval_mean, g.eval_std, 2),
            pooled_cell(
                stats.pooled.get(&g.group).copied(),
                stats.pooled_ci.get(&g.group).copied(),
            ),
            trials_cell(stats.group_trials.get(&g.group).copied()),
        ]);
        if tdcf {
            cells.push(mean_std(g.tdcf_mean, g.tdcf_std, 4));
        }
        cells.extend([
            thousands(g.trainable.round() as u64),
            reduction_cell(g.reduction),
            mib(g.peak_mem_bytes),
            opt(g.step_ms_median, 1),
            opt(Some(g.train_utt_per_s), 1),
            opt(Some(g.eval_utt_per_s), 1),
        ]);
        table.push(cells);
    }
    table
}

fn runs_table(rows: &[RunRow], groups: &[GroupRow], stats: &Stats, metric: Metric) -> Table {
    let ci_header = format!("{} EER 95 % CI", cap(metric.name()));
    let trials_header = format!("{} bona fide / spoof", cap(metric.name()));
    let full = groups
        .iter()
        .find(|g| g.is_full())
        .map(|g| g.trainable)
        .filter(|t| *t > 0.0);
    let mut headers = vec![("Run", Align::Left), ("Group", Align::Left)];
    headers.extend(CONFIG_HEADERS);
    headers.extend([
        ("Seed", Align::Right),
        ("Dev EER %", Align::Right),
        ("Eval EER %", Align::Right),
        (ci_header.as_str(), Align::Right),
        (trials_header.as_str(), Align::Right),
    ]);
    let tdcf = rows.iter().any(|r| r.eval_min_tdcf.is_some());
    if tdcf {
        headers.push(("Eval min t-DCF", Align::Right));
    }
    headers.push(("Best epoch", Align::Right));
    headers.extend(RESOURCE_HEADERS);
    let mut table = Table::new(&headers);
    for (r, s) in rows.iter().zip(&stats.runs) {
        let reduction = full
            .filter(|_| r.trainable > 0)
            .map(|f| f / r.trainable as f64);
        let mut cells = vec![r.id.clone(), r.group.clone()];
        cells.extend(config_cells(
            r.mode,
            &r.targets_label,
            r.rank,
            r.alpha,
            &r.layers_label,
            r.crop_samples,
        ));
        cells.extend([
            r.seed.to_string(),
            format!("{:.2}", r.dev_eer),
            opt(r.eval_eer, 2),
            ci_cell(s.eer_ci),
            trials_cell(Some((s.n_bonafide, s.n_spoof))),
        ]);
        if tdcf {
            cells.push(opt(r.eval_min_tdcf, 4));
        }
        cells.extend([
            format!("{} of {}", r.best_epoch, r.epochs_run),
            thousands(r.trainable as u64),
            reduction_cell(reduction),
            mib(r.peak_mem_bytes.map(|b| b as f64)),
            opt(r.step_ms_median, 1),
            opt(Some(r.train_utt_per_s), 1),
            opt(Some(r.eval_utt_per_s), 1),
        ]);
        table.push(cells);
    }
    table
}

/// `[9.50, 15.25]`; `-` when there is none.
fn ci_cell(ci: Option<PercentInterval>) -> String {
    match ci {
        Some(c) => format!("[{:.2}, {:.2}]", c.low_percent, c.high_percent),
        None => "-".into(),
    }
}

/// `16.29 [10.12, 23.45]`: the pooled-seed EER and its interval.
fn pooled_cell(eer: Option<f64>, ci: Option<PercentInterval>) -> String {
    match (eer, ci) {
        (Some(e), Some(_)) => format!("{e:.2} {}", ci_cell(ci)),
        (e, _) => opt(e, 2),
    }
}

/// `100 / 160`.
fn trials_cell(trials: Option<(usize, usize)>) -> String {
    match trials {
        Some((b, s)) => format!("{b} / {s}"),
        None => "-".into(),
    }
}

/// `summary.csv` plus the pooled-seed EER and the trial counts of each group.
fn with_pooled_columns(
    mut frame: DataFrame,
    groups: &[GroupRow],
    stats: &Stats,
) -> polars::prelude::PolarsResult<DataFrame> {
    let pooled: Vec<Option<f64>> = groups
        .iter()
        .map(|g| stats.pooled.get(&g.group).copied())
        .collect();
    let pooled_ci = |bound: fn(&PercentInterval) -> f64| -> Vec<Option<f64>> {
        groups
            .iter()
            .map(|g| stats.pooled_ci.get(&g.group).map(bound))
            .collect()
    };
    let trials = |pick: fn((usize, usize)) -> usize| -> Vec<Option<u64>> {
        groups
            .iter()
            .map(|g| stats.group_trials.get(&g.group).map(|t| pick(*t) as u64))
            .collect()
    };
    frame.hstack_mut(&[
        Column::new("pooled_eer_percent".into(), pooled),
        Column::new(
            "pooled_eer_ci_low_percent".into(),
            pooled_ci(|c| c.low_percent),
        ),
        Column::new(
            "pooled_eer_ci_high_percent".into(),
            pooled_ci(|c| c.high_percent),
        ),
        Column::new("n_bonafide".into(), trials(|t| t.0)),
        Column::new("n_spoof".into(), trials(|t| t.1)),
    ])?;
    Ok(frame)
}

/// One line of `breakdown.csv`.
struct BreakdownLine<'a> {
    run: &'a RunRow,
    split: &'a str,
    factor: &'a str,
    value: &'a str,
    n_bonafide: usize,
    n_spoof: usize,
    eer_percent: f64,
    eer_ci: Option<PercentInterval>,
}

/// Each run's whole split (factor and value `all`) and every attack and condition, long.
fn breakdown_frame(rows: &[RunRow], stats: &Stats) -> polars::prelude::PolarsResult<DataFrame> {
    let mut lines = Vec::new();
    for (run, s) in rows.iter().zip(&stats.runs) {
        lines.push(BreakdownLine {
            run,
            split: &s.split,
            factor: "all",
            value: "all",
            n_bonafide: s.n_bonafide,
            n_spoof: s.n_spoof,
            eer_percent: s.eer_percent,
            eer_ci: s.eer_ci,
        });
        lines.extend(s.breakdown.iter().map(|e| BreakdownLine {
            run,
            split: &s.split,
            factor: &e.factor,
            value: &e.value,
            n_bonafide: e.n_bonafide,
            n_spoof: e.n_spoof,
            eer_percent: e.eer_percent,
            eer_ci: e.eer_ci,
        }));
    }
    let text = |f: for<'l> fn(&'l BreakdownLine<'l>) -> &'l str| {
        lines.iter().map(f).collect::<Vec<&str>>()
    };
    let count =
        |f: fn(&BreakdownLine) -> usize| lines.iter().map(|l| f(l) as u64).collect::<Vec<u64>>();
    let ci = |f: fn(&PercentInterval) -> f64| {
        lines
            .iter()
            .map(|l| l.eer_ci.as_ref().map(f))
            .collect::<Vec<Option<f64>>>()
    };
    DataFrame::new(
        lines.len(),
        vec![
            Column::new("id".into(), text(|l| &l.run.id)),
            Column::new("group".into(), text(|l| &l.run.group)),
            Column::new(
                "seed".into(),
                lines.iter().map(|l| l.run.seed).collect::<Vec<u64>>(),
            ),
            Column::new("split".into(), text(|l| l.split)),
            Column::new("factor".into(), text(|l| l.factor)),
            Column::new("value".into(), text(|l| l.value)),
            Column::new("n_bonafide".into(), count(|l| l.n_bonafide)),
            Column::new("n_spoof".into(), count(|l| l.n_spoof)),
            Column::new(
                "eer_percent".into(),
                lines.iter().map(|l| l.eer_percent).collect::<Vec<f64>>(),
            ),
            Column::new("ci_low_percent".into(), ci(|c| c.low_percent)),
            Column::new("ci_high_percent".into(), ci(|c| c.high_percent)),
        ],
    )
}

/// One seed's EER (percent) and its interval.
type SeedEer = (f64, Option<PercentInterval>);

/// Mean ± sample std over a group's seeds; one seed shows its EER with its 95 % interval.
fn seeds_cell(values: &[SeedEer]) -> String {
    match values {
        [] => "-".into(),
        [(eer, ci)] => match ci {
            Some(_) => format!("{eer:.2} {}", ci_cell(*ci)),
            None => format!("{eer:.2}"),
        },
        _ => {
            let n = values.len() as f64;
            let mean = values.iter().map(|v| v.0).sum::<f64>() / n;
            let var = values.iter().map(|v| (v.0 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            mean_std(Some(mean), Some(var.sqrt()), 2)
        }
    }
}

/// One row per attack and condition (and one for the whole split), one column per group.
fn breakdown_table(rows: &[RunRow], groups: &[GroupRow], stats: &Stats) -> Table {
    // (factor order, value) -> (factor, bona fide, spoof) of the first run that has it.
    let mut keys: BTreeMap<(usize, String), (String, usize, usize)> = BTreeMap::new();
    for s in &stats.runs {
        for e in &s.breakdown {
            let order = fadlora_run::stats::FACTORS
                .iter()
                .position(|f| *f == e.factor)
                .unwrap_or(usize::MAX);
            keys.entry((order, e.value.clone())).or_insert((
                e.factor.clone(),
                e.n_bonafide,
                e.n_spoof,
            ));
        }
    }
    let split = stats.runs.first().map_or("eval", |s| s.split.as_str());
    let mut headers: Vec<(String, Align)> = vec![
        ("Factor".into(), Align::Left),
        ("Value".into(), Align::Left),
        ("Bona fide".into(), Align::Right),
        ("Spoof".into(), Align::Right),
    ];
    headers.extend(groups.iter().map(|g| (g.group.clone(), Align::Right)));
    let header_refs: Vec<(&str, Align)> = headers.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let mut table = Table::new(&header_refs);
    let of_group = |group: &str, pick: &dyn Fn(&stats::RunStats) -> Option<SeedEer>| {
        let values: Vec<SeedEer> = rows
            .iter()
            .zip(&stats.runs)
            .filter(|(r, _)| r.group == group)
            .filter_map(|(_, s)| pick(s))
            .collect();
        seeds_cell(&values)
    };
    let (nb, ns) = stats
        .runs
        .first()
        .map_or((0, 0), |s| (s.n_bonafide, s.n_spoof));
    let mut cells = vec![
        "all".to_string(),
        format!("all {split} trials"),
        nb.to_string(),
        ns.to_string(),
    ];
    for g in groups {
        cells.push(of_group(&g.group, &|s| Some((s.eer_percent, s.eer_ci))));
    }
    table.push(cells);
    for ((_, value), (factor, nb, ns)) in &keys {
        let mut cells = vec![
            factor.clone(),
            value.clone(),
            nb.to_string(),
            ns.to_string(),
        ];
        for g in groups {
            cells.push(of_group(&g.group, &|s| {
                s.breakdown
                    .iter()
                    .find(|e| &e.factor == factor && &e.value == value)
                    .map(|e| (e.eer_percent, e.eer_ci))
            }));
        }
        table.push(cells);
    }
    table
}

/// One column of the cross-corpus table: the dataset's eval split (`extra: false`) or one
/// `[[eval_sets]]` entry, with the trial counts of the first run that has it.
struct CorpusSet {
    name: String,
    extra: bool,
    dataset: String,
    n_bonafide: usize,
    n_spoof: usize,
    /// Some run scored a different number of trials (another `max_per_class`, another list).
    counts_vary: bool,
}

/// The cross-corpus table's content: per group and set, the seeds' EERs.
struct CrossCorpus {
    sets: Vec<CorpusSet>,
    /// `cells[group][set]`: one entry per finished run of the group that has the set.
    cells: Vec<(String, Vec<Vec<SeedEer>>)>,
}

/// The eval split and every extra set of `record`, as (name, extra, dataset, result).
fn evaluated_sets(record: &RunRecord) -> Vec<(&str, bool, &str, &SplitResult)> {
    let main = record.eval.as_ref().map(|e| {
        (
            e.split.as_str(),
            false,
            record.config.data.dataset.as_str(),
            e,
        )
    });
    main.into_iter()
        .chain(
            record
                .extra_evals
                .iter()
                .map(|x| (x.name.as_str(), true, x.dataset.as_str(), &x.result)),
        )
        .collect()
}

/// `None` unless some finished run has `[[eval_sets]]`.
fn cross_corpus(
    finished: &[(&PlannedRun, RunRecord)],
    rows: &[RunRow],
    groups: &[GroupRow],
) -> Option<CrossCorpus> {
    if finished.iter().all(|(_, r)| r.extra_evals.is_empty()) {
        return None;
    }
    let mut sets: Vec<CorpusSet> = Vec::new();
    // The main split first, whatever order runs list their sets in.
    for main_first in [false, true] {
        for (_, record) in finished {
            for (name, extra, dataset, result) in evaluated_sets(record) {
                if extra != main_first {
                    continue;
                }
                match sets.iter_mut().find(|s| s.name == name && s.extra == extra) {
                    Some(set) => {
                        set.counts_vary |=
                            (set.n_bonafide, set.n_spoof) != (result.n_bonafide, result.n_spoof)
                    }
                    None => sets.push(CorpusSet {
                        name: name.to_string(),
                        extra,
                        dataset: dataset.to_string(),
                        n_bonafide: result.n_bonafide,
                        n_spoof: result.n_spoof,
                        counts_vary: false,
                    }),
                }
            }
        }
    }
    let cells = groups
        .iter()
        .map(|g| {
            let per_set = sets
                .iter()
                .map(|set| {
                    rows.iter()
                        .zip(finished)
                        .filter(|(row, _)| row.group == g.group)
                        .filter_map(|(_, (_, record))| {
                            evaluated_sets(record)
                                .into_iter()
                                .find(|(name, extra, ..)| *name == set.name && *extra == set.extra)
                                .map(|(.., r)| (r.eer_percent, r.eer_ci))
                        })
                        .collect()
                })
                .collect();
            (g.group.clone(), per_set)
        })
        .collect();
    Some(CrossCorpus { sets, cells })
}

impl CrossCorpus {
    fn table(&self) -> Table {
        let mut headers: Vec<(&str, Align)> = vec![("Group", Align::Left)];
        headers.extend(self.sets.iter().map(|s| (s.name.as_str(), Align::Right)));
        let mut table = Table::new(&headers);
        for (group, per_set) in &self.cells {
            let mut row = vec![group.clone()];
            row.extend(per_set.iter().map(|values| seeds_cell(values)));
            table.push(row);
        }
        table
    }

    /// `eval 20 / 40; itw 1,000 / 2,000`, counts that differ between runs marked as such.
    fn trials_note(&self) -> String {
        self.sets
            .iter()
            .map(|s| {
                format!(
                    "{} {} / {}{}",
                    s.name,
                    thousands(s.n_bonafide as u64),
                    thousands(s.n_spoof as u64),
                    if s.counts_vary {
                        " (first run; others differ)"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One line per group and set: mean and sample std over seeds (std empty for one seed).
    fn frame(&self) -> polars::prelude::PolarsResult<DataFrame> {
        let (mut group, mut set, mut kind, mut dataset) = (vec![], vec![], vec![], vec![]);
        let (mut seeds, mut mean, mut std) = (vec![], vec![], vec![]);
        let (mut bona, mut spoof) = (vec![], vec![]);
        for (g, per_set) in &self.cells {
            for (s, values) in self.sets.iter().zip(per_set) {
                let n = values.len() as f64;
                let m = (!values.is_empty()).then(|| values.iter().map(|v| v.0).sum::<f64>() / n);
                let sd = m.filter(|_| values.len() > 1).map(|m| {
                    (values.iter().map(|v| (v.0 - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                });
                group.push(g.as_str());
                set.push(s.name.as_str());
                kind.push(if s.extra { "eval_set" } else { "eval_split" });
                dataset.push(s.dataset.as_str());
                seeds.push(values.len() as u64);
                mean.push(m);
                std.push(sd);
                bona.push(s.n_bonafide as u64);
                spoof.push(s.n_spoof as u64);
            }
        }
        DataFrame::new(
            group.len(),
            vec![
                Column::new("group".into(), group),
                Column::new("set".into(), set),
                Column::new("kind".into(), kind),
                Column::new("dataset".into(), dataset),
                Column::new("n_seeds".into(), seeds),
                Column::new("eer_mean_percent".into(), mean),
                Column::new("eer_std_percent".into(), std),
                Column::new("n_bonafide".into(), bona),
                Column::new("n_spoof".into(), spoof),
            ],
        )
    }
}

fn paired_frame(stats: &Stats) -> polars::prelude::PolarsResult<DataFrame> {
    let p = &stats.paired;
    let s = |f: fn(&stats::Paired) -> &str| p.iter().map(f).collect::<Vec<&str>>();
    let f = |f: fn(&stats::Paired) -> f64| p.iter().map(f).collect::<Vec<f64>>();
    let u = |f: fn(&stats::Paired) -> u64| p.iter().map(f).collect::<Vec<u64>>();
    DataFrame::new(
        p.len(),
        vec![
            Column::new("group".into(), s(|x| &x.group)),
            Column::new("full_group".into(), s(|x| &x.full_group)),
            Column::new("seed".into(), u(|x| x.seed)),
            Column::new("split".into(), s(|x| &x.split)),
            Column::new("n_bonafide".into(), u(|x| x.n_bonafide as u64)),
            Column::new("n_spoof".into(), u(|x| x.n_spoof as u64)),
            Column::new("eer_percent".into(), f(|x| x.eer_percent)),
            Column::new("full_eer_percent".into(), f(|x| x.full_eer_percent)),
            Column::new(
                "difference_pp".into(),
                f(|x| x.difference.difference * 100.0),
            ),
            Column::new("ci_low_pp".into(), f(|x| x.difference.interval.low * 100.0)),
            Column::new(
                "ci_high_pp".into(),
                f(|x| x.difference.interval.high * 100.0),
            ),
            Column::new("share_better".into(), f(|x| x.difference.a_better)),
        ],
    )
}

fn paired_table(stats: &Stats) -> Table {
    let mut table = Table::new(&[
        ("Group", Align::Left),
        ("Seed", Align::Right),
        ("Against", Align::Left),
        ("Bona fide / spoof", Align::Right),
        ("EER %", Align::Right),
        ("Full EER %", Align::Right),
        ("Difference (pp)", Align::Right),
        ("95 % CI (pp)", Align::Right),
        ("Resamples better", Align::Right),
    ]);
    for p in &stats.paired {
        let d = &p.difference;
        table.push(vec![
            p.group.clone(),
            p.seed.to_string(),
            p.full_group.clone(),
            trials_cell(Some((p.n_bonafide, p.n_spoof))),
            format!("{:.2}", p.eer_percent),
            format!("{:.2}", p.full_eer_percent),
            format!("{:+.2}", d.difference * 100.0),
            format!(
                "[{:+.2}, {:+.2}]",
                d.interval.low * 100.0,
                d.interval.high * 100.0
            ),
            format!("{:.1} %", d.a_better * 100.0),
        ]);
    }
    table
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Which EER the figures plot: eval when every finished run has one, else dev.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Eval,
    Dev,
}

impl Metric {
    fn choose(rows: &[RunRow]) -> Metric {
        if !rows.is_empty() && rows.iter().all(|r| r.eval_eer.is_some()) {
            Metric::Eval
        } else {
            Metric::Dev
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::Eval => "eval",
            Metric::Dev => "dev",
        }
    }

    fn axis(self) -> String {
        match self {
            Metric::Eval => "Eval EER (%)".into(),
            Metric::Dev => "Dev EER (%)".into(),
        }
    }

    fn of(self, g: &GroupRow) -> (f64, Option<f64>) {
        match self {
            Metric::Eval => (g.eval_mean.unwrap_or(f64::NAN), g.eval_std),
            Metric::Dev => (g.dev_mean, g.dev_std),
        }
    }
}

/// Which LoRA groups share a line in the rank figure, its label and colour; and the colour of
/// each probed layer.
struct SeriesStyle {
    /// group name -> (series key, label, colour).
    by_group: HashMap<String, (String, String, RGBColor)>,
    /// Series keys in order of first appearance in the sorted groups.
    order: Vec<String>,
    /// Probed layers, in order of first appearance: a layer keeps its colour in every figure.
    probe_layers: Vec<Option<usize>>,
    layers_vary: bool,
    crops_vary: bool,
}

impl SeriesStyle {
    fn new(groups: &[GroupRow]) -> SeriesStyle {
        let lora: Vec<&GroupRow> = groups.iter().filter(|g| g.is_lora()).collect();
        let layers_vary = lora
            .iter()
            .map(|g| &g.layers_label)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        let crops_vary = groups
            .iter()
            .map(|g| g.crop_samples)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        // LoRA and DoRA on the same targets are different lines.
        let base_key = |g: &GroupRow| {
            let mut key = format!("{}|{}", g.adapter_name(), g.targets_label);
            let mut label = g.targets_label.clone();
            if layers_vary {
                key.push_str(&format!("|{}", g.layers_label));
                label.push_str(&format!(", layers {}", g.layers_label));
            }
            if crops_vary {
                key.push_str(&format!("|{}", g.crop_samples));
                label.push_str(&format!(", {:.2} s", g.crop_samples as f64 / SAMPLE_RATE));
            }
            (key, label)
        };
        // Two groups of one line with the same rank differ in alpha: alpha joins the key.
        let mut seen: BTreeMap<(String, Option<usize>), usize> = BTreeMap::new();
        for g in &lora {
            *seen.entry((base_key(g).0, g.rank)).or_default() += 1;
        }
        let alpha_in_key = seen.values().any(|n| *n > 1);
        let mut by_group = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for g in &lora {
            let (mut key, mut label) = base_key(g);
            if alpha_in_key {
                let alpha = alpha_cell(g.alpha);
                key.push_str(&format!("|a{alpha}"));
                label.push_str(&format!(", alpha {alpha}"));
            }
            if !order.contains(&key) {
                order.push(key.clone());
            }
            let color = PALETTE[order.iter().position(|k| *k == key).unwrap() % PALETTE.len()];
            by_group.insert(
                g.group.clone(),
                (key, format!("{} {label}", g.adapter_name()), color),
            );
        }
        let mut probe_layers = Vec::new();
        for g in groups.iter().filter(|g| g.is_probe()) {
            if !probe_layers.contains(&g.probe_layer) {
                probe_layers.push(g.probe_layer);
            }
        }
        SeriesStyle {
            by_group,
            order,
            probe_layers,
            layers_vary,
            crops_vary,
        }
    }

    /// The colour of `g`; `full_index` counts the full fine-tuning groups before it.
    fn color(&self, g: &GroupRow, full_index: usize) -> RGBColor {
        if g.is_probe() {
            return self.probe_color(g);
        }
        if let Some((_, color, _)) = point_method(g, self, false) {
            return color;
        }
        match self.by_group.get(&g.group) {
            Some((_, _, c)) => *c,
            None => FULL_COLORS[full_index.min(FULL_COLORS.len() - 1)],
        }
    }

    fn probe_color(&self, g: &GroupRow) -> RGBColor {
        let index = self
            .probe_layers
            .iter()
            .position(|l| *l == g.probe_layer)
            .unwrap_or_default();
        PROBE_COLORS[index % PROBE_COLORS.len()]
    }

    /// `probe L4`, with the input length when lengths vary and `with_length`.
    fn probe_label(&self, g: &GroupRow, with_length: bool) -> String {
        let mut label = format!("probe {}", g.layers_label);
        if with_length && self.crops_vary {
            label.push_str(&format!(", {:.2} s", g.crop_seconds()));
        }
        label
    }

    /// The LoRA lines: label, colour and the groups on each.
    fn lines<'a>(&self, groups: &'a [GroupRow]) -> Vec<(String, RGBColor, Vec<&'a GroupRow>)> {
        self.order
            .iter()
            .map(|key| {
                let members: Vec<&GroupRow> = groups
                    .iter()
                    .filter(|g| self.by_group.get(&g.group).is_some_and(|s| &s.0 == key))
                    .collect();
                let (_, label, color) = &self.by_group[&members[0].group];
                (label.clone(), *color, members)
            })
            .collect()
    }

    fn full_label(&self, g: &GroupRow) -> String {
        if self.crops_vary {
            format!("full fine-tuning, {:.2} s", g.crop_seconds())
        } else {
            "full fine-tuning".into()
        }
    }
}

fn point(metric: Metric, g: &GroupRow, x: f64) -> Point {
    let (y, err) = metric.of(g);
    Point { x, y, err }
}

fn eer_vs_rank(groups: &[GroupRow], metric: Metric, style: &SeriesStyle) -> Option<XyFigure> {
    let lines = style.lines(groups);
    if lines.is_empty() {
        return None;
    }
    let series = lines
        .into_iter()
        .map(|(label, color, members)| Series {
            label,
            color,
            marker: members[0].lora_marker(),
            connect: true,
            points: members
                .iter()
                .filter_map(|g| g.rank.map(|r| point(metric, g, r as f64)))
                .collect(),
        })
        .collect();
    let hlines = groups
        .iter()
        .filter(|g| g.is_full())
        .enumerate()
        .map(|(i, g)| {
            let (y, err) = metric.of(g);
            HLine {
                label: format!("{} (mean)", style.full_label(g)),
                color: FULL_COLORS[i.min(FULL_COLORS.len() - 1)],
                y,
                err,
            }
        })
        .filter(|h| h.y.is_finite())
        .collect();
    Some(XyFigure {
        title: format!(
            "{} EER vs LoRA rank (mean ± std over seeds)",
            cap(metric.name())
        ),
        x_desc: "LoRA rank (log2 scale)".into(),
        y_desc: metric.axis(),
        x_scale: XScale::Log2,
        series,
        hlines,
    })
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn eer_vs_params(groups: &[GroupRow], metric: Metric, style: &SeriesStyle) -> XyFigure {
    let mut series: Vec<Series> = groups
        .iter()
        .filter(|g| g.is_full())
        .enumerate()
        .map(|(i, g)| Series {
            label: style.full_label(g),
            color: FULL_COLORS[i.min(FULL_COLORS.len() - 1)],
            marker: Marker::Triangle,
            connect: false,
            points: vec![point(metric, g, g.trainable)],
        })
        .collect();
    series.extend(
        style
            .lines(groups)
            .into_iter()
            .map(|(label, color, members)| Series {
                label,
                color,
                marker: members[0].lora_marker(),
                connect: true,
                points: members
                    .iter()
                    .map(|g| point(metric, g, g.trainable))
                    .collect(),
            }),
    );
    series.extend(groups.iter().filter_map(|g| {
        let (label, color, marker) = point_method(g, style, true)?;
        Some(Series {
            label,
            color,
            marker,
            connect: false,
            points: vec![point(metric, g, g.trainable)],
        })
    }));
    // A probe trains the head alone: the far left of the axis, one point per probed state.
    series.extend(groups.iter().filter(|g| g.is_probe()).map(|g| Series {
        label: style.probe_label(g, true),
        color: style.probe_color(g),
        marker: Marker::Square,
        connect: false,
        points: vec![point(metric, g, g.trainable)],
    }));
    XyFigure {
        title: format!(
            "{} EER vs trainable parameters (mean ± std over seeds)",
            cap(metric.name())
        ),
        x_desc: "Trainable parameters (log10 scale)".into(),
        y_desc: metric.axis(),
        x_scale: XScale::Log10,
        series,
        hlines: Vec::new(),
    }
}

/// Methods without a rank to draw a line over, one marker per group: `(IA)^3 k+v+ffn_out`
/// (teal diamonds), `MMS adapter 32` / `bottleneck adapter 64` (gold inverted triangles) and
/// `top 4 layers` / `bottom 2 layers + projection` (brown plus signs), `layer sum` (violet
/// hexagons) and `SLS, frozen front end` (crimson stars), with the input length when lengths
/// vary and `with_length`. `None` for other groups.
fn point_method(
    g: &GroupRow,
    style: &SeriesStyle,
    with_length: bool,
) -> Option<(String, RGBColor, Marker)> {
    let (mut label, color, marker) = if g.is_ia3() {
        (
            format!("(IA)^3 {}", g.targets_label),
            IA3_COLOR,
            Marker::Diamond,
        )
    } else if g.is_adapter() {
        let kind = match g.adapter_kind.unwrap_or_default() {
            fadlora_run::AdapterKind::Mms => "MMS",
            fadlora_run::AdapterKind::Bottleneck => "bottleneck",
        };
        (
            format!("{kind} adapter {}", g.adapter_size.unwrap_or_default()),
            ADAPTER_COLOR,
            Marker::InvertedTriangle,
        )
    } else if g.is_partial() {
        let count = g.partial_count.unwrap_or_default();
        let mut label = format!(
            "{} {count} layer{}",
            g.partial_layers.unwrap_or_default(),
            if count == 1 { "" } else { "s" }
        );
        if g.partial_feature_projection {
            label.push_str(" + projection");
        }
        (label, PARTIAL_COLOR, Marker::Plus)
    } else if g.is_layer_sum() {
        ("layer sum".to_string(), LAYER_SUM_COLOR, Marker::Hexagon)
    } else if g.is_frozen() {
        ("SLS, frozen front end".to_string(), SLS_COLOR, Marker::Star)
    } else {
        return None;
    };
    if with_length && style.crops_vary {
        label.push_str(&format!(", {:.2} s", g.crop_seconds()));
    }
    Some((label, color, marker))
}

/// The other Pareto view: each configuration's EER against the memory its training needed,
/// one marker per group (memory does not order LoRA ranks, so nothing is connected).
fn eer_vs_memory(groups: &[GroupRow], metric: Metric, style: &SeriesStyle) -> Option<XyFigure> {
    let measured: Vec<&GroupRow> = groups
        .iter()
        .filter(|g| g.peak_mem_bytes.is_some())
        .collect();
    if measured.len() < 2 {
        return None;
    }
    let mut full_index = 0;
    let series = measured
        .iter()
        .map(|g| {
            let color = style.color(g, full_index);
            let (label, marker) = if g.is_full() {
                full_index += 1;
                (style.full_label(g), Marker::Triangle)
            } else if g.is_probe() {
                (style.probe_label(g, true), Marker::Square)
            } else if let Some((label, _, marker)) = point_method(g, style, true) {
                (label, marker)
            } else {
                (
                    format!(
                        "{} {} r{}",
                        g.adapter_name(),
                        g.targets_label,
                        rank_cell(g.rank)
                    ),
                    g.lora_marker(),
                )
            };
            let memory = g.peak_mem_bytes.expect("filtered") / MIB;
            Series {
                label,
                color,
                marker,
                connect: false,
                points: vec![point(metric, g, memory)],
            }
        })
        .collect();
    Some(XyFigure {
        title: format!(
            "{} EER vs peak memory in training (mean ± std over seeds)",
            cap(metric.name())
        ),
        x_desc: "Peak memory (MiB)".into(),
        y_desc: metric.axis(),
        x_scale: XScale::LinearFromZero,
        series,
        hlines: Vec::new(),
    })
}

fn eer_vs_length(groups: &[GroupRow], metric: Metric, style: &SeriesStyle) -> XyFigure {
    // One line per configuration without the input length.
    let mut lines: Vec<(String, Series)> = Vec::new();
    let mut full_seen = 0;
    for g in groups {
        let key = format!(
            "{}|{}|{:?}|{}|{}|{:?}|{}",
            g.mode,
            g.dora,
            g.experts,
            g.targets_label,
            g.layers_label,
            g.rank,
            alpha_cell(g.alpha)
        );
        let p = point(metric, g, g.crop_seconds());
        if let Some((_, s)) = lines.iter_mut().find(|(k, _)| *k == key) {
            s.points.push(p);
            continue;
        }
        let (label, color, marker) = if g.is_full() {
            full_seen += 1;
            (
                "full fine-tuning".to_string(),
                FULL_COLORS[(full_seen - 1).min(FULL_COLORS.len() - 1)],
                Marker::Triangle,
            )
        } else if g.is_probe() {
            (
                style.probe_label(g, false),
                style.probe_color(g),
                Marker::Square,
            )
        } else if let Some(method) = point_method(g, style, false) {
            method
        } else {
            let mut label = format!(
                "{} {} r{}",
                g.adapter_name(),
                g.targets_label,
                rank_cell(g.rank)
            );
            if style.layers_vary {
                label.push_str(&format!(", layers {}", g.layers_label));
            }
            let n_lora = lines
                .iter()
                .filter(|(k, _)| k.starts_with(Mode::Lora.as_str()))
                .count();
            (label, PALETTE[n_lora % PALETTE.len()], g.lora_marker())
        };
        lines.push((
            key,
            Series {
                label,
                color,
                marker,
                connect: true,
                points: vec![p],
            },
        ));
    }
    XyFigure {
        title: format!(
            "{} EER vs input length (mean ± std over seeds)",
            cap(metric.name())
        ),
        x_desc: "Input length (s at 16 kHz)".into(),
        y_desc: metric.axis(),
        x_scale: XScale::Linear,
        series: lines.into_iter().map(|(_, s)| s).collect(),
        hlines: Vec::new(),
    }
}

/// Train loss and dev EER per epoch, one line per run in its group's colour.
fn learning_curves(
    finished: &[(&PlannedRun, RunRecord)],
    groups: &[GroupRow],
    style: &SeriesStyle,
) -> Option<CurvesFigure> {
    if finished.iter().all(|(_, r)| r.epochs.is_empty()) {
        return None;
    }
    // Every group its own colour: ranks of one LoRA line share a colour elsewhere, but here
    // they are separate lines.
    let (mut full_seen, mut lora_seen) = (0, 0);
    let colors: Vec<RGBColor> = groups
        .iter()
        .map(|g| {
            if g.is_full() {
                full_seen += 1;
                FULL_COLORS[(full_seen - 1).min(FULL_COLORS.len() - 1)]
            } else if g.is_probe() {
                style.probe_color(g)
            } else if let Some((_, color, _)) = point_method(g, style, false) {
                color
            } else {
                lora_seen += 1;
                PALETTE[(lora_seen - 1) % PALETTE.len()]
            }
        })
        .collect();
    let color_of = |group: &str| {
        groups
            .iter()
            .position(|g| g.group == group)
            .map_or(PALETTE[0], |i| colors[i])
    };
    let lines = |value: fn(&fadlora_run::EpochLog) -> f64| -> Vec<CurveLine> {
        finished
            .iter()
            .map(|(run, record)| CurveLine {
                color: color_of(&run.group),
                points: record
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, value(e)))
                    .collect(),
                selected: Some(record.best_epoch as f64),
            })
            .collect()
    };
    let legend = groups
        .iter()
        .zip(&colors)
        .map(|(g, c)| {
            let seeds = if g.n == 1 {
                "1 seed".to_string()
            } else {
                format!("{} seeds", g.n)
            };
            (format!("{} ({seeds})", g.group), *c)
        })
        .collect();
    Some(CurvesFigure {
        x_desc: "Epoch".into(),
        panels: vec![
            CurvePanel {
                title: "Training loss (mean over the epoch)".into(),
                y_desc: "Class-weighted cross-entropy".into(),
                lines: lines(|e| e.train_loss),
            },
            CurvePanel {
                title: "Dev EER after each epoch".into(),
                y_desc: "Dev EER (%)".into(),
                lines: lines(|e| e.dev_eer_percent),
            },
        ],
        legend,
    })
}

fn memory_time(groups: &[GroupRow], style: &SeriesStyle) -> Option<BarsFigure> {
    let memory: Vec<Option<f64>> = groups
        .iter()
        .map(|g| g.peak_mem_bytes.map(|b| b / MIB))
        .collect();
    let step: Vec<Option<f64>> = groups.iter().map(|g| g.step_ms_median).collect();
    if memory.iter().chain(&step).all(Option::is_none) {
        return None;
    }
    let mut full_index = 0;
    let colors = groups
        .iter()
        .map(|g| {
            let c = style.color(g, full_index);
            if g.is_full() {
                full_index += 1;
            }
            c
        })
        .collect();
    let decimals = |values: &[Option<f64>]| {
        let max = values.iter().flatten().copied().fold(0.0, f64::max);
        if max >= 100.0 {
            0
        } else {
            1
        }
    };
    Some(BarsFigure {
        names: groups.iter().map(|g| g.group.clone()).collect(),
        colors,
        panels: vec![
            BarPanel {
                title: "Peak memory (mean over seeds)".into(),
                y_desc: "Peak memory (MiB)".into(),
                decimals: decimals(&memory),
                values: memory,
            },
            BarPanel {
                title: "Training step time (mean over seeds)".into(),
                y_desc: "Median step time (ms)".into(),
                decimals: decimals(&step),
                values: step,
            },
        ],
    })
}

/// The lowest-dev-EER run of `mode` (first in plan order on ties).
fn best_run(rows: &[RunRow], mode: Mode) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.mode == mode && r.dev_eer.is_finite())
        .min_by(|a, b| a.1.dev_eer.total_cmp(&b.1.dev_eer))
        .map(|(i, _)| i)
}

/// DET curves of the best LoRA run, the best full fine-tuning run and the best probe (by dev
/// EER), on their eval scores when they have them. `Err` says why nothing can be drawn.
fn det_figure(
    plan: &Plan,
    finished: &[(&PlannedRun, RunRecord)],
    rows: &[RunRow],
) -> Result<DetFigure, String> {
    let mut curves = Vec::new();
    let mut problems = Vec::new();
    let mut protocols: HashMap<String, Result<Vec<fadlora_data::Utterance>, String>> =
        HashMap::new();
    let mut splits = BTreeSet::new();
    for (mode, color, what) in [
        (Mode::Lora, PALETTE[0], "best LoRA"),
        (Mode::Full, FULL_COLORS[0], "best full"),
        (Mode::Probe, PROBE_COLORS[0], "best probe"),
        (Mode::Ia3, IA3_COLOR, "best (IA)^3"),
        (Mode::Adapter, ADAPTER_COLOR, "best adapter"),
        (Mode::Partial, PARTIAL_COLOR, "best partial"),
        (Mode::LayerSum, LAYER_SUM_COLOR, "best layer sum"),
        (Mode::Frozen, SLS_COLOR, "best SLS (frozen)"),
    ] {
        let Some(i) = best_run(rows, mode) else {
            continue;
        };
        let (run, record) = &finished[i];
        let split: &SplitResult = record.eval.as_ref().unwrap_or(&record.dev);
        let dataset = &record.config.data.dataset;
        let utterances = protocols
            .entry(dataset.clone())
            .or_insert_with(|| {
                fadlora_run::scores::read_protocol(dataset).map_err(|e| e.to_string())
            })
            .as_ref();
        let utterances = match utterances {
            Ok(u) => u,
            Err(e) => {
                problems.push(format!(
                    "the protocol of `{dataset}` could not be read ({e})"
                ));
                continue;
            }
        };
        let wanted = Split::parse(&split.split);
        let labels: HashMap<&str, Label> = utterances
            .iter()
            .filter(|u| u.split == wanted)
            .map(|u| (u.id.as_str(), u.label))
            .collect();
        let path = plan.run_dir(run).join(&split.scores_file);
        let scores = match fadlora_run::scores::read_score_file(&path) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{e}"));
                continue;
            }
        };
        let (mut bona, mut spoof) = (Vec::new(), Vec::new());
        let mut unknown = None;
        for (id, score) in &scores {
            match labels.get(id.as_str()) {
                Some(Label::Bonafide) => bona.push(*score),
                Some(Label::Spoof) => spoof.push(*score),
                None => {
                    unknown = Some(id.clone());
                    break;
                }
            }
        }
        if let Some(id) = unknown {
            problems.push(format!(
                "{}: `{id}` is not in the {} split of `{dataset}`",
                path.display(),
                split.split
            ));
            continue;
        }
        let curve = match fadlora_metrics::det_curve(&bona, &spoof) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let eer = fadlora_metrics::eer(&bona, &spoof)
            .map(|e| e.eer)
            .unwrap_or(f64::NAN);
        splits.insert(split.split.clone());
        curves.push(DetData {
            label: format!(
                "{what}: {} s{} (EER {:.2} %)",
                run.group,
                run.axes.seed,
                eer * 100.0
            ),
            color,
            far: curve.far,
            frr: curve.frr,
            eer,
            n_bonafide: bona.len(),
            n_spoof: spoof.len(),
        });
    }
    if curves.is_empty() {
        return Err(if problems.is_empty() {
            "no finished run".to_string()
        } else {
            problems.join("; ")
        });
    }
    let split_names: Vec<String> = splits.into_iter().collect();
    Ok(DetFigure {
        title: format!(
            "DET, {} scores, runs with the lowest dev EER",
            split_names.join("/")
        ),
        curves,
    })
}

// ---------------------------------------------------------------------------------------------
// report.md

fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for v in values {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

fn code_list(values: &[&str]) -> String {
    if values.is_empty() {
        return "none recorded".into();
    }
    values
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the wav2vec2 backbone of `run` was initialised, in one sentence part.
fn backbone(model: &fadlora_run::config::ModelSection) -> String {
    if let Some(checkpoint) = &model.checkpoint {
        match pretraining_summary(checkpoint) {
            Some(how) => format!("pretrained weights from `{}`, {how}", checkpoint.display()),
            None => format!("pretrained weights from `{}`", checkpoint.display()),
        }
    } else if let Some(preset) = &model.preset {
        format!(
            "randomly initialised `{preset}` preset (from each run's seed; no pretraining), so \
             these EERs measure the architecture and the fine-tuning alone"
        )
    } else if let Some(arch) = &model.config {
        format!(
            "randomly initialised (from each run's seed; no pretraining) with the architecture \
             in `{}`, so these EERs measure the architecture and the fine-tuning alone",
            arch.display()
        )
    } else {
        "not recorded".into()
    }
}

/// How `fadlora pretrain` made a checkpoint, from the `pretraining_record.json` it leaves in
/// the model folder; `None` for checkpoints made elsewhere (or an unreadable record).
fn pretraining_summary(checkpoint: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(checkpoint.join(PRETRAINING_RECORD_FILE)).ok()?;
    let record: serde_json::Value = serde_json::from_str(&text).ok()?;
    let number = |key: &str| record.get(key).and_then(serde_json::Value::as_f64);
    let steps = number("steps")?;
    let minutes = number("wall_seconds")? / 60.0;
    let audio_minutes = number("train_minutes")?;
    let clusters = number("clusters")?;
    let device = record.get("device").and_then(serde_json::Value::as_str)?;
    let mut text = format!(
        "pretrained by `fadlora pretrain` (masked prediction of {clusters:.0} MFCC k-means \
         clusters, HuBERT's first iteration) on {audio_minutes:.1} min of speech: {steps:.0} \
         steps in {minutes:.1} min on {device}"
    );
    if let (Some(accuracy), Some(majority)) = (
        number("final_valid_masked_accuracy"),
        number("valid_majority_rate"),
    ) {
        text.push_str(&format!(
            "; held-out masked accuracy {:.2} % (majority cluster {:.2} %)",
            accuracy * 100.0,
            majority * 100.0
        ));
    }
    Some(text)
}

/// What `report.md` is made of, besides the plan.
struct MarkdownInputs<'a> {
    finished: &'a [(&'a PlannedRun, RunRecord)],
    rows: &'a [RunRow],
    groups: &'a [GroupRow],
    metric: Metric,
    tables: &'a Tables,
    stats: &'a Stats,
    figures: &'a [(&'a str, &'a str)],
    notes: &'a [String],
}

/// `report.md`: title, setup, summary table, figures, notes and unfinished runs.
fn report_markdown(plan: &Plan, inputs: &MarkdownInputs) -> String {
    let mut md = format!("# {}\n\n", plan.experiment);
    if !plan.description.trim().is_empty() {
        md.push_str(plan.description.trim());
        md.push_str("\n\n");
    }
    setup_section(&mut md, plan, inputs);
    summary_section(&mut md, inputs.groups, &inputs.tables.summary);
    published_section(&mut md, inputs.tables.published.as_ref());
    cross_corpus_section(&mut md, inputs.tables.cross_corpus.as_ref());
    breakdown_section(&mut md, inputs.tables.breakdown.as_ref());
    paired_section(&mut md, inputs.tables.paired.as_ref(), inputs.stats);
    figures_section(&mut md, inputs.figures);
    notes_section(&mut md, inputs.notes);
    unfinished_section(&mut md, plan);
    md
}

/// How the runs were made: where, on what backbone, what trains, and what the numbers mean.
fn setup_section(md: &mut String, plan: &Plan, inputs: &MarkdownInputs) {
    let (finished, rows, metric) = (inputs.finished, inputs.rows, inputs.metric);
    md.push_str("## Setup\n\n");
    let configs: Vec<&fadlora_run::RunConfig> = if finished.is_empty() {
        plan.runs.iter().map(|r| &r.config).collect()
    } else {
        finished.iter().map(|(_, rec)| &rec.config).collect()
    };
    let backends = distinct(rows.iter().map(|r| r.backend.as_str()));
    let devices = distinct(rows.iter().map(|r| r.device.as_str()));
    let datasets = distinct(configs.iter().map(|c| c.data.dataset.as_str()));
    let commits = distinct(rows.iter().filter_map(|r| r.git_commit.as_deref()));
    md.push_str(&format!(
        "{} of {} planned runs finished. Backend: {}; device: {}; dataset: {}; git commit: {}.\n\n",
        finished.len(),
        plan.runs.len(),
        code_list(&backends),
        code_list(&devices),
        code_list(&datasets),
        code_list(&commits),
    ));
    let backbones: Vec<String> = {
        // One description per distinct model table: a pretrained one reads its record from disk.
        let mut models: Vec<&fadlora_run::config::ModelSection> = Vec::new();
        for c in &configs {
            if !models.contains(&&c.model) {
                models.push(&c.model);
            }
        }
        let mut b: Vec<String> = Vec::new();
        for model in models {
            let text = backbone(model);
            if !b.contains(&text) {
                b.push(text);
            }
        }
        b
    };
    md.push_str(&format!(
        "The wav2vec2 backbone: {}.\n\n",
        backbones.join("; ")
    ));

    if let Some(text) = training_sentence(plan, rows) {
        md.push_str(&format!("{text}.\n\n"));
    }
    let memory_kinds = distinct(rows.iter().map(|r| r.memory_kind.as_str()));
    md.push_str(&uncertainty_sentence(inputs.stats, metric));
    md.push_str(&format!(
        "EER is the equal error rate in percent, given as mean ± sample standard deviation \
         (ddof 1) over seeds (the mean alone for a single seed). The figures plot the {} EER{}. \
         Peak memory: {}. Step time: median optimizer step (forward, backward and update, \
         without data loading). Input lengths are in samples at 16 kHz. Reduction vs full = \
         trainable parameters of full fine-tuning / those of the row.\n\n",
        metric.name(),
        if metric == Metric::Dev {
            " (not every run has an eval EER)"
        } else {
            ""
        },
        code_list(&memory_kinds),
    ));
}

/// How the intervals and the pooled EER are made, and where they came from.
fn uncertainty_sentence(stats: &Stats, metric: Metric) -> String {
    let b = &stats.bootstrap;
    let mut text = format!(
        "Intervals are 95 % percentile bootstrap intervals over trials of the {} split: {} \
         resamples (fixed seed {}), bona fide and spoof trials drawn separately with \
         replacement; they show how much the EER depends on which trials were drawn, not on the \
         seed. The pooled-seed EER puts every seed's scores of a group into one set; seeds \
         score on their own scales, so it is no single model's operating point, but it is the \
         figure most papers quote beside the mean over seeds. Its interval resamples the trials \
         once per replicate and takes every seed's scores of them (the seeds score the same \
         trials, so they are not independent draws).",
        metric.name(),
        b.resamples,
        b.seed
    );
    if stats.recomputed > 0 {
        text.push_str(&format!(
            " {} written before records carried intervals and per-attack EERs: those were \
             computed here from {} score files and protocol.",
            if stats.recomputed == 1 {
                "1 run's record was".to_string()
            } else {
                format!("{} runs' records were", stats.recomputed)
            },
            if stats.recomputed == 1 {
                "its"
            } else {
                "their"
            }
        ));
    }
    text.push_str("\n\n");
    text
}

/// What trains in the LoRA, the full fine-tuning and the probe runs, as one sentence.
fn training_sentence(plan: &Plan, rows: &[RunRow]) -> Option<String> {
    let modes: BTreeSet<Mode> = if rows.is_empty() {
        plan.runs.iter().map(|r| r.axes.mode).collect()
    } else {
        rows.iter().map(|r| r.mode).collect()
    };
    let mut training = Vec::new();
    if modes.contains(&Mode::Lora) {
        let lora_runs = plan.runs.iter().filter(|r| r.axes.mode == Mode::Lora);
        let targets: Vec<String> = {
            let mut t: Vec<String> = Vec::new();
            for r in lora_runs.clone() {
                let label = r.axes.targets_label();
                if !t.contains(&label) {
                    t.push(label);
                }
            }
            t
        };
        let mut layers: Vec<String> = Vec::new();
        for r in lora_runs.clone() {
            let label = r.axes.layers_label();
            if !layers.contains(&label) {
                layers.push(label);
            }
        }
        let layer_text = if layers.iter().all(|l| l == "all") {
            "in every encoder layer".to_string()
        } else {
            format!("in encoder layers {}", layers.join(" / "))
        };
        training.push(format!(
            "LoRA runs freeze every wav2vec2 weight and train only low-rank adapters on {} \
             ({layer_text}) plus the classification head",
            targets
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    if plan.runs.iter().any(|r| r.axes.dora) {
        training.push(
            "DoRA runs (groups `dora-...`) are LoRA runs whose adapted weights are decomposed: \
             each adapted projection also learns a magnitude per output, `m * (W + s A B) / \
             ||W + s A B||`"
                .to_string(),
        );
    }
    if let Some(run) = plan.runs.iter().find(|r| r.axes.experts.is_some()) {
        let moe = run
            .config
            .lora
            .as_ref()
            .and_then(|l| l.moe.clone())
            .unwrap_or_default();
        training.push(format!(
            "MoE-LoRA runs (groups `moe<K>-...`) put K LoRA adapters of the run's rank on each \
             adapted projection with a learned router (`d_in x K` weights) that mixes them per \
             token ({} routing; load-balancing loss weight {})",
            match moe.routing {
                fadlora_run::MoeRouting::Soft => "soft: every expert, softmax-weighted",
                fadlora_run::MoeRouting::Top1 => "top-1: the most probable expert only",
            },
            moe.balance_loss
        ));
    }
    if modes.contains(&Mode::Ia3) {
        let mut targets: Vec<String> = Vec::new();
        for r in plan.runs.iter().filter(|r| r.axes.mode == Mode::Ia3) {
            let label = r.axes.targets_label();
            if !targets.contains(&label) {
                targets.push(label);
            }
        }
        training.push(format!(
            "(IA)^3 runs freeze every wav2vec2 weight and train only a vector per adapted \
             projection that rescales its output (its input for the feed-forward block's \
             second projection, `ffn_out`), on {} in every encoder layer, plus the head",
            targets
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    if modes.contains(&Mode::Adapter) {
        let mut kinds: Vec<&str> = Vec::new();
        for r in plan.runs.iter().filter(|r| r.axes.mode == Mode::Adapter) {
            let kind = match r.axes.adapter_kind.unwrap_or_default() {
                fadlora_run::AdapterKind::Mms => {
                    "MMS adapters (Hugging Face's `adapter_attn_dim`: LayerNorm, `size` units, \
                     ReLU, back to the width, added to each layer's output)"
                }
                fadlora_run::AdapterKind::Bottleneck => {
                    "bottleneck adapters (`size` units, ReLU, back to the width, added to the \
                     feed-forward block's output)"
                }
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        training.push(format!(
            "adapter runs (groups `adapter-<kind>-<size>`) freeze every wav2vec2 weight and \
             train {} in every encoder layer, starting as the identity, plus the head",
            kinds.join(" / ")
        ));
    }
    if modes.contains(&Mode::Partial) {
        let mut ends: Vec<String> = Vec::new();
        for r in plan.runs.iter().filter(|r| r.axes.mode == Mode::Partial) {
            let mut end = format!(
                "the {} {}",
                r.axes.partial_layers.unwrap_or_default(),
                r.axes.partial_count.unwrap_or_default()
            );
            if r.axes.partial_feature_projection {
                end.push_str(" and the feature projection");
            }
            if !ends.contains(&end) {
                ends.push(end);
            }
        }
        training.push(format!(
            "partial fine-tuning (groups `partial-<top|bottom>-<count>`, `-fp` with the feature \
             projection) trains {} encoder layers whole, as full fine-tuning does, plus the \
             head; every other wav2vec2 weight (the convolutional feature encoder, the \
             positional convolution, the encoder's LayerNorm, the other layers) is frozen",
            ends.join(" / ")
        ));
    }
    if modes.contains(&Mode::LayerSum) {
        training.push(
            "layer-sum runs (group `layer-sum`, SUPERB's weighted sum) freeze the whole wav2vec2 \
             (dropout and LayerDrop off) and train one weight per hidden state (the encoder's \
             input, each layer's output, the last being the final output), softmaxed and \
             starting equal, plus the head, which pools the weighted sum of the states"
                .to_string(),
        );
    }
    if modes.contains(&Mode::Frozen) {
        training.push(
            "SLS runs (group `sls`) freeze the whole wav2vec2 (dropout and LayerDrop off) and \
             train only the SLS head: a sigmoid gate per layer over every encoder layer's \
             output, summed, then BatchNorm, SELU, max pooling and two linear layers"
                .to_string(),
        );
    }
    if modes.contains(&Mode::Full) {
        training.push(
            "full fine-tuning trains everything: every wav2vec2 weight and the head".to_string(),
        );
    }
    if modes.contains(&Mode::Probe) {
        let mut layers: Vec<String> = Vec::new();
        for r in plan.runs.iter().filter(|r| r.axes.mode == Mode::Probe) {
            if let Some(layer) = r.axes.probe_layer.map(|l| l.to_string()) {
                if !layers.contains(&layer) {
                    layers.push(layer);
                }
            }
        }
        training.push(format!(
            "probes freeze the whole wav2vec2 (dropout and LayerDrop off) and train only the \
             head, on the mean over frames of hidden state {} (0 = the encoder's input, k = the \
             output of encoder layer k)",
            layers.join(" / ")
        ));
    }
    (!training.is_empty()).then(|| cap(&training.join("; ")))
}

fn summary_section(md: &mut String, groups: &[GroupRow], summary: &Table) {
    md.push_str("## Summary\n\n");
    if groups.is_empty() {
        md.push_str("No run has finished yet.\n\n");
    } else {
        md.push_str(&summary.markdown());
        md.push('\n');
    }
    md.push_str(
        "This table as [CSV](summary.csv) and [LaTeX](summary.tex); every run: \
         [runs.md](runs.md), [runs.csv](runs.csv), [runs.tex](runs.tex).\n\n",
    );
}

fn cross_corpus_section(md: &mut String, table: Option<&(Table, String)>) {
    let Some((table, trials)) = table else { return };
    md.push_str("## Cross-corpus evaluation\n\n");
    md.push_str(&format!(
        "EER (%) of each group's selected checkpoints on the dataset's eval split and on every \
         `[[eval_sets]]` entry of the runs. Cells: mean ± sample std over seeds, or one seed's \
         EER with its 95 % bootstrap interval; `-` where no finished run of the group has the \
         set. Trials (bona fide / spoof): {trials}. As [CSV](cross_corpus.csv) and \
         [LaTeX](cross_corpus.tex).\n\n"
    ));
    md.push_str(&table.markdown());
    md.push('\n');
}

fn breakdown_section(md: &mut String, table: Option<&Table>) {
    let Some(table) = table else { return };
    md.push_str("## Per-attack and per-condition EER\n\n");
    md.push_str(
        "Each attack's EER compares every bona fide trial with that attack's spoofs; a \
         condition that both classes carry (an ASVspoof 2021 codec, channel or source corpus) \
         compares the bona fide and spoof trials of that condition. Cells: mean ± sample std \
         over seeds, or one seed's EER with its 95 % bootstrap interval. Every run with every \
         interval: [breakdown.csv](breakdown.csv); this table as [LaTeX](breakdown.tex).\n\n",
    );
    md.push_str(&table.markdown());
    md.push('\n');
}

fn paired_section(md: &mut String, table: Option<&Table>, stats: &Stats) {
    let Some(table) = table else { return };
    md.push_str("## Paired comparison with full fine-tuning\n\n");
    md.push_str(&format!(
        "Each row compares a run with full fine-tuning of the same seed and input length on the \
         same trials (matched by utterance id). Difference = EER of the row's run minus EER of \
         full fine-tuning, in percentage points (negative: the run is better); the 95 % \
         interval comes from a paired bootstrap ({} resamples, seed {}): each resample draws \
         bona fide and spoof trials with replacement and scores both systems on the same \
         draw. Resamples better: share of resamples in which the run has the lower EER (ties \
         count half). As [CSV](paired.csv) and [LaTeX](paired.tex).\n\n",
        stats.bootstrap.resamples, stats.bootstrap.seed
    ));
    md.push_str(&table.markdown());
    md.push('\n');
}

fn figures_section(md: &mut String, figures: &[(&str, &str)]) {
    if figures.is_empty() {
        return;
    }
    md.push_str("## Figures\n\n");
    for (stem, title) in figures {
        md.push_str(&format!(
            "### {title}\n\n![{title}]({stem}.png)\n\n[SVG]({stem}.svg)\n\n"
        ));
    }
}

fn published_section(md: &mut String, table: Option<&Table>) {
    let Some(table) = table else { return };
    md.push_str("## Published figures\n\n");
    md.push_str(
        "Figures published elsewhere for groups of this experiment (the experiment TOML's \
         `[reference]` table, with their sources), beside what this sweep measured: mean ± \
         sample std over the n seeds that finished. A published figure comes from its authors' \
         recipe, which may differ from this one where the note or the TOML says so. As \
         [Markdown](published.md) and [LaTeX](published.tex).\n\n",
    );
    md.push_str(&table.markdown());
    md.push('\n');
}

fn notes_section(md: &mut String, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    md.push_str("## Notes\n\n");
    for note in notes {
        md.push_str(&format!("- {note}\n"));
    }
    md.push('\n');
}

/// The planned runs without a record, and how far each got.
fn unfinished_section(md: &mut String, plan: &Plan) {
    let unfinished: Vec<String> = plan
        .runs
        .iter()
        .filter_map(|run| {
            let state = match plan.state(run) {
                RunState::Finished => return None,
                RunState::Pending => "not started".to_string(),
                RunState::Partial { epochs_done } => {
                    format!("interrupted after {}", count(epochs_done, "epoch"))
                }
            };
            Some(format!(
                "- `{}` (group `{}`, seed {}): {state}\n",
                run.id, run.group, run.axes.seed
            ))
        })
        .collect();
    md.push_str("## Unfinished runs\n\n");
    if unfinished.is_empty() {
        md.push_str("Every planned run finished.\n");
    } else {
        md.push_str(&format!(
            "{} of the plan not finished (not in the tables or figures):\n\n",
            count(unfinished.len(), "run")
        ));
        for line in unfinished {
            md.push_str(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_pretrained_here_says_how_it_was_made() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pretrained/tiny_hubert");
        let text = pretraining_summary(&shipped).expect("the shipped checkpoint has a record");
        for part in [
            "masked prediction of 100 MFCC k-means clusters",
            "290.6 min of speech",
            "1400 steps in 59.5 min",
            "held-out masked accuracy 4.47 % (majority cluster 1.21 %)",
        ] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        // A checkpoint made elsewhere has no record: the report names it and nothing more.
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(pretraining_summary(elsewhere.path()), None);
        std::fs::write(elsewhere.path().join(PRETRAINING_RECORD_FILE), "{ not json").unwrap();
        assert_eq!(pretraining_summary(elsewhere.path()), None);
    }
}
