//! A results folder built by hand (plan, run records, eval score files over the bundled mini
//! corpus), then summarised and reported.

use std::path::{Path, PathBuf};

use fadlora_data::{Label, Split};
use fadlora_report::{summary_frame, write_report, write_summary, SUMMARY_COLUMNS};
use fadlora_run::config::schema_only;
use fadlora_run::layout::RECORD_FILE;
use fadlora_run::record::RECORD_VERSION;
use fadlora_run::{
    targets_label, EpochLog, LoraTarget, Mode, ParamCounts, PeakMemory, Plan, PlannedRun, RunAxes,
    RunConfig, RunRecord, SplitResult, TimeStats,
};
use polars::prelude::*;

const MIB: u64 = 1024 * 1024;
const FULL_TRAINABLE: usize = 1_000_000;

fn mini_spec() -> String {
    format!(
        "asvspoof2019:{}/../../datasets/mini",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One run of the fixture.
struct Spec {
    targets: Option<Vec<LoraTarget>>,
    rank: Option<usize>,
    /// A frozen-feature probe of this hidden state.
    probe_layer: Option<usize>,
    /// Partial fine-tuning of this many top layers.
    partial_top: Option<usize>,
    /// A layer sum.
    layer_sum: bool,
    crop: usize,
    seed: u64,
    dev_eer: f64,
    eval_eer: f64,
    /// As if the organisers' ASV scores were given: EER / 50.
    eval_min_tdcf: Option<f64>,
    trainable: usize,
    peak_mib: u64,
    step_ms: f64,
    /// How far apart the two classes' scores sit.
    separation: f64,
}

impl Spec {
    fn full(seed: u64, dev_eer: f64, eval_eer: f64) -> Spec {
        Spec {
            targets: None,
            rank: None,
            probe_layer: None,
            partial_top: None,
            layer_sum: false,
            crop: 32_000,
            seed,
            dev_eer,
            eval_eer,
            eval_min_tdcf: Some(eval_eer / 50.0),
            trainable: FULL_TRAINABLE,
            peak_mib: 2048,
            step_ms: 400.0,
            separation: 2.5,
        }
    }

    fn lora(targets: &[LoraTarget], rank: usize, seed: u64, dev: f64, eval: f64) -> Spec {
        Spec {
            targets: Some(targets.to_vec()),
            rank: Some(rank),
            probe_layer: None,
            partial_top: None,
            layer_sum: false,
            crop: 32_000,
            seed,
            dev_eer: dev,
            eval_eer: eval,
            eval_min_tdcf: Some(eval / 50.0),
            trainable: targets.len() * rank * 125,
            peak_mib: 900 + rank as u64 * 10,
            step_ms: 250.0 + rank as f64,
            separation: 1.2 + rank as f64 * 0.1,
        }
    }

    /// A head-only run: few parameters, little memory, fast steps, weak separation.
    fn probe(layer: usize, seed: u64, dev: f64, eval: f64) -> Spec {
        Spec {
            targets: None,
            rank: None,
            probe_layer: Some(layer),
            partial_top: None,
            layer_sum: false,
            crop: 32_000,
            seed,
            dev_eer: dev,
            eval_eer: eval,
            eval_min_tdcf: Some(eval / 50.0),
            trainable: 514,
            peak_mib: 600,
            step_ms: 80.0,
            separation: 0.8 + layer as f64 * 0.1,
        }
    }

    /// Partial fine-tuning of the top `count` layers: between LoRA and full in every way.
    fn partial(count: usize, seed: u64, dev: f64, eval: f64) -> Spec {
        Spec {
            partial_top: Some(count),
            trainable: count * 789_760,
            peak_mib: 1500,
            step_ms: 300.0,
            ..Spec::full(seed, dev, eval)
        }
    }

    /// A layer sum: a probe's costs, one weight per hidden state more.
    fn layer_sum(seed: u64, dev: f64, eval: f64) -> Spec {
        Spec {
            probe_layer: None,
            layer_sum: true,
            trainable: 514 + 5,
            ..Spec::probe(4, seed, dev, eval)
        }
    }

    fn mode(&self) -> Mode {
        if self.partial_top.is_some() {
            Mode::Partial
        } else if self.layer_sum {
            Mode::LayerSum
        } else if self.probe_layer.is_some() {
            Mode::Probe
        } else if self.targets.is_some() {
            Mode::Lora
        } else {
            Mode::Full
        }
    }

    fn group(&self) -> String {
        let mut g = match (&self.targets, self.rank, self.probe_layer) {
            _ if self.layer_sum => "layer-sum".to_string(),
            _ if self.partial_top.is_some() => {
                format!("partial-top-{}", self.partial_top.unwrap_or_default())
            }
            (_, _, Some(layer)) => format!("probe-L{layer}"),
            (Some(t), Some(r), _) => format!("lora-{}-r{r}", targets_label(t)),
            _ => "full".to_string(),
        };
        if self.crop != 32_000 {
            g.push_str(&format!("-c{}", self.crop));
        }
        g
    }

    fn id(&self) -> String {
        format!("{}-s{}-0123abcd", self.group(), self.seed)
    }
}

fn run_config(spec: &Spec, dataset: &str, out: &Path) -> RunConfig {
    let mut toml = format!(
        "name = \"{id}\"\nbackend = \"flex\"\nseed = {seed}\noutput_dir = \"{out}\"\n\n\
         [data]\ndataset = \"{dataset}\"\neval_split = \"eval\"\ncrop_samples = {crop}\n\n\
         [model]\npreset = \"tiny\"\n",
        id = spec.id(),
        seed = spec.seed,
        out = out.display(),
        crop = spec.crop,
    );
    if let (Some(targets), Some(rank)) = (&spec.targets, spec.rank) {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        toml.push_str(&format!(
            "\n[lora]\nrank = {rank}\nalpha = {}\ntargets = [{}]\n",
            2 * rank,
            list.join(", ")
        ));
    }
    if let Some(layer) = spec.probe_layer {
        toml.push_str(&format!("\n[probe]\nlayer = {layer}\n"));
    }
    if let Some(count) = spec.partial_top {
        toml.push_str(&format!("\n[partial]\ncount = {count}\n"));
    }
    if spec.layer_sum {
        toml.push_str("\n[layer_sum]\n");
    }
    RunConfig::parse(&toml, Path::new("fixture.toml"), schema_only).expect("fixture TOML is valid")
}

/// Deterministic noise in [-1, 1).
fn noise(id: &str, seed: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    (h % 1_000_000) as f64 / 500_000.0 - 1.0
}

fn write_scores(run_dir: &Path, spec: &Spec, dataset: &str) -> (usize, usize) {
    let utterances = fadlora_run::scores::read_protocol(dataset).expect("mini protocol");
    let mut text = String::new();
    let (mut n_bona, mut n_spoof) = (0, 0);
    for u in utterances.iter().filter(|u| u.split == Split::Eval) {
        let centre = match u.label {
            Label::Bonafide => {
                n_bona += 1;
                spec.separation / 2.0
            }
            Label::Spoof => {
                n_spoof += 1;
                -spec.separation / 2.0
            }
        };
        // Overlapping classes: an imperfect detector.
        text.push_str(&format!(
            "{} {}\n",
            u.id,
            centre + 1.5 * noise(&u.id, spec.seed)
        ));
    }
    std::fs::create_dir_all(run_dir.join("scores")).unwrap();
    std::fs::write(run_dir.join("scores/eval.txt"), text).unwrap();
    (n_bona, n_spoof)
}

fn record(spec: &Spec, config: RunConfig, n_bona: usize, n_spoof: usize) -> RunRecord {
    let epoch = |epoch: usize| EpochLog {
        epoch,
        steps: 10 * epoch as u64,
        train_loss: 0.5,
        train_eer_percent: None,
        dev_loss: 0.6,
        dev_eer_percent: spec.dev_eer,
        lr: 1e-3,
        wall_seconds: 10.0,
        improved: epoch == 2,
    };
    RunRecord {
        record_version: RECORD_VERSION,
        name: Some(spec.id()),
        mode: spec.mode(),
        backend: "flex".into(),
        device: "cpu".into(),
        git_commit: Some("0123456789ab".into()),
        config,
        params: ParamCounts {
            trainable: spec.trainable,
            total: FULL_TRAINABLE
                + if spec.targets.is_some() {
                    spec.trainable
                } else {
                    0
                },
        },
        memory: PeakMemory {
            peak_mem_bytes: Some(spec.peak_mib * MIB),
            peak_reserved_bytes: None,
            kind: "process peak RSS (VmHWM)".into(),
        },
        step_time: Some(TimeStats {
            count: 20,
            median_ms: spec.step_ms,
            p90_ms: spec.step_ms * 1.2,
            min_ms: spec.step_ms * 0.9,
            mean_ms: spec.step_ms * 1.05,
        }),
        train_utt_per_s: 30.0,
        eval_utt_per_s: 90.0,
        epochs: (1..=3).map(epoch).collect(),
        steps: 30,
        best_epoch: 2,
        stopped_early: false,
        dev: SplitResult {
            split: "dev".into(),
            n_bonafide: 20,
            n_spoof: 40,
            eer_percent: spec.dev_eer,
            threshold: 0.0,
            loss: 0.6,
            min_tdcf: None,
            scores_file: "scores/dev.txt".into(),
            // As records written before intervals and breakdowns: the report makes them.
            eer_ci: None,
            bootstrap: None,
            breakdown: Vec::new(),
        },
        eval: Some(SplitResult {
            split: "eval".into(),
            n_bonafide: n_bona,
            n_spoof,
            eer_percent: spec.eval_eer,
            threshold: 0.0,
            loss: 0.6,
            min_tdcf: spec.eval_min_tdcf,
            scores_file: "scores/eval.txt".into(),
            eer_ci: None,
            bootstrap: None,
            breakdown: Vec::new(),
        }),
        extra_evals: Vec::new(),
        wall_seconds: 60.0,
    }
}

/// Writes `plan.json`, and a record + eval scores for every finished spec.
fn build(root: &Path, dataset: &str, finished: &[Spec], unfinished: &[Spec]) -> Plan {
    let dir = root.join("fixture");
    let mut runs = Vec::new();
    for spec in finished.iter().chain(unfinished) {
        let out = dir.join(spec.id());
        runs.push(PlannedRun {
            id: spec.id(),
            group: spec.group(),
            axes: RunAxes {
                mode: spec.mode(),
                rank: spec.rank,
                alpha: spec.rank.map(|r| 2.0 * r as f64),
                targets: spec.targets.clone(),
                layers: None,
                probe_layer: spec.probe_layer,
                dora: false,
                experts: None,
                adapter_kind: None,
                adapter_size: None,
                partial_layers: spec.partial_top.map(|_| fadlora_run::PartialLayers::Top),
                partial_count: spec.partial_top,
                partial_feature_projection: false,
                crop_samples: spec.crop,
                seed: spec.seed,
            },
            config: run_config(spec, dataset, &out),
        });
    }
    let plan = Plan {
        experiment: "fixture".into(),
        description: "A hand-built sweep over the mini corpus.".into(),
        source: root.join("fixture.toml"),
        dir: dir.clone(),
        runs,
        published: Vec::new(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    plan.save().unwrap();
    for (spec, run) in finished.iter().zip(&plan.runs) {
        let run_dir = plan.run_dir(run);
        let (b, s) = write_scores(&run_dir, spec, &mini_spec());
        let rec = record(spec, run.config.clone(), b, s);
        std::fs::write(
            run_dir.join(RECORD_FILE),
            serde_json::to_string_pretty(&rec).unwrap(),
        )
        .unwrap();
    }
    plan
}

use LoraTarget::{K, O, Q, V};

fn main_fixture() -> (Vec<Spec>, Vec<Spec>) {
    let finished = vec![
        Spec::full(0, 10.0, 12.0),
        Spec::full(1, 12.0, 14.0),
        Spec::lora(&[Q, V], 1, 0, 18.0, 20.0),
        Spec::lora(&[Q, V], 1, 1, 22.0, 24.0),
        Spec::lora(&[Q, V], 4, 0, 14.0, 15.0),
        Spec::lora(&[Q, V], 4, 1, 15.0, 16.0),
        Spec::lora(&[Q, K, V, O], 4, 0, 16.0, 17.0),
    ];
    let unfinished = vec![Spec::lora(&[Q, K, V, O], 4, 1, 0.0, 0.0)];
    (finished, unfinished)
}

/// A string column of `frame`, in row order.
fn strings(frame: &DataFrame, column: &str) -> Vec<String> {
    let values = frame.column(column).unwrap().str().unwrap().clone();
    (0..frame.height())
        .map(|i| values.get(i).unwrap().to_string())
        .collect()
}

fn read_csv(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

fn f64_at(frame: &DataFrame, column: &str, row: usize) -> Option<f64> {
    frame
        .column(column)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .get(row)
}

fn row_of(frame: &DataFrame, group: &str) -> usize {
    let groups = frame.column("group").unwrap().str().unwrap().clone();
    (0..frame.height())
        .find(|&i| groups.get(i) == Some(group))
        .unwrap_or_else(|| panic!("no row for {group}"))
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: missing"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} != {expected}"
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 10_000,
        "{} is suspiciously small",
        path.display()
    );
}

fn assert_svg(path: &Path, texts: &[&str]) {
    let svg = read(path);
    assert!(svg.contains("<svg"), "{} is not an SVG", path.display());
    for text in texts {
        assert!(
            svg.contains(text),
            "{} lacks the text `{text}`",
            path.display()
        );
    }
}

/// With `FADLORA_REPORT_PREVIEW=<dir>`, copies the PNGs there for a look.
fn preview(report: &Path, prefix: &str) {
    let Some(target) = std::env::var_os("FADLORA_REPORT_PREVIEW") else {
        return;
    };
    let target = PathBuf::from(target);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(report).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&path, target.join(format!("{prefix}{name}"))).unwrap();
        }
    }
}

#[test]
fn summary_csv_has_one_row_per_finished_run_in_plan_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (finished, unfinished) = main_fixture();
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);

    let frame = summary_frame(&plan).unwrap();
    assert_eq!(frame.height(), finished.len());
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, SUMMARY_COLUMNS);

    let path = write_summary(&plan).unwrap();
    assert_eq!(path, plan.dir.join("summary.csv"));
    let back = read_csv(&path);
    assert_eq!(back.height(), finished.len());
    let ids = back.column("id").unwrap().str().unwrap().clone();
    for (i, spec) in finished.iter().enumerate() {
        assert_eq!(ids.get(i), Some(spec.id().as_str()));
    }
    // Nullable columns: full fine-tuning has no rank or alpha.
    assert_eq!(f64_at(&back, "rank", 0), None);
    assert_eq!(f64_at(&back, "alpha", 0), None);
    assert_eq!(f64_at(&back, "rank", 4), Some(4.0));
    assert_eq!(f64_at(&back, "alpha", 4), Some(8.0));
    assert_eq!(
        f64_at(&back, "peak_mem_bytes", 0),
        Some((2048 * MIB) as f64)
    );
    assert_eq!(f64_at(&back, "eval_eer_percent", 6), Some(17.0));
    assert_eq!(f64_at(&back, "step_ms_p90", 0), Some(480.0));
    assert_eq!(f64_at(&back, "epochs_run", 0), Some(3.0));
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(&plan.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn report_writes_tables_figures_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let (finished, unfinished) = main_fixture();
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);

    let report = write_report(&plan.dir).unwrap();
    let dir = plan.dir.join("report");
    assert_eq!(report.dir, dir);
    assert!(
        report.notes.is_empty(),
        "unexpected notes: {:?}",
        report.notes
    );
    preview(&dir, "");

    for name in [
        "runs.md",
        "runs.csv",
        "runs.tex",
        "summary.md",
        "summary.csv",
        "summary.tex",
        "report.md",
    ] {
        let path = dir.join(name);
        assert!(report.files.contains(&path), "{name} not listed");
        assert!(!read(&path).trim().is_empty(), "{name} is empty");
    }
    for stem in ["eer_vs_rank", "eer_vs_params", "memory_time", "det"] {
        assert!(report.files.contains(&dir.join(format!("{stem}.png"))));
        assert!(report.files.contains(&dir.join(format!("{stem}.svg"))));
        assert_png(&dir.join(format!("{stem}.png")));
    }
    assert!(!dir.join("eer_vs_length.png").exists());
    // No run has [[eval_sets]]: no cross-corpus table.
    assert!(!dir.join("cross_corpus.md").exists());
    assert!(!read(&dir.join("report.md")).contains("Cross-corpus"));
    assert_svg(
        &dir.join("eer_vs_rank.svg"),
        &[
            "LoRA rank (log2 scale)",
            "Eval EER (%)",
            "full fine-tuning (mean)",
            "LoRA q+v",
        ],
    );
    assert_svg(
        &dir.join("eer_vs_params.svg"),
        &["Trainable parameters (log10 scale)", "Eval EER (%)", "1M"],
    );
    assert_svg(
        &dir.join("memory_time.svg"),
        &[
            "Peak memory (MiB)",
            "Median step time (ms)",
            "lora-q+k+v+o-r4",
        ],
    );
    assert_svg(
        &dir.join("det.svg"),
        &[
            "Spoof false acceptance rate (%)",
            "Bona fide miss rate (%)",
            "best LoRA: lora-q+v-r4 s0",
            "best full: full s0",
        ],
    );

    // Per group, sorted: full first, then q+v by rank, then q+k+v+o.
    let summary = read_csv(&dir.join("summary.csv"));
    let groups = strings(&summary, "group");
    assert_eq!(
        groups,
        ["full", "lora-q+v-r1", "lora-q+v-r4", "lora-q+k+v+o-r4"]
    );
    // Hand-computed: eval 15 and 16 -> mean 15.5, sample std sqrt(0.5); dev 14 and 15.
    let r4 = row_of(&summary, "lora-q+v-r4");
    assert_close(f64_at(&summary, "eval_eer_mean", r4), 15.5, "r4 eval mean");
    assert_close(
        f64_at(&summary, "eval_eer_std", r4),
        0.5f64.sqrt(),
        "r4 eval std",
    );
    assert_close(f64_at(&summary, "dev_eer_mean", r4), 14.5, "r4 dev mean");
    // min t-DCF 0.30 and 0.32 -> 0.31 ± sqrt(0.0002).
    assert_close(
        f64_at(&summary, "eval_min_tdcf_mean", r4),
        0.31,
        "r4 t-DCF mean",
    );
    assert_close(
        f64_at(&summary, "eval_min_tdcf_std", r4),
        0.0002f64.sqrt(),
        "r4 t-DCF std",
    );
    assert_close(f64_at(&summary, "n_seeds", r4), 2.0, "r4 seeds");
    // Full: eval 12 and 14 -> 13 ± sqrt(2).
    let full = row_of(&summary, "full");
    assert_close(f64_at(&summary, "eval_eer_mean", full), 13.0, "full mean");
    assert_close(
        f64_at(&summary, "eval_eer_std", full),
        2f64.sqrt(),
        "full std",
    );
    // One seed: no standard deviation.
    let qkvo = row_of(&summary, "lora-q+k+v+o-r4");
    assert_eq!(f64_at(&summary, "eval_eer_std", qkvo), None);
    assert_close(f64_at(&summary, "n_seeds", qkvo), 1.0, "qkvo seeds");
    // Reduction factors: 1e6 / 250 (q+v r1: 2 targets x rank 1 x 125), / 1000, / 2000.
    assert_close(f64_at(&summary, "reduction_vs_full", full), 1.0, "full x");
    let r1 = row_of(&summary, "lora-q+v-r1");
    assert_close(f64_at(&summary, "reduction_vs_full", r1), 4000.0, "r1 x");
    assert_close(f64_at(&summary, "reduction_vs_full", r4), 1000.0, "r4 x");
    assert_close(f64_at(&summary, "reduction_vs_full", qkvo), 500.0, "qkvo x");
    assert_close(f64_at(&summary, "peak_mem_mib", r4), 940.0, "r4 MiB");

    let summary_md = read(&dir.join("summary.md"));
    assert!(summary_md.contains("| 15.50 ± 0.71 |"), "{summary_md}");
    assert!(summary_md.contains("Eval min t-DCF"), "{summary_md}");
    assert!(summary_md.contains("| 0.3100 ± 0.0141 |"), "{summary_md}");
    assert!(summary_md.contains("| 13.00 ± 1.41 |"));
    assert!(summary_md.contains("| 17.00 |"));
    assert!(summary_md.contains("4000.0x"));
    assert!(summary_md.contains("1000.0x"));
    assert!(summary_md.contains("500.0x"));
    assert!(summary_md.contains("32000 (2.00 s)"));
    let summary_tex = read(&dir.join("summary.tex"));
    assert!(summary_tex.contains("\\toprule"));
    assert!(summary_tex.contains("Dev EER \\%"));
    assert!(summary_tex.contains("lora-q+v-r4"));
    assert!(summary_tex.contains("15.50 $\\pm$ 0.71"));

    assert_eq!(read_csv(&dir.join("runs.csv")).height(), finished.len());
    assert_eq!(
        read(&dir.join("runs.md")).lines().count(),
        2 + finished.len()
    );

    let md = read(&dir.join("report.md"));
    assert!(md.starts_with("# fixture\n"));
    assert!(md.contains("A hand-built sweep over the mini corpus."));
    assert!(md.contains("randomly initialised `tiny` preset"));
    assert!(md.contains("no pretraining"));
    assert!(md.contains("`flex`") && md.contains("`cpu`") && md.contains("`0123456789ab`"));
    assert!(md.contains(&mini_spec()));
    assert!(md.contains("freeze every wav2vec2 weight"));
    assert!(md.contains("`q+v` / `q+k+v+o`"));
    assert!(md.contains("![EER vs LoRA rank](eer_vs_rank.png)"));
    assert!(md.contains("(det.png)"));
    assert!(md.contains(&summary_md));
    let unfinished_section = md.split("## Unfinished runs").nth(1).unwrap();
    assert!(
        unfinished_section.contains(&format!("`{}`", unfinished[0].id())),
        "{unfinished_section}"
    );
    assert!(unfinished_section.contains("not started"));
    assert!(!unfinished_section.contains(&finished[0].id()));
}

