use std::path::{Path, PathBuf};

/// Why an experiment could not be planned or swept.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A TOML problem located at `file:line` with the dotted key (from the run-config parser),
    /// or a run file that cannot be read or written.
    #[error(transparent)]
    Run(#[from] fadlora_run::RunError),

    /// An input the runs need is not there. `hint` says where to get it.
    #[error("{}:{}: `{key}`: {} does not exist. {hint}", source_toml.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()), path.display())]
    MissingInput {
        source_toml: PathBuf,
        line: Option<usize>,
        key: String,
        path: PathBuf,
        hint: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },

    #[error("another sweep is running in {} (it holds {}); wait for it or stop it first", dir.display(), lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },

    #[error("{0}")]
    Invalid(String),
}

impl SweepError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SweepError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
