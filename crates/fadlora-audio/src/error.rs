use std::path::{Path, PathBuf};

/// Why an audio file could not be turned into samples. Every variant that concerns a file names
/// it, so a report over thousands of files stays readable without extra context.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: file not found", path.display())]
    NotFound { path: PathBuf },

    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: empty file (0 bytes)", path.display())]
    EmptyFile { path: PathBuf },

    #[error("{}: the file holds no audio samples", path.display())]
    NoSamples { path: PathBuf },

    #[error("{}: truncated: {detail}", path.display())]
    Truncated { path: PathBuf, detail: String },

    #[error("{}: corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("{}: unsupported: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },

    #[error("{}: the decoder crashed: {detail}", path.display())]
    DecoderPanic { path: PathBuf, detail: String },

    #[error("{}cannot resample from {from_hz} Hz to {to_hz} Hz: {detail}", path_prefix(path.as_deref()))]
    Resample {
        /// The file whose samples were being resampled, when known.
        path: Option<PathBuf>,
        from_hz: u32,
        to_hz: u32,
        detail: String,
    },
}

fn path_prefix(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl AudioError {
    /// The file the error concerns (`None` only for [`resample`](crate::resample) on bare samples).
    pub fn path(&self) -> Option<&Path> {
        match self {
            AudioError::NotFound { path }
            | AudioError::Io { path, .. }
            | AudioError::EmptyFile { path }
            | AudioError::NoSamples { path }
            | AudioError::Truncated { path, .. }
            | AudioError::Corrupt { path, .. }
            | AudioError::Unsupported { path, .. }
            | AudioError::DecoderPanic { path, .. } => Some(path),
            AudioError::Resample { path, .. } => path.as_deref(),
        }
    }

    /// True when the file does not exist, as opposed to existing and failing to decode: a data
    /// check reports the two differently ("missing" versus "bad").
    pub fn is_missing(&self) -> bool {
        matches!(self, AudioError::NotFound { .. })
    }

    /// The reason without the path, for reports that print the path in a column of its own.
    pub fn reason(&self) -> String {
        let full = self.to_string();
        match self.path() {
            Some(path) => {
                let prefix = format!("{}: ", path.display());
                full.strip_prefix(&prefix)
                    .map(str::to_owned)
                    .unwrap_or(full)
            }
            None => full,
        }
    }

    pub(crate) fn with_path(self, file: &Path) -> Self {
        match self {
            AudioError::Resample {
                path: None,
                from_hz,
                to_hz,
                detail,
            } => AudioError::Resample {
                path: Some(file.to_path_buf()),
                from_hz,
                to_hz,
                detail,
            },
            other => other,
        }
    }
}