#[test]
fn report_of_full_runs_only_skips_lora_figures_with_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let finished = vec![Spec::full(0, 10.0, 12.0), Spec::full(1, 12.0, 14.0)];
    let plan = build(tmp.path(), &mini_spec(), &finished, &[]);
    let report = write_report(&plan.dir).unwrap();
    let dir = &report.dir;
    for name in [
        "runs.md",
        "runs.csv",
        "runs.tex",
        "summary.md",
        "summary.csv",
        "summary.tex",
    ] {
        assert!(!read(&dir.join(name)).trim().is_empty(), "{name}");
    }
    assert!(!dir.join("eer_vs_rank.png").exists());
    assert!(!dir.join("eer_vs_params.png").exists());
    assert_png(&dir.join("memory_time.png"));
    assert_png(&dir.join("det.png"));
    let notes = report.notes.join("\n");
    assert!(notes.contains("`eer_vs_rank` not drawn"), "{notes}");
    assert!(notes.contains("`eer_vs_params` not drawn"), "{notes}");
    let md = read(&dir.join("report.md"));
    assert!(md.contains("`eer_vs_rank` not drawn"));
    assert!(md.contains("Every planned run finished."));
    // No full-run column is blank: the one group reduces by 1x against itself.
    assert!(read(&dir.join("summary.md")).contains("1.0x"));
}

