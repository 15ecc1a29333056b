//! A sweep's runs, and the results folder they live in.
//!
//! ```text
//! results/<experiment>/
//!   plan.json            the runs of the current experiment TOML (rewritten by every sweep)
//!   summary.csv          one row per finished run of the plan (kept up to date by the CLI)
//!   <run-id>/
//!     run.toml           the resolved run configuration `fadlora train` was given
//!     train.log          what `fadlora train` printed, over every invocation
//!     config.toml, progress.json, checkpoints/, best/, scores/, record.json  (fadlora-train)
//!   report/              written by `fadlora report`
//! ```
//!
//! A run is finished exactly when its `record.json` exists: the trainer writes it last, to a
//! temporary file that is then renamed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use fadlora_train::config::LoraTargetName;
use fadlora_train::train::{PROGRESS_FILE, RECORD_FILE};
use fadlora_train::{RunConfig, RunRecord};
use serde::{Deserialize, Serialize};

use crate::SweepError;

pub const PLAN_FILE: &str = "plan.json";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const RUN_CONFIG_FILE: &str = "run.toml";
pub const LOG_FILE: &str = "train.log";

/// Full fine-tuning or LoRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Lora,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::Lora => "lora",
        })
    }
}

/// Where a run sits on the sweep's axes. LoRA-only fields are `None` for full fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAxes {
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<LoraTargetName>>,
    /// Adapted encoder layers; `None` = every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
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

    /// `all`, or the layer indices joined by `,`; `-` for full fine-tuning.
    pub fn layers_label(&self) -> String {
        match (self.mode, &self.layers) {
            (Mode::Full, _) => "-".into(),
            (Mode::Lora, None) => "all".into(),
            (Mode::Lora, Some(l)) => l
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

pub fn targets_label(targets: &[LoraTargetName]) -> String {
    targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// `<group>-s<seed>-<hash>`: the hash is taken over the run's configuration as written in
    /// the experiment (paths unresolved, output folder left out), so the ID stays put when the
    /// TOML grows new runs or the results folder moves, and changes when anything that shapes
    /// the run changes.
    pub id: String,
    /// The configuration without the seed (`lora-q+v-r4`, `full`): runs of one group are
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
    pub fn load(dir: &Path) -> Result<Plan, SweepError> {
        let path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| SweepError::io(&path, e))?;
        let mut plan: Plan = serde_json::from_str(&text).map_err(|e| SweepError::Corrupt {
            path,
            message: e.to_string(),
        })?;
        plan.dir = dir.to_path_buf();
        Ok(plan)
    }

    /// Writes `plan.json` atomically.
    pub fn save(&self) -> Result<(), SweepError> {
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

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a reader
/// sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SweepError::io(dir, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}{TEMP_SUFFIX}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        // On disk before the rename, so a crash cannot leave an empty file under the name.
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        // A failed write (disk full) leaves the old file and no partial copy beside it; the
        // error names the file the caller asked for, not the temporary one.
        let _ = std::fs::remove_file(&tmp);
        SweepError::io(path, e)
    })
}

/// The suffix of [`write_atomic`]'s temporary files (`.NAME.PID.tmp`).
pub const TEMP_SUFFIX: &str = ".tmp";

/// Removes the temporary files of [`write_atomic`] in `dir` that a killed sweep left behind
/// (each has its writer's process ID in its name, so no later write replaces it). Call it only
/// while holding the experiment's lock: then no other sweep is writing there.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && entry.path().is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
