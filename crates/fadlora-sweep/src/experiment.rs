//! The experiment TOML: a base run plus sweep axes that combine as a grid.
//!
//! ```toml
//! name = "rank_ablation"                 # results/<name>/
//! description = "LoRA rank on q+v vs full fine-tuning"
//!
//! [base]                                 # a run TOML without `name` and `output_dir`
//! backend = "flex"
//! [base.data]
//! dataset = "asvspoof2019:../datasets/mini"
//! [base.model]
//! preset = "tiny"
//! [base.train]
//! epochs = 3
//!
//! [sweep]
//! ranks = [1, 4, 16]                     # LoRA ranks
//! targets = [["q", "v"], ["q", "k", "v", "o"]]   # target sets
//! alpha_per_rank = 2.0                   # alpha = 2 r   (or `alpha = 16.0`: fixed)
//! layers = ["all", [0, 1]]               # adapted layer selections
//! crop_samples = [16000, 32000]          # input lengths
//! seeds = [0, 1]
//! full_finetune = true                   # add the full fine-tuning baseline
//! full_lr = 1e-5                         # its learning rate (default: base.optim.lr)
//! probe_layers = [4]                     # frozen-feature probes of these hidden states
//! exclude = [{ rank = 16, targets = ["q", "k", "v", "o"] }]
//! include = [{ rank = 8, targets = ["o"] }]
//!
//! [slurm]                                # only for `fadlora sweep --slurm`
//! partition = "gpu"
//! time = "24:00:00"
//! throttle = 8                           # at most 8 runs at once
//!
//! [[reference.figures]]                  # published numbers the report sets beside ours
//! group = "lora-q+v-r4"                  # a run group of this experiment
//! metric = "eval_eer_percent"            # eval_eer_percent | dev_eer_percent |
//!                                        # eval_min_tdcf | trainable_params
//! value = 1.30
//! source = "secondary source: ..."       # where a reader can check it
//! note = "AASIST back end"               # optional: what makes the comparison unequal
//! ```
//!
//! Every axis left out takes the base's value. Paths are relative to the TOML's folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fadlora_run::config::{
    entry_line, key_line, located, parse_toml, Invalid, LoraSection, ProbeSection, RunRules,
};
use fadlora_run::{
    targets_label, AdapterSection, FrozenSection, HeadKind, Ia3Section, LayerSumSection,
    LoraTarget, Method, Mode, MoeSection, PartialSection, Plan, PlannedRun, PublishedFigure,
    RunAxes, RunConfig, RunError,
};
use serde::Deserialize;

use crate::slurm::SlurmSection;
use crate::SweepError;

/// A parsed and validated experiment TOML.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: String,
    /// The TOML file, and its text (for locating keys in later errors).
    pub source: PathBuf,
    text: String,
    /// The rules of a run beyond the schema's (the trainer's model rules).
    rules: RunRules,
    /// Paths as written in the TOML (relative to its folder).
    pub base: RunConfig,
    pub sweep: SweepSection,
    /// Scheduler options for `fadlora sweep --slurm`.
    pub slurm: SlurmSection,
    /// Published figures to compare with.
    pub reference: ReferenceSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    name: String,
    #[serde(default)]
    description: String,
    base: RunConfig,
    #[serde(default)]
    sweep: SweepSection,
    #[serde(default)]
    slurm: SlurmSection,
    #[serde(default)]
    reference: ReferenceSection,
}

/// The `[reference]` table: figures published elsewhere for groups of this experiment, which
/// the report prints beside the measured ones. Kept out of every run's configuration, so
/// adding or correcting one never changes a run ID.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSection {
    #[serde(default)]
    pub figures: Vec<PublishedFigure>,
}