#[test]
fn report_survives_an_unreadable_protocol_and_plots_input_length() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = format!("asvspoof2019:{}/no-such-corpus", tmp.path().display());
    let mut short = Spec::lora(&[Q, V], 4, 0, 20.0, 22.0);
    short.crop = 16_000;
    let mut full_short = Spec::full(0, 14.0, 15.0);
    full_short.crop = 16_000;
    let finished = vec![
        Spec::full(0, 10.0, 12.0),
        full_short,
        Spec::lora(&[Q, V], 4, 0, 14.0, 15.0),
        short,
    ];
    let plan = build(tmp.path(), &missing, &finished, &[]);
    let report = write_report(&plan.dir).unwrap();
    let dir = &report.dir;
    preview(dir, "length_");
    assert!(!dir.join("det.png").exists());
    let notes = report.notes.join("\n");
    assert!(notes.contains("`det` not drawn"), "{notes}");
    assert!(notes.contains("no-such-corpus"), "{notes}");
    assert_png(&dir.join("eer_vs_length.png"));
    assert_svg(
        &dir.join("eer_vs_length.svg"),
        &["Input length (s at 16 kHz)", "Eval EER (%)", "LoRA q+v r4"],
    );
    assert_png(&dir.join("eer_vs_rank.png"));
    assert_svg(
        &dir.join("eer_vs_rank.svg"),
        &["LoRA q+v, 1.00 s", "LoRA q+v, 2.00 s"],
    );
    let md = read(&dir.join("report.md"));
    assert!(md.contains("![EER vs input length](eer_vs_length.png)"));
    assert!(md.contains("`det` not drawn"));
}

