use std::path::PathBuf;

/// Why a run could not be configured, trained, checkpointed or scored.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A run file (TOML, record, score file, plan) that does not parse, validate or write.
    #[error(transparent)]
    Run(#[from] fadlora_run::RunError),

    #[error("backend `{backend}` is not compiled into this binary: rebuild with `--features {feature}` (compiled in: {compiled})")]
    BackendNotCompiled {
        backend: &'static str,
        feature: &'static str,
        compiled: String,
    },

    #[error("backend `{backend}` is compiled in but its device does not start ({hint})")]
    DeviceUnavailable {
        backend: &'static str,
        hint: &'static str,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Data(#[from] fadlora_data::DataError),

    #[error(transparent)]
    Model(#[from] fadlora_model::LoadError),

    #[error(transparent)]
    ModelConfig(#[from] fadlora_model::ConfigError),

    #[error(transparent)]
    Metric(#[from] fadlora_metrics::MetricError),

    #[error("dataset {dataset}: {what}")]
    Dataset { dataset: String, what: String },

    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },

    #[error("{} holds a run with a different configuration (differences: {diff}); use another output_dir or delete it", dir.display())]
    ConfigChanged { dir: PathBuf, diff: String },

    #[error(transparent)]
    Lora(#[from] fadlora_model::LoraError),

    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f64 },

    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
