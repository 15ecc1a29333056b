//! The run folder's schema, free of burn: what a run is (the run TOML, [`RunConfig`]), what it
//! leaves behind (the record [`RunRecord`], score files, checkpoints' file names), and what a
//! sweep adds (its [`Plan`]), with the one [`write_atomic`] every writer uses.
//!
//! The trainer writes these files, the sweep plans and resumes runs by them, and the report
//! reads them; the report never trains or loads a network, so it depends on this crate and not
//! on burn. The names the files use (precisions, LoRA targets, backends, heads, full vs LoRA vs
//! probe) are defined once in [`vocab`] and used by the model and the trainer too.
//!
//! [`stats`] adds what a record says about uncertainty: bootstrap intervals, per-attack and
//! per-condition EERs, paired comparisons and pooled seeds.
//!
//! [`layout`] shows the folders.

pub mod config;
mod error;
pub mod fs;
pub mod layout;
pub mod lock;
pub mod plan;
pub mod record;
pub mod scores;
pub mod stats;
pub mod vocab;

pub use config::{
    AdapterSection, EvalSetSection, EvalWindow, ExtraRules, FrozenSection, Ia3Section, Invalid,
    LayerSumSection, LoraSection, MoeSection, PartialSection, ProbeSection, RunConfig, RunRules,
};
pub use error::RunError;
pub use fs::write_atomic;
pub use lock::{inspect_lock, LockOwner, LockState, LockTiming, RunLock};
pub use plan::{
    read_record, Plan, PlannedRun, PublishedFigure, PublishedMetric, RunAxes, RunState,
};
pub use record::{
    EpochLog, NamedSplitResult, ParamCounts, PeakMemory, PercentInterval, RunRecord, SplitResult,
    SubsetEer, TimeStats,
};
pub use vocab::{
    parse_targets, targets_label, AdapterKind, Augment, BackendKind, HeadKind, LoraTarget, Method,
    Mode, MoeRouting, PartialLayers, Precision, ScoreKind, UnknownLoraTarget,
};