#[test]
fn report_of_a_plan_with_no_finished_run_still_writes_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = build(
        tmp.path(),
        &mini_spec(),
        &[],
        &[Spec::full(0, 0.0, 0.0), Spec::lora(&[Q, V], 4, 0, 0.0, 0.0)],
    );
    let report = write_report(&plan.dir).unwrap();
    for name in [
        "runs.csv",
        "summary.csv",
        "runs.md",
        "summary.tex",
        "report.md",
    ] {
        assert!(report.dir.join(name).is_file(), "{name}");
    }
    assert_eq!(read_csv(&report.dir.join("summary.csv")).height(), 0);
    let md = read(&report.dir.join("report.md"));
    assert!(md.contains("No run has finished yet."));
    assert!(md.contains("randomly initialised `tiny` preset"));
    assert!(md.contains("2 runs of the plan not finished"));
}

#[test]
fn a_moved_results_folder_still_reports_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (finished, unfinished) = main_fixture();
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);
    let moved = tmp.path().join("moved-elsewhere");
    std::fs::rename(&plan.dir, &moved).unwrap();

    write_report(&moved).unwrap();
    let runs = read_csv(&moved.join("report/runs.csv"));
    assert_eq!(runs.height(), finished.len());
}

#[test]
fn probe_runs_are_tabled_as_probes_and_drawn_apart_from_full_and_lora() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut finished, unfinished) = main_fixture();
    let mut short_probe = Spec::probe(4, 0, 30.0, 31.0);
    short_probe.crop = 16_000;
    finished.extend([
        Spec::probe(4, 0, 24.0, 26.0),
        Spec::probe(4, 1, 26.0, 28.0),
        Spec::probe(2, 0, 28.0, 29.0),
        short_probe,
    ]);
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);

    let runs = read_csv(&write_summary(&plan).unwrap());
    assert_eq!(runs.height(), finished.len());
    let probe_row = row_of(&runs, "probe-L4");
    let column = |name: &str, row: usize| {
        runs.column(name)
            .unwrap()
            .str()
            .unwrap()
            .get(row)
            .map(String::from)
    };
    assert_eq!(column("mode", probe_row).as_deref(), Some("probe"));
    assert_eq!(column("layers", probe_row).as_deref(), Some("L4"));
    assert_eq!(f64_at(&runs, "rank", probe_row), None);
    assert_eq!(f64_at(&runs, "alpha", probe_row), None);
    assert_eq!(f64_at(&runs, "trainable_params", probe_row), Some(514.0));

    let report = write_report(&plan.dir).unwrap();
    let dir = &report.dir;
    preview(dir, "probe_");
    assert!(
        report.notes.is_empty(),
        "unexpected notes: {:?}",
        report.notes
    );
    // Sorted after full fine-tuning and LoRA, by layer, then input length (shorter first).
    let summary = read_csv(&dir.join("summary.csv"));
    let groups = strings(&summary, "group");
    assert_eq!(
        groups,
        [
            "full",
            "lora-q+v-r1",
            "lora-q+v-r4",
            "lora-q+k+v+o-r4",
            "probe-L2",
            "probe-L4-c16000",
            "probe-L4"
        ]
    );
    let l4 = row_of(&summary, "probe-L4");
    assert_eq!(strings(&summary, "mode")[l4], "probe");
    // eval 26 and 28 -> 27 ± sqrt(2); dev 24 and 26 -> 25.
    assert_close(f64_at(&summary, "eval_eer_mean", l4), 27.0, "L4 eval mean");
    assert_close(
        f64_at(&summary, "eval_eer_std", l4),
        2f64.sqrt(),
        "L4 eval std",
    );
    assert_close(f64_at(&summary, "dev_eer_mean", l4), 25.0, "L4 dev mean");
    assert_close(f64_at(&summary, "n_seeds", l4), 2.0, "L4 seeds");
    assert_close(f64_at(&summary, "trainable_params", l4), 514.0, "L4 params");
    let summary_md = read(&dir.join("summary.md"));
    assert!(summary_md.contains("| probe-L4 | probe |"), "{summary_md}");
    assert!(summary_md.contains("| 27.00 ± 1.41 |"), "{summary_md}");
    assert!(read(&dir.join("runs.md")).contains("probe-L2-s0-0123abcd"));

    // Every figure is drawn; probes are named as probes, never as full or LoRA.
    for stem in [
        "eer_vs_rank",
        "eer_vs_params",
        "memory_time",
        "det",
        "eer_vs_length",
    ] {
        assert_png(&dir.join(format!("{stem}.png")));
    }
    assert_svg(
        &dir.join("eer_vs_params.svg"),
        &["probe L4, 2.00 s", "probe L2, 2.00 s", "probe L4, 1.00 s"],
    );
    assert_svg(&dir.join("eer_vs_length.svg"), &["probe L4", "probe L2"]);
    assert_svg(&dir.join("memory_time.svg"), &["probe-L4-c16000"]);
    assert_svg(&dir.join("det.svg"), &["best probe: probe-L4 s0"]);
    let rank_svg = read(&dir.join("eer_vs_rank.svg"));
    assert!(!rank_svg.contains("probe"), "the rank figure is about LoRA");
    let length_svg = read(&dir.join("eer_vs_length.svg"));
    assert!(!length_svg.contains("LoRA - r-"), "a probe drawn as LoRA");

    let md = read(&dir.join("report.md"));
    assert!(md.contains("probes freeze the whole wav2vec2"), "{md}");
    assert!(md.contains("hidden state 4 / 2"), "{md}");
}

