//! Resource measurement for run records and benchmarks: peak memory, step-time statistics,
//! device and source-tree identification.

use std::path::Path;
use std::process::Command;

pub use fadlora_run::{PeakMemory, TimeStats};

/// Reads the current device usage `(in use, reserved)` in bytes.
type UsageSampler = Box<dyn Fn() -> Option<(u64, u64)>>;

/// How a backend's peak memory is observed.
pub struct MemoryProbe {
    kind: &'static str,
    /// Current device usage `(in use, reserved)`; `None` for the CPU, whose peak the kernel
    /// keeps for us.
    sampler: Option<UsageSampler>,
    peak_in_use: u64,
    peak_reserved: u64,
}

impl MemoryProbe {
    /// Process peak resident set size (`VmHWM` of `/proc/self/status`). It covers the process
    /// since start or since [`MemoryProbe::reset`].
    pub fn process_rss() -> Self {
        MemoryProbe {
            kind: "process peak RSS (VmHWM)",
            sampler: None,
            peak_in_use: 0,
            peak_reserved: 0,
        }
    }

    /// cubecl's memory-pool statistics, sampled by [`MemoryProbe::sample`] (burn 0.21 has no
    /// peak counter, so the peak is the largest value at the points the caller samples, each
    /// right after a device sync: after the forward pass, where activations are largest, and
    /// after each step).
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub fn cubecl<R: burn::cubecl::prelude::Runtime>(device: R::Device) -> Self {
        MemoryProbe {
            kind: "cubecl memory pool after device syncs: max bytes in use (peak_mem_bytes), \
                   max bytes reserved (peak_reserved_bytes)",
            sampler: Some(Box::new(move || {
                let usage = R::client(&device).memory_usage().ok()?;
                Some((
                    usage.bytes_in_use + usage.bytes_padding,
                    usage.bytes_reserved,
                ))
            })),
            peak_in_use: 0,
            peak_reserved: 0,
        }
    }

    pub fn sample(&mut self) {
        if let Some(sampler) = &self.sampler {
            if let Some((in_use, reserved)) = sampler() {
                self.peak_in_use = self.peak_in_use.max(in_use);
                self.peak_reserved = self.peak_reserved.max(reserved);
            }
        }
    }

    /// Forgets the peaks so far (after a warm-up). On the CPU this resets the kernel's
    /// `VmHWM` to the current RSS (`/proc/self/clear_refs`), where the kernel allows it.
    pub fn reset(&mut self) {
        self.peak_in_use = 0;
        self.peak_reserved = 0;
        if self.sampler.is_none() {
            let _ = std::fs::write("/proc/self/clear_refs", "5");
        }
    }

    pub fn peak(&self) -> PeakMemory {
        match self.sampler {
            None => PeakMemory {
                peak_mem_bytes: peak_rss_bytes(),
                peak_reserved_bytes: None,
                kind: self.kind.into(),
            },
            Some(_) => PeakMemory {
                peak_mem_bytes: Some(self.peak_in_use),
                peak_reserved_bytes: Some(self.peak_reserved),
                kind: self.kind.into(),
            },
        }
    }
}

/// `VmHWM` from `/proc/self/status`, in bytes (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU model from `/proc/cpuinfo` and the number of threads available.
pub fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model} ({threads} threads)")
}

/// `git rev-parse HEAD` of the tree containing `dir`, with `-dirty` when it has local
/// changes; `None` outside a repository or without git.
pub fn git_commit(dir: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1 << 20);
        }
    }
}
