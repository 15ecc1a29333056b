use std::path::PathBuf;

/// Why a dataset could not be read. Problems inside a list file name the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {what} not found", path.display())]
    Missing { path: PathBuf, what: String },

    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        reason: String,
    },

    #[error("{}:{line}: duplicate utterance id `{id}` (first seen at {first_seen})", path.display())]
    DuplicateId {
        path: PathBuf,
        line: u64,
        id: String,
        /// `file:line` of the earlier occurrence.
        first_seen: String,
    },

    #[error("invalid dataset spec `{spec}`: {reason}")]
    InvalidSpec { spec: String, reason: String },

    #[error("{count} of the dataset's audio files are missing, e.g. {}", first.display())]
    MissingAudio { count: usize, first: PathBuf },
}