/// A run's eval scores as the report joins them: labelled from the mini protocol.
fn eval_scores(plan: &Plan, index: usize) -> Vec<fadlora_run::scores::Scored> {
    let protocol = fadlora_run::scores::read_protocol(&mini_spec()).unwrap();
    let labels: std::collections::HashMap<&str, Label> = protocol
        .iter()
        .filter(|u| u.split == Split::Eval)
        .map(|u| (u.id.as_str(), u.label))
        .collect();
    let path = plan.run_dir(&plan.runs[index]).join("scores/eval.txt");
    fadlora_run::scores::read_score_file(&path)
        .unwrap()
        .into_iter()
        .map(|(id, score)| fadlora_run::scores::Scored {
            label: labels[id.as_str()],
            id,
            score,
        })
        .collect()
}

/// The markdown table row whose first cells are `first`.
fn table_row<'a>(md: &'a str, first: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row `{first}` in:\n{md}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

#[test]
fn report_tables_intervals_attacks_pooled_seeds_and_paired_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let (finished, unfinished) = main_fixture();
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);
    let report = write_report(&plan.dir).unwrap();
    let dir = &report.dir;
    let md = read(&dir.join("report.md"));

    // Every attack of the mini eval split, each against all 100 bona fide trials.
    let breakdown = read(&dir.join("breakdown.md"));
    for attack in [
        "codec2-700c",
        "espeak",
        "festival-diphone",
        "festival-hts",
        "flite",
        "piper-vits",
        "world",
    ] {
        let row = table_row(&breakdown, &format!("attack | {attack}"));
        assert_eq!(row[2], "100", "{attack}: {row:?}");
        let n_spoof = if matches!(attack, "flite" | "piper-vits") {
            "40"
        } else {
            "16"
        };
        assert_eq!(row[3], n_spoof, "{attack}");
    }
    assert!(md.contains("## Per-attack and per-condition EER"));
    assert!(md.contains(breakdown.trim()));
    // The single-seed group shows its EER with an interval; a two-seed group mean ± std.
    let flite = table_row(&breakdown, "attack | flite");
    assert!(flite[4].contains(" ± "), "{flite:?}");
    assert!(flite[7].contains(" ["), "{flite:?}");

    // The per-run breakdown CSV: the interval brackets each attack's EER, which is the
    // EER of all bona fide scores against that attack's spoofs.
    let csv = read_csv(&dir.join("breakdown.csv"));
    let scores = eval_scores(&plan, 0);
    let protocol = fadlora_run::scores::read_protocol(&mini_spec()).unwrap();
    let system: std::collections::HashMap<&str, Option<&str>> = protocol
        .iter()
        .map(|u| (u.id.as_str(), u.system.as_deref()))
        .collect();
    let bona: Vec<f64> = scores
        .iter()
        .filter(|s| s.label == Label::Bonafide)
        .map(|s| s.score)
        .collect();
    let espeak: Vec<f64> = scores
        .iter()
        .filter(|s| system[s.id.as_str()] == Some("espeak"))
        .map(|s| s.score)
        .collect();
    let want = fadlora_metrics::eer(&bona, &espeak).unwrap().eer * 100.0;
    let ids = strings(&csv, "id");
    let values = strings(&csv, "value");
    let row = (0..csv.height())
        .find(|&i| ids[i] == finished[0].id() && values[i] == "espeak")
        .expect("a row for espeak of the first run");
    assert_close(f64_at(&csv, "eer_percent", row), want, "espeak EER");
    let (low, high) = (
        f64_at(&csv, "ci_low_percent", row).unwrap(),
        f64_at(&csv, "ci_high_percent", row).unwrap(),
    );
    assert!(low <= want && want <= high, "{low} {want} {high}");

    // Runs: interval and trial counts of the eval split.
    let runs = read(&dir.join("runs.md"));
    assert!(runs.contains("Eval EER 95 % CI") && runs.contains("Eval bona fide / spoof"));
    assert!(table_row(&runs, &finished[0].id()).contains(&"100 / 160"));

    // Summary: the pooled-seed EER is the EER of both full seeds' scores together.
    let pooled = fadlora_run::stats::pooled_eer(&[&eval_scores(&plan, 0), &eval_scores(&plan, 1)])
        .unwrap()
        .0;
    let summary = read_csv(&dir.join("summary.csv"));
    let full = row_of(&summary, "full");
    assert_close(
        f64_at(&summary, "pooled_eer_percent", full),
        pooled,
        "pooled",
    );
    assert_close(f64_at(&summary, "n_spoof", full), 160.0, "n spoof");
    // Its interval resamples the trials once for both seeds.
    let ci = fadlora_run::stats::pooled_eer_ci(
        &[&eval_scores(&plan, 0), &eval_scores(&plan, 1)],
        &fadlora_metrics::BootstrapOptions::default(),
    )
    .unwrap();
    assert_close(
        f64_at(&summary, "pooled_eer_ci_low_percent", full),
        ci.low_percent,
        "pooled low",
    );
    assert_close(
        f64_at(&summary, "pooled_eer_ci_high_percent", full),
        ci.high_percent,
        "pooled high",
    );
    assert!(ci.low_percent <= pooled && pooled <= ci.high_percent);
    assert!(read(&dir.join("summary.md")).contains(&format!(
        "| {pooled:.2} [{:.2}, {:.2}] | 100 / 160 |",
        ci.low_percent, ci.high_percent
    )));
    assert!(md.contains("seeds score on their own scales"));

    // Paired: every LoRA run with a full run of its seed (q+k+v+o r4 s0 too), in group order.
    let paired = read_csv(&dir.join("paired.csv"));
    assert_eq!(
        strings(&paired, "group"),
        [
            "lora-q+v-r1",
            "lora-q+v-r1",
            "lora-q+v-r4",
            "lora-q+v-r4",
            "lora-q+k+v+o-r4"
        ]
    );
    let lora = eval_scores(&plan, 4); // lora q+v r4 seed 0
    let full0 = eval_scores(&plan, 0);
    let want = fadlora_run::stats::paired_by_id(&lora, &full0, &Default::default()).unwrap();
    assert_close(
        f64_at(&paired, "difference_pp", 2),
        want.difference * 100.0,
        "difference",
    );
    assert_close(
        f64_at(&paired, "ci_low_pp", 2),
        want.interval.low * 100.0,
        "low",
    );
    assert!(md.contains("## Paired comparison with full fine-tuning"));

    // The learning curves.
    assert_png(&dir.join("learning_curves.png"));
    assert_svg(
        &dir.join("learning_curves.svg"),
        &[
            "Dev EER (%)",
            "Epoch",
            "lora-q+v-r4 (2 seeds)",
            "full (2 seeds)",
        ],
    );
    assert!(md.contains("![Learning curves](learning_curves.png)"));
}

