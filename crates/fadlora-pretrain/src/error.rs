use std::path::PathBuf;

/// Why pretraining could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(transparent)]
    Run(#[from] fadlora_run::RunError),
    #[error(transparent)]
    Train(#[from] fadlora_train::TrainError),
    #[error(transparent)]
    Data(#[from] fadlora_data::DataError),
    #[error(transparent)]
    Export(#[from] fadlora_model::ExportError),
    #[error("{}: {message}", path.display())]
    Audio { path: PathBuf, message: String },
    #[error("targets: {0}")]
    Targets(String),
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}
