//! Summaries and reports of a sweep's results folder (`results/<experiment>/`, laid out as
//! `fadlora_run::layout` shows). The report reads run folders and never trains or loads a
//! network: it depends on fadlora-run's schema, not on burn.
//!
//! This crate owns two things:
//!
//! - `summary.csv` beside `plan.json`: one row per finished run of the plan, in plan order
//!   ([`summary_frame`], [`write_summary`]). The sweep rewrites it after every finished run,
//!   atomically.
//! - `report/`, written by [`write_report`]: per-run and per-group tables (`runs.*`,
//!   `summary.*` as Markdown, CSV and LaTeX; `breakdown.*` per attack and condition and
//!   `paired.*` against full fine-tuning where there is something to show, `published.*` when
//!   the experiment lists published figures, `cross_corpus.*` when runs have
//!   `[[eval_sets]]`: one column per evaluation set), the figures
//!   (`eer_vs_rank`, `eer_vs_params`, `eer_vs_memory`, `memory_time`, `det`, `learning_curves` and, when the
//!   input length varies, `eer_vs_length`, each as PNG and SVG) and `report.md`, which ties
//!   them together and says how the runs were made.
//!
//! Runs of one `group` are repetitions over seeds: the report aggregates them with polars
//! (mean, sample standard deviation with ddof 1, count) and pools their scores into one EER.
//! Each run's EER on the tabled split, and each attack's, comes with its 95 % bootstrap
//! interval over trials (see `README.md`). Every figure is drawn with plotters and an embedded
//! DejaVu Sans (`assets/`), so PNGs render text without any system font.

mod figures;
mod glyphs;
mod report;
mod stats;
mod summary;
mod table;

use std::path::{Path, PathBuf};

pub use report::{write_report, ReportFiles, REPORT_DIR};
pub use summary::{summary_frame, write_summary, SUMMARY_COLUMNS};

/// Re-exported so callers can use the frame without naming polars themselves.
pub use polars::frame::DataFrame;

/// Why a summary or report could not be written. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the plan or writing a file through the run schema's atomic writer.
    #[error(transparent)]
    Run(#[from] fadlora_run::RunError),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Building, aggregating or serialising a table failed.
    #[error("{}: {message}", path.display())]
    Table { path: PathBuf, message: String },

    /// plotters could not draw or save a figure.
    #[error("{}: cannot draw the figure: {message}", path.display())]
    Figure { path: PathBuf, message: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn table(path: &Path, message: impl std::fmt::Display) -> Self {
        ReportError::Table {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