#[test]
fn a_record_with_intervals_and_attacks_is_reported_as_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let finished = vec![Spec::full(0, 10.0, 12.0)];
    let plan = build(tmp.path(), &mini_spec(), &finished, &[]);
    let path = plan.run_dir(&plan.runs[0]).join(RECORD_FILE);
    let mut record: RunRecord = serde_json::from_str(&read(&path)).unwrap();
    let eval = record.eval.as_mut().unwrap();
    eval.eer_ci = Some(fadlora_run::PercentInterval {
        low_percent: 1.25,
        high_percent: 33.5,
    });
    eval.bootstrap = Some(Default::default());
    eval.breakdown = vec![fadlora_run::SubsetEer {
        factor: "attack".into(),
        value: "A99".into(),
        n_bonafide: 7,
        n_spoof: 3,
        eer_percent: 42.0,
        eer_ci: None,
    }];
    std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
    let report = write_report(&plan.dir).unwrap();
    let runs = read(&report.dir.join("runs.md"));
    assert!(runs.contains("| [1.25, 33.50] |"), "{runs}");
    let breakdown = read(&report.dir.join("breakdown.md"));
    assert_eq!(table_row(&breakdown, "attack | A99")[4], "42.00");
    assert!(!breakdown.contains("espeak"), "{breakdown}");
    assert!(!read(&report.dir.join("report.md")).contains("computed here from"));
    // No LoRA run: nothing to pair.
    assert!(!report.dir.join("paired.md").exists());
}