/// The `[sweep]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// LoRA ranks. Left out: `base.lora.rank` if the base is a LoRA run, else no LoRA runs.
    #[serde(default)]
    pub ranks: Option<Vec<usize>>,
    /// Target-module sets. Left out: `base.lora.targets`, else `[["q", "v"]]`.
    #[serde(default)]
    pub targets: Option<Vec<Vec<LoraTarget>>>,
    /// A fixed LoRA alpha for every rank.
    #[serde(default)]
    pub alpha: Option<f64>,
    /// alpha = this * rank. Neither given: `base.lora.alpha` if set, else 2 * rank.
    #[serde(default)]
    pub alpha_per_rank: Option<f64>,
    /// Adapted-layer selections: `"all"` or a list of encoder layer indices.
    #[serde(default)]
    pub layers: Option<Vec<LayerSelection>>,
    /// Input lengths in samples (training crops and evaluation windows).
    #[serde(default)]
    pub crop_samples: Option<Vec<usize>>,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Add full fine-tuning runs (one per seed and input length).
    #[serde(default)]
    pub full_finetune: bool,
    /// Learning rate of the full fine-tuning runs, and of partial fine-tuning (they usually
    /// need a far smaller one than LoRA: SSL_Anti-spoofing fine-tunes XLS-R at 1e-6). Default:
    /// `base.optim.lr`.
    #[serde(default)]
    pub full_lr: Option<f64>,
    /// Learning rate of the `sls` runs (the SLS head alone on a frozen front end). Its output
    /// units sit behind a SELU, and at rates that suit a small head (1e-3 with AdamW) they
    /// saturate and the head stops learning. Default: `base.optim.lr`.
    #[serde(default)]
    pub sls_lr: Option<f64>,
    /// Add frozen-feature probes (the head alone on a frozen wav2vec2), one per seed, input
    /// length and hidden state listed here (`[probe] layer`); they use `base.optim.lr`. Left
    /// out: `base.probe.layer` if the base is a probe, else no probes.
    #[serde(default)]
    pub probe_layers: Option<Vec<usize>>,
    /// Parameter-efficient methods to compare: `lora` and `dora` each run the rank grid,
    /// `moe-lora` runs it once per `experts` entry,
    /// `ia3`, `layer-sum` and `sls` (the SLS head on a frozen front end, `mode = "frozen"` in
    /// rules) one run per seed and input length, `adapter` and `partial` one per
    /// `adapter_sizes` / `partial_counts` entry. Left out: `["ia3"]` if the base has an `[ia3]`
    /// table, `["dora"]` if its `[lora]` sets `use_dora`, else `["lora"]`.
    #[serde(default)]
    pub methods: Option<Vec<Method>>,
    /// Experts per projection, one set of rank-grid runs each when `methods` lists
    /// `moe-lora` (routing and load-balancing weight from the base's `[lora.moe]`, else its
    /// defaults). Left out: the base's `[lora.moe] experts`, else 4.
    #[serde(default)]
    pub experts: Option<Vec<usize>>,
    /// Adapter-layer widths, one run each when `methods` lists `adapter` (their kind is the
    /// base's `[adapter] kind`, MMS by default). Left out: the base's `[adapter] size`, else 32.
    #[serde(default)]
    pub adapter_sizes: Option<Vec<usize>>,
    /// Layer counts of partial fine-tuning, one run each when `methods` lists `partial` (at the
    /// end of the encoder the base's `[partial] layers` names, top by default, with its
    /// `feature_projection`). Left out: the base's `[partial] count`, else 4.
    #[serde(default)]
    pub partial_counts: Option<Vec<usize>>,
    /// Grid points matching every key of a rule are dropped.
    #[serde(default)]
    pub exclude: Vec<RunRule>,
    /// Extra runs outside the grid, one per seed unless the rule names a seed. An include with
    /// `mode = "probe"` probes the first of `probe_layers`.
    #[serde(default)]
    pub include: Vec<RunRule>,
}

/// `"all"` or explicit layer indices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    Keyword(String),
    Indices(Vec<usize>),
}

impl LayerSelection {
    fn layers(&self) -> Result<Option<Vec<usize>>, String> {
        match self {
            LayerSelection::Keyword(k) if k == "all" => Ok(None),
            LayerSelection::Keyword(k) => Err(format!(
                "`{k}` is not a layer selection: write \"all\" or a list of layer indices"
            )),
            LayerSelection::Indices(v) => Ok(Some(v.clone())),
        }
    }
}

/// A set of axis values; a run matches when it has every value named.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRule {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub rank: Option<usize>,
    #[serde(default)]
    pub targets: Option<Vec<LoraTarget>>,
    #[serde(default)]
    pub layers: Option<LayerSelection>,
    #[serde(default)]
    pub crop_samples: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl RunRule {
    fn matches(&self, axes: &RunAxes) -> Result<bool, String> {
        let layers = self.layers.as_ref().map(|l| l.layers()).transpose()?;
        Ok(self.mode.is_none_or(|m| m == axes.mode)
            && self.rank.is_none_or(|r| axes.rank == Some(r))
            && self
                .targets
                .as_ref()
                .is_none_or(|t| axes.targets.as_ref().is_some_and(|a| same_set(a, t)))
            && layers.is_none_or(|l| axes.mode == Mode::Lora && axes.layers == l)
            && self.crop_samples.is_none_or(|c| axes.crop_samples == c)
            && self.seed.is_none_or(|s| axes.seed == s))
    }
}

fn same_set(a: &[LoraTarget], b: &[LoraTarget]) -> bool {
    let a: BTreeSet<_> = a.iter().map(|t| t.as_str()).collect();
    let b: BTreeSet<_> = b.iter().map(|t| t.as_str()).collect();
    a == b
}

/// The axes after defaults, in grid order.
struct Axes {
    methods: Vec<Method>,
    experts: Vec<usize>,
    adapter_sizes: Vec<usize>,
    partial_counts: Vec<usize>,
    ranks: Vec<usize>,
    targets: Vec<Vec<LoraTarget>>,
    layers: Vec<Option<Vec<usize>>>,
    probe_layers: Vec<usize>,
    crops: Vec<usize>,
    seeds: Vec<u64>,
}

