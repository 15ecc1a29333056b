//! The backend switch: cargo features decide which backends are compiled in, the run TOML or
//! `--backend` picks one of those at run time, and [`run_on`] hands a generic job the backend
//! type, its device and a memory probe.

use fadlora_model::ModelBackend;
use fadlora_run::BackendKind;

use crate::measure::MemoryProbe;
use crate::TrainError;

/// Which backends this build can run: the `flex`, `cuda` and `wgpu` cargo features of
/// fadlora-train (and of the `fadlora` binary) compile them in.
pub trait Compiled: Sized {
    fn is_compiled(&self) -> bool;
    /// `Ok` when compiled in, else an error naming the feature that compiles it.
    fn ensure_compiled(&self) -> Result<(), TrainError>;
}

impl Compiled for BackendKind {
    fn is_compiled(&self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    fn ensure_compiled(&self) -> Result<(), TrainError> {
        if self.is_compiled() {
            return Ok(());
        }
        let compiled = compiled_backends()
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

/// The backends compiled into this build.
pub fn compiled_backends() -> Vec<BackendKind> {
    BackendKind::ALL
        .into_iter()
        .filter(|b| b.is_compiled())
        .collect()
}

/// What a command without `--backend` runs on: flex if compiled in, else the first GPU one.
pub fn default_backend() -> BackendKind {
    compiled_backends()
        .first()
        .copied()
        .unwrap_or(BackendKind::Flex)
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

/// This process's turn at the backend RNG (see `JOB_TURN`), held until the guard drops. Unit
/// tests that draw from the RNG outside [`run_on`] take it too.
pub(crate) fn backend_turn() -> std::sync::MutexGuard<'static, ()> {
    // A job that panicked released the lock poisoned; the RNG state it left is reseeded anyway.
    JOB_TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `job` on the backend `kind`, or explains which feature to enable. Jobs in one process
/// run one at a time (see `JOB_TURN`); a job must not call `run_on` itself.
pub fn run_on<J: BackendJob>(kind: BackendKind, job: J) -> Result<J::Output, TrainError> {
    kind.ensure_compiled()?;
    let _turn = backend_turn();
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
    fn missing_backend_names_its_feature() {
        match BackendKind::ALL.into_iter().find(|b| !b.is_compiled()) {
            Some(kind) => {
                let message = kind.ensure_compiled().unwrap_err().to_string();
                assert!(
                    message.contains(&format!("--features {}", kind.feature())),
                    "{message}"
                );
            }
            None => assert_eq!(compiled_backends().len(), 3),
        }
    }
}