#[test]
fn runs_on_different_trials_are_not_paired_and_the_report_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let finished = vec![
        Spec::full(0, 10.0, 12.0),
        Spec::lora(&[Q, V], 4, 0, 14.0, 15.0),
    ];
    let plan = build(tmp.path(), &mini_spec(), &finished, &[]);
    // The full run lost one trial's score.
    let path = plan.run_dir(&plan.runs[0]).join("scores/eval.txt");
    let text = read(&path);
    let (first, rest) = text.split_once('\n').unwrap();
    std::fs::write(&path, rest).unwrap();
    let missing = first.split_whitespace().next().unwrap();
    let report = write_report(&plan.dir).unwrap();
    let notes = report.notes.join("\n");
    assert!(notes.contains("is not compared with"), "{notes}");
    assert!(notes.contains(&format!("`{missing}`")), "{notes}");
    assert!(!report.dir.join("paired.md").exists());
}

#[test]
fn published_figures_are_tabled_beside_the_measured_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let qv = [LoraTarget::Q, LoraTarget::V];
    let finished = vec![
        Spec::full(0, 10.0, 12.0),
        Spec::full(1, 12.0, 14.0),
        Spec::lora(&qv, 4, 0, 9.0, 11.0),
    ];
    let mut plan = build(tmp.path(), &mini_spec(), &finished, &[]);
    let figure = |group: &str, metric, value, source: &str| fadlora_run::PublishedFigure {
        group: group.into(),
        metric,
        value,
        source: source.into(),
        note: None,
    };
    plan.published = vec![
        figure(
            "lora-q+v-r4",
            fadlora_run::PublishedMetric::EvalEerPercent,
            1.30,
            "secondary source: S",
        ),
        fadlora_run::PublishedFigure {
            note: Some("AASIST back end".into()),
            ..figure(
                "full",
                fadlora_run::PublishedMetric::EvalEerPercent,
                1.13,
                "secondary source: S",
            )
        },
        figure(
            "full",
            fadlora_run::PublishedMetric::TrainableParams,
            317e6,
            "abstract",
        ),
    ];
    plan.save().unwrap();
    let report = write_report(&plan.dir).unwrap();
    let md = read(&report.dir.join("report.md"));
    assert!(md.contains("## Published figures"), "{md}");
    assert_eq!(
        table_row(&md, "lora-q+v-r4 | eval_eer_percent"),
        [
            "lora-q+v-r4",
            "eval_eer_percent",
            "1.30",
            "11.00 (n = 1)",
            "secondary source: S",
            ""
        ]
    );
    assert_eq!(
        table_row(&md, "full | eval_eer_percent"),
        [
            "full",
            "eval_eer_percent",
            "1.13",
            "13.00 ± 1.41 (n = 2)",
            "secondary source: S",
            "AASIST back end"
        ]
    );
    assert_eq!(
        table_row(&md, "full | trainable_params")[2..4],
        ["317,000,000", "1,000,000"]
    );
    let tex = read(&report.dir.join("published.tex"));
    assert!(tex.contains("317,000,000"), "{tex}");
    // Without published figures there is no such section or file.
    let plain = tempfile::tempdir().unwrap();
    let plan = build(plain.path(), &mini_spec(), &finished, &[]);
    let report = write_report(&plan.dir).unwrap();
    assert!(!read(&report.dir.join("report.md")).contains("Published"));
    assert!(!report.dir.join("published.md").exists());
}

