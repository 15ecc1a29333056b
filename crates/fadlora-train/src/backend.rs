//! The backend switch: cargo features decide which backends are compiled in, the run TOML or
//! `--backend` picks one of those at run time, and [`run_on`] hands a generic job the backend
//! type, its device and a memory probe.

use std::fmt;
use std::str::FromStr;

use fadlora_model::ModelBackend;
use serde::{Deserialize, Serialize};

use crate::measure::MemoryProbe;
use crate::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `Flex` CPU backend.
    Flex,
    /// burn's CUDA backend (cubecl).
    Cuda,
    /// burn's wgpu backend (Vulkan/Metal/DX12; Mesa lavapipe on a CPU-only Linux machine).
    Wgpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Cuda, BackendKind::Wgpu];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The cargo feature (of fadlora-train and the `fadlora` binary) that compiles it in.
    pub fn feature(self) -> &'static str {
        self.as_str()
    }

    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// What a run TOML without `backend` gets: flex if compiled in, else the first GPU one.
    pub fn default_compiled() -> BackendKind {
        Self::compiled()
            .first()
            .copied()
            .unwrap_or(BackendKind::Flex)
    }

    pub fn ensure_compiled(self) -> Result<(), TrainError> {
        if self.is_compiled() {
            return Ok(());
        }
        let compiled = Self::compiled()
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Err(TrainError::BackendNotCompiled {
            backend: self.as_str(),
            feature: self.feature(),
            compiled: if compiled.is_empty() {
                "none".into()
            } else {
                compiled
            },
        })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "cuda" => Ok(BackendKind::Cuda),
            "wgpu" | "vulkan" => Ok(BackendKind::Wgpu),
            other => Err(format!("unknown backend `{other}` (flex, cuda, wgpu)")),
        }
    }
}

/// A computation written once for every backend. [`run_on`] calls `run` with the concrete
/// backend type (training wraps it in `Autodiff<B>` itself).
pub trait BackendJob {
    type Output;
    fn run<B: ModelBackend>(self, device: B::Device, env: BackendEnv) -> Self::Output;
}

/// What a job learns about where it runs.
pub struct BackendEnv {
    pub kind: BackendKind,
    /// Human-readable device description for records.
    pub device_name: String,
    pub memory: MemoryProbe,
}

/// The backend RNG behind `B::seed` (and behind every random initialisation) is
/// process-global: two jobs at once in one process (parallel tests, a sweep on threads, an
/// evaluation beside a training run) would draw from each other's stream, and a seeded run
/// would no longer be reproducible. Jobs in one process take turns.
static JOB_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `job` on the backend `kind`, or explains which feature to enable. Jobs in one process
/// run one at a time (see `JOB_TURN`); a job must not call `run_on` itself.
pub fn run_on<J: BackendJob>(kind: BackendKind, job: J) -> Result<J::Output, TrainError> {
    kind.ensure_compiled()?;
    // A job that panicked released the lock poisoned; the RNG state it left is reseeded anyway.
    let _turn = JOB_TURN.lock().unwrap_or_else(|e| e.into_inner());
    match kind {
        #[cfg(feature = "flex")]
        BackendKind::Flex => {
            type B = burn::backend::Flex;
            let device = burn::backend::flex::FlexDevice;
            let env = BackendEnv {
                kind,
                device_name: crate::measure::cpu_name(),
                memory: MemoryProbe::process_rss(),
            };
            Ok(job.run::<B>(device, env))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            type B = burn::backend::Cuda;
            let device = burn::backend::cuda::CudaDevice::default();
            probe_device::<B>(
                kind,
                &device,
                "is an NVIDIA driver installed and a GPU visible?",
            )?;
            let env = BackendEnv {
                kind,
                device_name: format!(
                    "{} {:?}",
                    <B as burn::tensor::backend::Backend>::name(&device),
                    device
                ),
                memory: MemoryProbe::cubecl::<burn::cubecl::cuda::CudaRuntime>(device.clone()),
            };
            Ok(job.run::<B>(device, env))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            type B = burn::backend::Wgpu;
            let device = burn::backend::wgpu::WgpuDevice::default();
            probe_device::<B>(
                kind,
                &device,
                "no Vulkan adapter: install a GPU driver, or `mesa-vulkan-drivers` for the CPU one",
            )?;
            let env = BackendEnv {
                kind,
                device_name: format!(
                    "{} {:?}",
                    <B as burn::tensor::backend::Backend>::name(&device),
                    device
                ),
                memory: MemoryProbe::cubecl::<burn::cubecl::wgpu::WgpuRuntime>(device.clone()),
            };
            Ok(job.run::<B>(device, env))
        }
        #[allow(unreachable_patterns)]
        _ => {
            // Built without any backend (as the sweep and report crates use this one), `job`
            // has no other use.
            drop(job);
            unreachable!("ensure_compiled() rejected {kind}")
        }
    }
}

/// Runs one tiny operation on a GPU backend before the job. cubecl reports a device that
/// cannot start (no adapter, no driver) by panicking in its worker thread and then in the
/// caller; catching that here turns it into an error instead of a crash mid-run.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn probe_device<B: burn::tensor::backend::Backend>(
    kind: BackendKind,
    device: &B::Device,
    hint: &'static str,
) -> Result<(), TrainError> {
    let device = device.clone();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        burn::tensor::Tensor::<B, 1>::zeros([1], &device).into_data();
    }));
    std::panic::set_hook(quiet);
    started.map_err(|_| TrainError::DeviceUnavailable {
        backend: kind.as_str(),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>().unwrap(), kind);
        }
        assert!("tpu".parse::<BackendKind>().is_err());
    }

    #[test]
    fn missing_backend_names_its_feature() {
        match BackendKind::ALL.into_iter().find(|b| !b.is_compiled()) {
            Some(kind) => {
                let message = kind.ensure_compiled().unwrap_err().to_string();
                assert!(
                    message.contains(&format!("--features {}", kind.feature())),
                    "{message}"
                );
            }
            None => assert_eq!(BackendKind::compiled().len(), 3),
        }
    }
}
