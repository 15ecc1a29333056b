//! Replays every fuzz input kept in the repository (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the fuzz harness on stable Rust, so a crash found by
//! `cargo fuzz` stays fixed without nightly or libFuzzer.

// The harness loads checkpoints on the CPU backend.
#![cfg(feature = "flex")]

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("list fuzz inputs").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seed corpus for fuzz target {target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let bytes = fs::read(path).expect("read fuzz input");
            panic::catch_unwind(AssertUnwindSafe(|| run(&bytes))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs of fuzz target {target} panicked:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn decode_wav() {
    replay("decode_wav", harness::decode_wav);
}

#[test]
fn decode_flac() {
    replay("decode_flac", harness::decode_flac);
}

#[test]
fn protocols() {
    replay("protocols", harness::protocols);
}

#[test]
fn run_toml() {
    replay("run_toml", harness::run_toml);
}

#[test]
fn experiment_toml() {
    replay("experiment_toml", harness::experiment_toml);
}

#[test]
fn checkpoint() {
    replay("checkpoint", harness::checkpoint);
}

#[test]
fn adapter() {
    replay("adapter", harness::adapter);
}

#[test]
fn fairseq_checkpoint() {
    replay("fairseq_checkpoint", harness::fairseq_checkpoint);
}