/// A set's result as the trainer records it (only what the report reads matters here).
fn extra_result(
    name: &str,
    eer: f64,
    n_bona: usize,
    n_spoof: usize,
) -> fadlora_run::NamedSplitResult {
    fadlora_run::NamedSplitResult {
        name: name.into(),
        dataset: format!("csv:/data/{name}.csv"),
        result: SplitResult {
            split: "all".into(),
            n_bonafide: n_bona,
            n_spoof,
            eer_percent: eer,
            threshold: 0.0,
            loss: 0.5,
            min_tdcf: None,
            scores_file: format!("scores/{name}.txt"),
            eer_ci: Some(fadlora_run::PercentInterval {
                low_percent: eer - 1.0,
                high_percent: eer + 1.0,
            }),
            bootstrap: None,
            breakdown: Vec::new(),
        },
    }
}

#[test]
fn runs_with_extra_eval_sets_get_a_cross_corpus_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (finished, unfinished) = main_fixture();
    let plan = build(tmp.path(), &mini_spec(), &finished, &unfinished);
    // Every finished run on `itw` (eval EER + 10); only seed 0 on `df21`, listed first, so
    // the column order must come from the sets, not from one run's list.
    for (spec, run) in finished.iter().zip(&plan.runs) {
        let path = plan.run_dir(run).join(RECORD_FILE);
        let mut rec: RunRecord = serde_json::from_str(&read(&path)).unwrap();
        if spec.seed == 0 {
            rec.extra_evals
                .push(extra_result("df21", spec.eval_eer + 20.0, 300, 3000));
        }
        rec.extra_evals
            .push(extra_result("itw", spec.eval_eer + 10.0, 1000, 2000));
        std::fs::write(&path, serde_json::to_string_pretty(&rec).unwrap()).unwrap();
    }
    let report = write_report(&plan.dir).unwrap();
    let dir = plan.dir.join("report");
    preview(&dir, "cross_");
    for name in ["cross_corpus.md", "cross_corpus.csv", "cross_corpus.tex"] {
        assert!(report.files.contains(&dir.join(name)), "{name} not listed");
    }
    let md = read(&dir.join("cross_corpus.md"));
    let lines: Vec<&str> = md.lines().collect();
    // The main eval split first, then the sets in the order first seen.
    assert_eq!(lines[0], "| Group | eval | df21 | itw |");
    // Full: eval 12 and 14, itw 22 and 24 -> 23 ± sqrt(2); df21 from seed 0 alone, with its
    // interval.
    let full = lines.iter().find(|l| l.starts_with("| full |")).unwrap();
    assert_eq!(
        *full,
        format!(
            "| full | 13.00 ± {sd:.2} | 32.00 [31.00, 33.00] | 23.00 ± {sd:.2} |",
            sd = 2f64.sqrt()
        )
    );
    // lora-q+k+v+o-r4 has only seed 0 finished.
    let one = lines
        .iter()
        .find(|l| l.starts_with("| lora-q+k+v+o-r4 |"))
        .unwrap();
    assert!(one.contains("| 27.00 [26.00, 28.00] |"), "{one}");

    let csv = read_csv(&dir.join("cross_corpus.csv"));
    // 4 groups x 3 sets.
    assert_eq!(csv.height(), 12);
    let sets = strings(&csv, "set");
    let groups = strings(&csv, "group");
    let at = |g: &str, s: &str| {
        (0..csv.height())
            .find(|&i| groups[i] == g && sets[i] == s)
            .unwrap()
    };
    let i = at("full", "itw");
    assert_close(f64_at(&csv, "eer_mean_percent", i), 23.0, "full itw mean");
    assert_close(
        f64_at(&csv, "eer_std_percent", i),
        2f64.sqrt(),
        "full itw std",
    );
    assert_close(f64_at(&csv, "n_bonafide", i), 1000.0, "itw bona fide");
    assert_close(
        f64_at(&csv, "n_seeds", at("full", "df21")),
        1.0,
        "df21 seeds",
    );

    let report_md = read(&dir.join("report.md"));
    let section = report_md
        .split("## Cross-corpus evaluation")
        .nth(1)
        .expect("a cross-corpus section");
    assert!(
        section.contains("df21 300 / 3,000") && section.contains("itw 1,000 / 2,000"),
        "{section}"
    );
    assert!(section.contains(&lines[0].to_string()), "{section}");
    assert!(read(&dir.join("cross_corpus.tex")).contains("df21 & itw"));
}

/// Partial fine-tuning and layer sums: their own markers and labels in the figures, their own
/// line of the training note, their own row in the summary.
#[test]
fn partial_and_layer_sum_runs_get_their_own_markers_and_training_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let finished = vec![
        Spec::full(0, 10.0, 12.0),
        Spec::full(1, 12.0, 14.0),
        Spec::partial(2, 0, 13.0, 14.0),
        Spec::partial(2, 1, 14.0, 15.0),
        Spec::layer_sum(0, 20.0, 22.0),
        Spec::layer_sum(1, 21.0, 23.0),
    ];
    let plan = build(tmp.path(), &mini_spec(), &finished, &[]);
    let report = write_report(&plan.dir).unwrap();
    let dir = plan.dir.join("report");
    let md = read(&dir.join("report.md"));
    assert!(
        md.contains("artial fine-tuning (groups `partial-<top|bottom>-<count>`"),
        "{md}"
    );
    assert!(md.contains("trains the top 2 encoder layers whole"), "{md}");
    assert!(md.contains("layer-sum runs (group `layer-sum`"), "{md}");
    let summary = read(&dir.join("summary.md"));
    assert!(
        summary.contains("partial-top-2") && summary.contains("layer-sum"),
        "{summary}"
    );
    let svgs: Vec<String> = report
        .files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
        .map(|f| read(f))
        .collect();
    for label in [
        "top 2 layers",
        "layer sum",
        "best partial",
        "best layer sum",
    ] {
        assert!(
            svgs.iter().any(|svg| svg.contains(label)),
            "no figure labels `{label}`"
        );
    }
}