impl Experiment {
    /// Reads and validates an experiment TOML; every run must also pass `rules` (the trainer
    /// gives its model rules, `fadlora_train::config::MODEL_RULES`). Errors name the file, line
    /// and dotted key.
    pub fn load(path: impl AsRef<Path>, rules: RunRules) -> Result<Experiment, SweepError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::io(path, e))?;
        Self::parse(&text, path, rules)
    }

    /// Parses and validates TOML text; `path` names the source and anchors relative paths.
    pub fn parse(text: &str, path: &Path, rules: RunRules) -> Result<Experiment, SweepError> {
        let file: ExperimentFile = parse_toml(text, path)?;
        let experiment = Experiment {
            name: file.name,
            description: file.description,
            source: path.to_path_buf(),
            text: text.to_string(),
            rules,
            base: file.base,
            sweep: file.sweep,
            slurm: file.slurm,
            reference: file.reference,
        };
        experiment.check()?;
        Ok(experiment)
    }

    fn error(&self, key: &str, message: impl Into<String>) -> SweepError {
        located(&self.text, &self.source, key, message.into()).into()
    }

    fn check(&self) -> Result<(), SweepError> {
        let name_ok = !self.name.is_empty()
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(self.error(
                "name",
                "names the results folder: use letters, digits, `-`, `_` or `.`",
            ));
        }
        if !self.base.output_dir.as_os_str().is_empty() {
            return Err(self.error(
                "base.output_dir",
                "is set by the sweep (<results>/<experiment>/<run-id>): remove it",
            ));
        }
        if self.base.name.is_some() {
            return Err(self.error("base.name", "is set by the sweep (the run ID): remove it"));
        }
        // Apart, so the error points at the offending `[[base.eval_sets]]` entry's line.
        if let Err((index, Invalid { key, message })) = self.base.check_eval_sets() {
            let field = key.rsplit('.').next().unwrap_or(key);
            return Err(SweepError::Run(fadlora_run::RunError::Config {
                path: self.source.clone(),
                line: entry_line(&self.text, "base.eval_sets", index, field),
                key: format!("base.{key}"),
                message: format!("`base.{key}` (entry {}): {message}", index + 1),
            }));
        }
        if let Err(Invalid { key, message }) = self
            .base
            .check()
            .and_then(|()| (self.rules.config)(&self.base))
        {
            return Err(self.error(&format!("base.{key}"), message));
        }
        if self.base.frozen.is_some() && self.base.head.kind != HeadKind::Sls {
            return Err(self.error(
                "base.frozen",
                "a sweep trains frozen front ends with the SLS head only (`methods = [\"sls\"]`): \
                 set `[base.head] kind = \"sls\"` or drop `[base.frozen]`",
            ));
        }
        if let Err((key, message)) = self.slurm.check() {
            return Err(self.error(&format!("slurm.{key}"), message));
        }
        let s = &self.sweep;
        if s.alpha.is_some() && s.alpha_per_rank.is_some() {
            return Err(self.error(
                "sweep.alpha_per_rank",
                "give `alpha` (fixed) or `alpha_per_rank` (alpha = c * r), not both",
            ));
        }
        for (key, empty) in [
            (
                "sweep.ranks",
                s.ranks.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.targets",
                s.targets.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.layers",
                s.layers.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.crop_samples",
                s.crop_samples.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.seeds",
                s.seeds.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.probe_layers",
                s.probe_layers.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.adapter_sizes",
                s.adapter_sizes.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.experts",
                s.experts.as_ref().is_some_and(|v| v.is_empty()),
            ),
            (
                "sweep.partial_counts",
                s.partial_counts.as_ref().is_some_and(|v| v.is_empty()),
            ),
        ] {
            if empty {
                return Err(self.error(key, "is empty: leave it out to use the base's value"));
            }
        }
        if let Some(layers) = &s.layers {
            for l in layers {
                l.layers().map_err(|m| self.error("sweep.layers", m))?;
            }
        }
        for (key, rules) in [("sweep.exclude", &s.exclude), ("sweep.include", &s.include)] {
            for rule in rules {
                if let Some(l) = &rule.layers {
                    l.layers().map_err(|m| self.error(key, m))?;
                }
            }
        }
        for rule in &s.include {
            if rule.mode == Some(Mode::Probe) && self.axes().probe_layers.is_empty() {
                return Err(self.error(
                    "sweep.include",
                    "a probe run needs a layer: list `probe_layers` (or give the base a \
                     `[probe]` table)",
                ));
            }
            if matches!(rule.mode, None | Some(Mode::Lora))
                && rule.rank.is_none()
                && self.base.lora.is_none()
                && s.ranks.is_none()
            {
                return Err(self.error(
                    "sweep.include",
                    "a LoRA run needs a `rank` (or `mode = \"full\"` for full fine-tuning)",
                ));
            }
        }
        for (n, rule) in s.include.iter().enumerate() {
            let what = match rule.mode {
                Some(Mode::Full) => "full fine-tuning",
                Some(Mode::Probe) => "a probe",
                Some(Mode::Ia3) => "an (IA)^3 run",
                Some(Mode::Adapter) => "an adapter run",
                Some(Mode::Partial) => "a partial fine-tuning run",
                Some(Mode::LayerSum) => "a layer-sum run",
                Some(Mode::Frozen) => "an SLS run",
                Some(Mode::Lora) | None => continue,
            };
            if rule.rank.is_some() || rule.targets.is_some() || rule.layers.is_some() {
                return Err(self.error(
                    "sweep.include",
                    format!(
                        "entry {}: {what} has no `rank`, `targets` or `layers`",
                        n + 1
                    ),
                ));
            }
        }
        // Building the plan validates every run; do it now so a bad TOML fails on load.
        let runs = self.runs()?;
        if runs.is_empty() {
            return Err(self.error(
                "sweep",
                "describes no runs: list `ranks` or `probe_layers`, set `full_finetune = true`, \
                 or `include` runs",
            ));
        }
        let groups: Vec<&str> = {
            let mut g: Vec<&str> = Vec::new();
            for (_, _, group, _) in &runs {
                if !g.contains(&group.as_str()) {
                    g.push(group);
                }
            }
            g
        };
        self.check_reference(&groups)
    }

    /// Every published figure names a group of this experiment, a value its metric can take
    /// and a source, and no figure is given twice.
    fn check_reference(&self, groups: &[&str]) -> Result<(), SweepError> {
        let figures = &self.reference.figures;
        for (n, f) in figures.iter().enumerate() {
            let problem = if !groups.contains(&f.group.as_str()) {
                Some((
                    "group",
                    format!(
                        "`{}` is no run group of this experiment (its groups: {})",
                        f.group,
                        groups.join(", ")
                    ),
                ))
            } else if let Err(m) = f.metric.check(f.value) {
                Some(("value", m))
            } else if f.source.trim().is_empty() {
                Some((
                    "source",
                    "must say where the figure comes from, so a reader can check it".into(),
                ))
            } else if figures[..n].iter().any(|g| {
                g.group == f.group && g.metric == f.metric && g.source.trim() == f.source.trim()
            }) {
                Some((
                    "source",
                    format!(
                        "repeats an earlier entry's group, metric and source ({} {})",
                        f.group,
                        f.metric.as_str()
                    ),
                ))
            } else {
                None
            };
            if let Some((field, message)) = problem {
                return Err(RunError::Config {
                    path: self.source.clone(),
                    line: entry_line(&self.text, "reference.figures", n, field),
                    key: format!("reference.figures.{field}"),
                    message: format!("`reference.figures` entry {}: `{field}`: {message}", n + 1),
                }
                .into());
            }
        }
        Ok(())
    }

    fn axes(&self) -> Axes {
        let s = &self.sweep;
        let base_lora = self.base.lora.as_ref();
        let default_method = if self.base.ia3.is_some() {
            Method::Ia3
        } else if self.base.adapter.is_some() {
            Method::Adapter
        } else if self.base.partial.is_some() {
            Method::Partial
        } else if self.base.layer_sum.is_some() {
            Method::LayerSum
        } else if self.base.frozen.is_some() {
            Method::Sls
        } else if base_lora.is_some_and(|l| l.use_dora) {
            Method::Dora
        } else if base_lora.is_some_and(|l| l.moe.is_some()) {
            Method::MoeLora
        } else {
            Method::Lora
        };
        let mut axes = Axes {
            methods: s.methods.clone().unwrap_or_else(|| vec![default_method]),
            experts: s
                .experts
                .clone()
                .unwrap_or_else(|| vec![self.moe_section().experts]),
            adapter_sizes: s
                .adapter_sizes
                .clone()
                .unwrap_or_else(|| vec![self.adapter_section().size]),
            partial_counts: s
                .partial_counts
                .clone()
                .unwrap_or_else(|| vec![self.partial_section().count]),
            ranks: s
                .ranks
                .clone()
                .or_else(|| base_lora.map(|l| vec![l.rank]))
                .unwrap_or_default(),
            targets: s
                .targets
                .clone()
                .or_else(|| base_lora.map(|l| vec![l.targets.clone()]))
                .unwrap_or_else(|| vec![vec![LoraTarget::Q, LoraTarget::V]]),
            layers: match &s.layers {
                Some(list) => list
                    .iter()
                    .map(|l| l.layers().expect("checked on load"))
                    .collect(),
                None => vec![base_lora.and_then(|l| l.layers.clone())],
            },
            probe_layers: s
                .probe_layers
                .clone()
                .or_else(|| self.base.probe.as_ref().map(|p| vec![p.layer]))
                .unwrap_or_default(),
            crops: s
                .crop_samples
                .clone()
                .unwrap_or_else(|| vec![self.base.data.crop_samples]),
            seeds: s.seeds.clone().unwrap_or_else(|| vec![self.base.seed]),
        };
        // Order does not make a different run: `["v", "q"]` is `["q", "v"]`.
        for targets in &mut axes.targets {
            canonical(targets);
        }
        for layers in axes.layers.iter_mut().flatten() {
            canonical(layers);
        }
        // Repeats dropped in the order written: an include probes the first layer listed.
        let mut seen = BTreeSet::new();
        axes.probe_layers.retain(|layer| seen.insert(*layer));
        let mut seen = BTreeSet::new();
        axes.methods.retain(|method| seen.insert(*method));
        let mut seen = BTreeSet::new();
        axes.adapter_sizes.retain(|size| seen.insert(*size));
        let mut seen = BTreeSet::new();
        axes.experts.retain(|k| seen.insert(*k));
        let mut seen = BTreeSet::new();
        axes.partial_counts.retain(|count| seen.insert(*count));
        axes
    }

    /// The `[lora.moe]` table of the mixture runs: the base's, else the defaults.
    fn moe_section(&self) -> MoeSection {
        self.base
            .lora
            .as_ref()
            .and_then(|l| l.moe.clone())
            .unwrap_or_default()
    }

    /// The `[adapter]` table of the adapter runs: the base's, else the defaults.
    fn adapter_section(&self) -> AdapterSection {
        self.base.adapter.clone().unwrap_or_default()
    }

    fn adapter_axes(&self, size: usize, crop: usize, seed: u64) -> RunAxes {
        RunAxes {
            mode: Mode::Adapter,
            adapter_kind: Some(self.adapter_section().kind),
            adapter_size: Some(size),
            ..full_axes(crop, seed)
        }
    }

    /// The `[partial]` table of the partial fine-tuning runs: the base's, else the defaults.
    fn partial_section(&self) -> PartialSection {
        self.base.partial.clone().unwrap_or_default()
    }

    fn partial_axes(&self, count: usize, crop: usize, seed: u64) -> RunAxes {
        let section = self.partial_section();
        RunAxes {
            mode: Mode::Partial,
            partial_layers: Some(section.layers),
            partial_count: Some(count),
            partial_feature_projection: section.feature_projection,
            ..full_axes(crop, seed)
        }
    }

    /// The `[ia3]` table of the (IA)^3 runs: the base's, else the defaults.
    fn ia3_section(&self) -> Ia3Section {
        let mut section = self.base.ia3.clone().unwrap_or_default();
        canonical(&mut section.targets);
        canonical(&mut section.feedforward);
        section
    }

    fn alpha_for(&self, rank: usize) -> f64 {
        let s = &self.sweep;
        if let Some(a) = s.alpha {
            a
        } else if let Some(c) = s.alpha_per_rank {
            c * rank as f64
        } else if let Some(a) = self.base.lora.as_ref().and_then(|l| l.alpha) {
            a
        } else {
            2.0 * rank as f64
        }
    }

    /// The grid points, excludes dropped and includes added, deduplicated, in run order: seed
    /// outermost, so the first pass over the grid gives one complete set of results.
    fn points(&self) -> Result<Vec<(RunAxes, &'static str)>, SweepError> {
        let axes = self.axes();
        let mut points = Vec::new();
        for &seed in &axes.seeds {
            for &crop in &axes.crops {
                if self.sweep.full_finetune {
                    points.push(full_axes(crop, seed));
                }
                for &method in &axes.methods {
                    if method == Method::Ia3 {
                        points.push(RunAxes {
                            mode: Mode::Ia3,
                            targets: Some(self.ia3_section().targets),
                            ..full_axes(crop, seed)
                        });
                        continue;
                    }
                    if method == Method::Adapter {
                        for &size in &axes.adapter_sizes {
                            points.push(self.adapter_axes(size, crop, seed));
                        }
                        continue;
                    }
                    if method == Method::LayerSum {
                        points.push(RunAxes {
                            mode: Mode::LayerSum,
                            ..full_axes(crop, seed)
                        });
                        continue;
                    }
                    if method == Method::Sls {
                        points.push(RunAxes {
                            mode: Mode::Frozen,
                            ..full_axes(crop, seed)
                        });
                        continue;
                    }
                    if method == Method::Partial {
                        for &count in &axes.partial_counts {
                            points.push(self.partial_axes(count, crop, seed));
                        }
                        continue;
                    }
                    let experts: Vec<Option<usize>> = if method == Method::MoeLora {
                        axes.experts.iter().copied().map(Some).collect()
                    } else {
                        vec![None]
                    };
                    for &experts in &experts {
                        for layers in &axes.layers {
                            for targets in &axes.targets {
                                for &rank in &axes.ranks {
                                    points.push(RunAxes {
                                        mode: Mode::Lora,
                                        rank: Some(rank),
                                        alpha: Some(self.alpha_for(rank)),
                                        targets: Some(targets.clone()),
                                        layers: layers.clone(),
                                        probe_layer: None,
                                        dora: method == Method::Dora,
                                        experts,
                                        ..full_axes(crop, seed)
                                    });
                                }
                            }
                        }
                    }
                }
                for &layer in &axes.probe_layers {
                    points.push(probe_axes(layer, crop, seed));
                }
            }
        }
        let mut kept = Vec::new();
        let mut rule_used = vec![false; self.sweep.exclude.len()];
        for point in points {
            let mut excluded = false;
            for (n, rule) in self.sweep.exclude.iter().enumerate() {
                let hit = rule
                    .matches(&point)
                    .map_err(|m| self.error("sweep.exclude", m))?;
                rule_used[n] |= hit;
                excluded |= hit;
            }
            if !excluded {
                kept.push((point, "grid"));
            }
        }
        if let Some(n) = rule_used.iter().position(|used| !used) {
            return Err(self.error(
                "sweep.exclude",
                format!("entry {} matches no run of the grid (a typo?)", n + 1),
            ));
        }
        for rule in &self.sweep.include {
            let seeds = match rule.seed {
                Some(s) => vec![s],
                None => axes.seeds.clone(),
            };
            let crop = rule.crop_samples.unwrap_or(axes.crops[0]);
            for seed in seeds {
                let point = if rule.mode == Some(Mode::Full) {
                    full_axes(crop, seed)
                } else if rule.mode == Some(Mode::Ia3) {
                    RunAxes {
                        mode: Mode::Ia3,
                        targets: Some(self.ia3_section().targets),
                        ..full_axes(crop, seed)
                    }
                } else if rule.mode == Some(Mode::Adapter) {
                    self.adapter_axes(axes.adapter_sizes[0], crop, seed)
                } else if rule.mode == Some(Mode::LayerSum) {
                    RunAxes {
                        mode: Mode::LayerSum,
                        ..full_axes(crop, seed)
                    }
                } else if rule.mode == Some(Mode::Frozen) {
                    RunAxes {
                        mode: Mode::Frozen,
                        ..full_axes(crop, seed)
                    }
                } else if rule.mode == Some(Mode::Partial) {
                    self.partial_axes(axes.partial_counts[0], crop, seed)
                } else if rule.mode == Some(Mode::Probe) {
                    probe_axes(axes.probe_layers[0], crop, seed)
                } else {
                    let rank = rule
                        .rank
                        .or(axes.ranks.first().copied())
                        .unwrap_or(self.base.lora.as_ref().map(|l| l.rank).unwrap_or_default());
                    RunAxes {
                        mode: Mode::Lora,
                        rank: Some(rank),
                        alpha: Some(self.alpha_for(rank)),
                        targets: Some({
                            let mut t = rule
                                .targets
                                .clone()
                                .unwrap_or_else(|| axes.targets[0].clone());
                            canonical(&mut t);
                            t
                        }),
                        layers: match &rule.layers {
                            Some(l) => l.layers().expect("checked on load").map(|mut l| {
                                canonical(&mut l);
                                l
                            }),
                            None => axes.layers[0].clone(),
                        },
                        probe_layer: None,
                        dora: axes.methods.first() == Some(&Method::Dora),
                        experts: (axes.methods.first() == Some(&Method::MoeLora))
                            .then(|| axes.experts[0]),
                        ..full_axes(crop, seed)
                    }
                };
                kept.push((point, "include"));
            }
        }
        Ok(kept)
    }

    /// The run configuration of one grid point, paths as written in the TOML.
    fn run_config(&self, axes: &RunAxes) -> RunConfig {
        let mut config = self.base.clone();
        config.seed = axes.seed;
        config.data.crop_samples = axes.crop_samples;
        config.probe = axes.probe_layer.map(|layer| ProbeSection { layer });
        config.ia3 = (axes.mode == Mode::Ia3).then(|| self.ia3_section());
        config.adapter = (axes.mode == Mode::Adapter).then(|| AdapterSection {
            kind: axes.adapter_kind.unwrap_or_default(),
            size: axes.adapter_size.expect("adapter runs have a size"),
        });
        config.partial = (axes.mode == Mode::Partial).then(|| PartialSection {
            layers: axes.partial_layers.unwrap_or_default(),
            count: axes.partial_count.expect("partial runs have a count"),
            feature_projection: axes.partial_feature_projection,
        });
        config.layer_sum = (axes.mode == Mode::LayerSum).then_some(LayerSumSection {});
        config.frozen = (axes.mode == Mode::Frozen).then_some(FrozenSection {});
        if axes.mode == Mode::Frozen {
            // The sweep's frozen-front-end method is SLS: its head is what it compares.
            config.head.kind = HeadKind::Sls;
            if let Some(lr) = self.sweep.sls_lr {
                config.optim.lr = lr;
            }
        }
        config.lora = match axes.mode {
            Mode::Probe | Mode::Ia3 | Mode::Adapter | Mode::LayerSum | Mode::Frozen => None,
            // Pretrained weights train directly, as in full fine-tuning: its learning rate.
            Mode::Full | Mode::Partial => {
                if let Some(lr) = self.sweep.full_lr {
                    config.optim.lr = lr;
                }
                None
            }
            Mode::Lora => {
                let base = self.base.lora.as_ref();
                Some(LoraSection {
                    rank: axes.rank.expect("LoRA runs have a rank"),
                    alpha: axes.alpha,
                    dropout: base.map(|l| l.dropout).unwrap_or(0.0),
                    targets: axes.targets.clone().expect("LoRA runs have targets"),
                    layers: axes.layers.clone(),
                    use_rslora: base.is_some_and(|l| l.use_rslora),
                    use_dora: axes.dora,
                    moe: axes.experts.map(|experts| MoeSection {
                        experts,
                        ..self.moe_section()
                    }),
                })
            }
        };
        config
    }

    /// Which TOML key a problem with a generated run should point at.
    fn sweep_key(&self, run_key: &str, origin: &str) -> String {
        if origin == "include" {
            return "sweep.include".into();
        }
        let s = &self.sweep;
        let axis = match run_key {
            "lora.rank" if s.ranks.is_some() => Some("sweep.ranks"),
            "lora.targets" if s.targets.is_some() => Some("sweep.targets"),
            "lora.layers" if s.layers.is_some() => Some("sweep.layers"),
            "lora.alpha" if s.alpha.is_some() => Some("sweep.alpha"),
            "lora.alpha" if s.alpha_per_rank.is_some() => Some("sweep.alpha_per_rank"),
            "data.crop_samples" if s.crop_samples.is_some() => Some("sweep.crop_samples"),
            "seed" if s.seeds.is_some() => Some("sweep.seeds"),
            "optim.lr" | "optim.min_lr" if s.full_lr.is_some() => Some("sweep.full_lr"),
            "optim.lr" | "optim.min_lr" if s.sls_lr.is_some() => Some("sweep.sls_lr"),
            "probe.layer" if s.probe_layers.is_some() => Some("sweep.probe_layers"),
            "adapter.size" if s.adapter_sizes.is_some() => Some("sweep.adapter_sizes"),
            "lora.moe.experts" if s.experts.is_some() => Some("sweep.experts"),
            "partial.count" if s.partial_counts.is_some() => Some("sweep.partial_counts"),
            _ => None,
        };
        axis.map(String::from)
            .unwrap_or_else(|| format!("base.{run_key}"))
    }

    /// The validated runs, with IDs, paths as written and no output folder.
    fn runs(&self) -> Result<Vec<(RunAxes, String, String, RunConfig)>, SweepError> {
        let points = self.points()?;
        let mut runs: Vec<(RunAxes, String, String, RunConfig)> = Vec::new();
        for (axes, origin) in points {
            let config = self.run_config(&axes);
            if let Err(Invalid { key, message }) =
                config.check().and_then(|()| (self.rules.config)(&config))
            {
                return Err(self.error(&self.sweep_key(key, origin), message));
            }
            let mut group = match axes.mode {
                Mode::Full => "full".to_string(),
                Mode::Ia3 => format!("ia3-{}", axes.targets_label()),
                Mode::Adapter => format!(
                    "adapter-{}-{}",
                    axes.adapter_kind.unwrap_or_default(),
                    axes.adapter_size.unwrap_or_default()
                ),
                Mode::Partial => format!(
                    "partial-{}-{}{}",
                    axes.partial_layers.unwrap_or_default(),
                    axes.partial_count.unwrap_or_default(),
                    if axes.partial_feature_projection {
                        "-fp"
                    } else {
                        ""
                    }
                ),
                Mode::Lora => format!(
                    "{}-{}-r{}",
                    match axes.experts {
                        Some(k) => format!("moe{k}"),
                        None if axes.dora => "dora".into(),
                        None => "lora".into(),
                    },
                    targets_label(axes.targets.as_deref().unwrap_or_default()),
                    axes.rank.unwrap_or_default()
                ),
                Mode::Probe => format!("probe-{}", axes.layers_label()),
                Mode::LayerSum => "layer-sum".to_string(),
                Mode::Frozen => "sls".to_string(),
            };
            // Suffixes depend on this run alone, never on which other runs the TOML lists, so
            // growing the grid never renames (and so retrains) existing runs.
            if axes.mode == Mode::Lora && axes.layers.is_some() {
                group.push_str(&format!("-L{}", axes.layers_label().replace(',', ".")));
            }
            if axes.crop_samples != self.base.data.crop_samples {
                group.push_str(&format!("-len{}", axes.crop_samples));
            }
            let id = format!("{group}-s{}-{}", axes.seed, config_hash(&config));
            if runs.iter().any(|(_, other, _, _)| *other == id) {
                continue; // an include that repeats a grid point
            }
            runs.push((axes, id, group, config));
        }
        Ok(runs)
    }

    /// The runs with resolved paths, writing into `<results>/<name>/<run-id>`.
    pub fn plan(&self, results: &Path) -> Result<Plan, SweepError> {
        let cwd = std::env::current_dir().map_err(|e| SweepError::io(Path::new("."), e))?;
        // One spelling per place: the trainer refuses to resume a folder whose configuration
        // text changed, so `./x.toml` and `x.toml` must give the same absolute paths.
        let results = normalize(&cwd.join(results));
        let dir = results.join(&self.name);
        let toml_dir = normalize(&cwd.join(self.source.parent().unwrap_or(Path::new("."))));
        let runs = self
            .runs()?
            .into_iter()
            .map(|(axes, id, group, mut config)| {
                config.resolve_paths(&toml_dir);
                config.data.dataset = normalize_spec(&config.data.dataset);
                config.model.checkpoint = config.model.checkpoint.as_deref().map(normalize);
                config.model.config = config.model.config.as_deref().map(normalize);
                config.data.asv_scores = config.data.asv_scores.as_deref().map(normalize);
                for set in &mut config.eval_sets {
                    set.dataset = normalize_spec(&set.dataset);
                    set.asv_scores = set.asv_scores.as_deref().map(normalize);
                }
                config.name = Some(id.clone());
                config.output_dir = dir.join(&id);
                PlannedRun {
                    id,
                    group,
                    axes,
                    config,
                }
            })
            .collect();
        Ok(Plan {
            experiment: self.name.clone(),
            description: self.description.clone(),
            source: normalize(&cwd.join(&self.source)),
            dir,
            runs,
            published: self.reference.figures.clone(),
        })
    }

    /// Checks that the dataset and checkpoint the runs read exist, naming the key, the path
    /// and where to get the data when they do not.
    pub fn check_inputs(&self, plan: &Plan) -> Result<(), SweepError> {
        let Some(run) = plan.runs.first() else {
            return Ok(());
        };
        let config = &run.config;
        let (kind, path) = split_spec(&config.data.dataset);
        if !path.exists() {
            return Err(self.missing("base.data.dataset", path, dataset_hint(&kind)));
        }
        for set in &config.eval_sets {
            let (kind, path) = split_spec(&set.dataset);
            if !path.exists() {
                return Err(self.missing("base.eval_sets", path, dataset_hint(&kind)));
            }
            if let Some(asv) = set.asv_scores.as_ref().filter(|a| !a.is_file()) {
                return Err(self.missing(
                    "base.eval_sets",
                    asv.clone(),
                    "Give the organisers' ASV scores for this set.".into(),
                ));
            }
        }
        if let Some(checkpoint) = &config.model.checkpoint {
            if !checkpoint.join("config.json").is_file() {
                let path = if checkpoint.is_dir() {
                    checkpoint.join("config.json")
                } else {
                    checkpoint.clone()
                };
                return Err(self.missing("base.model.checkpoint", path, CHECKPOINT_HINT.into()));
            }
        }
        if let Some(file) = &config.model.config {
            if !file.is_file() {
                return Err(self.missing(
                    "base.model.config",
                    file.clone(),
                    "Give a Hugging Face wav2vec2 config.json.".into(),
                ));
            }
        }
        if let Some(asv) = &config.data.asv_scores {
            if !asv.is_file() {
                return Err(self.missing(
                    "base.data.asv_scores",
                    asv.clone(),
                    "ASVspoof 2019 LA ships the organisers' ASV scores in \
LA/ASVspoof2019_LA_asv_scores/ (ASVspoof2019.LA.asv.eval.gi.trl.scores.txt for the eval split)."
                        .into(),
                ));
            }
        }
        // With a checkpoint or config file the architecture is only known now.
        for run in &plan.runs {
            if let Err(Invalid { key, message }) = (self.rules.inputs)(&run.config) {
                let key = match key {
                    "lora.layers" => "sweep.layers".to_string(),
                    "probe.layer" if self.sweep.probe_layers.is_some() => {
                        "sweep.probe_layers".to_string()
                    }
                    other => format!("base.{other}"),
                };
                return Err(self.error(&key, format!("{}: {message}", run.id)));
            }
        }
        Ok(())
    }

    fn missing(&self, key: &str, path: PathBuf, hint: String) -> SweepError {
        SweepError::MissingInput {
            source_toml: self.source.clone(),
            line: key_line(&self.text, key),
            key: key.into(),
            path,
            hint,
        }
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the paths may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// [`normalize`] on the path part of a dataset spec (`kind:PATH` or a bare path).
fn normalize_spec(spec: &str) -> String {
    match spec.split_once(':') {
        Some((kind, path)) if !kind.contains('/') && kind.len() > 1 => {
            format!("{kind}:{}", normalize(Path::new(path)).display())
        }
        _ => normalize(Path::new(spec)).display().to_string(),
    }
}

fn canonical<T: Ord>(values: &mut Vec<T>) {
    values.sort();
    values.dedup();
}

fn full_axes(crop: usize, seed: u64) -> RunAxes {
    RunAxes {
        mode: Mode::Full,
        rank: None,
        alpha: None,
        targets: None,
        layers: None,
        probe_layer: None,
        dora: false,
        experts: None,
        adapter_kind: None,
        adapter_size: None,
        partial_layers: None,
        partial_count: None,
        partial_feature_projection: false,
        crop_samples: crop,
        seed,
    }
}

fn probe_axes(layer: usize, crop: usize, seed: u64) -> RunAxes {
    RunAxes {
        mode: Mode::Probe,
        probe_layer: Some(layer),
        ..full_axes(crop, seed)
    }
}

const CHECKPOINT_HINT: &str = "It must be a Hugging Face wav2vec2 folder (config.json + \
model.safetensors or pytorch_model.bin). XLS-R 300M is `facebook/wav2vec2-xls-r-300m` \
(https://huggingface.co/facebook/wav2vec2-xls-r-300m): download it once, e.g. `huggingface-cli \
download facebook/wav2vec2-xls-r-300m --local-dir PATH`, and point the key at PATH (fadlora \
never downloads).";

fn dataset_hint(kind: &str) -> String {
    match kind {
        "asvspoof2019" | "asvspoof2019-la" => "ASVspoof 2019 LA is LA.zip from \
https://datashare.ed.ac.uk/handle/10283/3336; unpack it and point the key at the `LA` folder \
(it holds ASVspoof2019_LA_train/, _dev/, _eval/ and ASVspoof2019_LA_cm_protocols/)."
            .into(),
        "asvspoof2021-la" | "asvspoof2021-df" => "ASVspoof 2021 LA/DF audio is on Zenodo \
(https://www.asvspoof.org/index2021.html links it) and the keys are \
LA-keys-full.tar.gz / DF-keys-full.tar.gz; point the key at the folder holding both."
            .into(),
        "itw" | "in-the-wild" => "In-the-Wild is release_in_the_wild.zip \
(https://deepfake-total.com/in_the_wild); point the key at the folder holding meta.csv."
            .into(),
        _ => "`fadlora data check` describes the dataset layouts fadlora reads.".into(),
    }
}

/// FNV-1a over the canonical JSON of the configuration (paths as written, no output folder):
/// stable across processes, platforms and Rust versions, unlike `std`'s hasher.
fn config_hash(config: &RunConfig) -> String {
    let mut canonical = config.clone();
    canonical.name = None;
    canonical.output_dir = PathBuf::new();
    let json = serde_json::to_string(&canonical).expect("a RunConfig always serialises");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", (hash >> 32) ^ (hash & 0xffff_ffff))
}
/// A dataset spec's kind (lower case, empty for a bare path) and path.
fn split_spec(spec: &str) -> (String, PathBuf) {
    match spec.split_once(':') {
        Some((kind, path)) if !kind.contains('/') && kind.len() > 1 => {
            (kind.to_ascii_lowercase(), PathBuf::from(path))
        }
        _ => (String::new(), PathBuf::from(spec)),
    }
}
