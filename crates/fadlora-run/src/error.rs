use std::path::{Path, PathBuf};

/// Why a run file could not be read, validated or written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A TOML that does not parse or does not validate. `line` is 1-based; it is absent only
    /// when the problem is a missing key, which has no line.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        path: PathBuf,
        line: Option<usize>,
        /// Dotted key path, e.g. `optim.lr`; empty for syntax errors outside any key.
        key: String,
        message: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file that exists but does not hold what its name promises (a score file with a
    /// non-number, a plan that does not parse). `path` carries `:line` where one is known.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },

    #[error(transparent)]
    Data(#[from] fadlora_data::DataError),

    #[error(transparent)]
    Metric(#[from] fadlora_metrics::MetricError),

    #[error("{0}")]
    Invalid(String),
}

impl RunError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        RunError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
