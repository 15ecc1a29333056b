//! Helpers shared by the kill-loop and disk-full tests: the micro model's TOMLs, a seeded RNG,
//! and checks that a results folder holds only complete files.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fadlora_run::layout::RUN_LOCK_FILE;

pub fn fadlora() -> &'static str {
    env!("CARGO_BIN_EXE_fadlora")
}

/// `fadlora train --config CONFIG --no-progress`, not yet started.
pub fn train_command(config: &Path) -> Command {
    let mut command = Command::new(fadlora());
    command
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--no-progress");
    command
}

pub fn mini_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/mini")
        .canonicalize()
        .unwrap()
}

pub fn asv_scores() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/eer/asv_large_random.scores")
        .canonicalize()
        .unwrap()
}

/// The two-layer, 32-wide wav2vec2 of the sweep test: a fraction of a second per epoch.
pub const MICRO_MODEL: &str = r#"
preset = "tiny"
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 64
conv_channels = 16
num_conv_pos_embeddings = 16
num_conv_pos_embedding_groups = 4
dropout = 0.0
layerdrop = 0.0
"#;

/// A run TOML for `fadlora train`: the micro model on 4+4 utterances per split, `epochs`
/// epochs, LoRA q+v of `rank` (full fine-tuning when `None`).
pub fn micro_run_toml(out: &Path, epochs: usize, rank: Option<usize>) -> String {
    let lora = match rank {
        Some(r) => format!("[lora]\nrank = {r}\ntargets = [\"q\", \"v\"]\n"),
        None => String::new(),
    };
    format!(
        r#"
name = "micro"
backend = "flex"
seed = 1
output_dir = "{out}"
[data]
dataset = "asvspoof2019:{corpus}"
eval_split = "eval"
crop_samples = 8000
max_per_class = 4
asv_scores = "{asv}"
[model]
{MICRO_MODEL}
{lora}
[optim]
lr = 1e-3
[train]
batch_size = 4
epochs = {epochs}
timing_warmup_steps = 1
"#,
        out = out.display(),
        corpus = mini_corpus().display(),
        asv = asv_scores().display(),
    )
}

/// An experiment TOML of `ranks.len() + 1` runs (full fine-tuning and LoRA q+v of each rank).
pub fn micro_experiment_toml(name: &str, epochs: usize, ranks: &[usize]) -> String {
    format!(
        r#"
name = "{name}"
description = "micro runs for robustness tests"
[base]
backend = "flex"
[base.data]
dataset = "asvspoof2019:{corpus}"
eval_split = "eval"
crop_samples = 8000
max_per_class = 4
asv_scores = "{asv}"
[base.model]
{MICRO_MODEL}
[base.optim]
lr = 1e-3
[base.train]
batch_size = 4
epochs = {epochs}
timing_warmup_steps = 1
[sweep]
ranks = {ranks:?}
full_finetune = true
"#,
        corpus = mini_corpus().display(),
        asv = asv_scores().display(),
    )
}

/// SplitMix64: a few lines, and the same draws on every platform for a given seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file under `dir` (relative path -> bytes), directories left out, and run locks left
/// out too: a lock belongs to whichever process works in the folder (a killed trainer leaves
/// its own, the next one replaces it), not to the run's state.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for path in walk(dir) {
        let lock = path.file_name() == Some(std::ffi::OsStr::new(RUN_LOCK_FILE));
        if path.is_file() && !lock {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
        }
    }
    out
}

/// Every path under `dir` (files and folders), sorted; a folder that vanishes while being read
/// (a trainer still tidying up) is skipped.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A temporary or half-built file or folder: what an interrupted atomic write leaves.
pub fn is_temporary(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.ends_with(".tmp")
        || name.starts_with(".tmp")
        || name.contains(".partial")
        || name.ends_with(".unreadable")
}

pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| is_temporary(p)).collect()
}

/// Checks that every file of a finished run folder is complete: JSON and TOML parse, score
/// files have one parsable line per scored utterance, safetensors files have a header and all
/// the data it promises, msgpack files hold exactly one complete value; nothing temporary is
/// left, and one epoch checkpoint (the last) remains.
pub fn check_finished_run_dir(dir: &Path) -> Result<serde_json::Value, String> {
    let record_path = dir.join("record.json");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&record_path).map_err(|e| format!("{}: {e}", record_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", record_path.display()))?;
    for path in walk(dir) {
        if is_temporary(&path) {
            return Err(format!("left behind: {}", path.display()));
        }
        if path.is_dir() {
            continue;
        }
        check_file(&path)?;
    }
    for split in ["dev", "eval"] {
        let result = &record[split];
        let file = dir.join(result["scores_file"].as_str().ok_or("scores_file")?);
        let expected =
            result["n_bonafide"].as_u64().unwrap_or(0) + result["n_spoof"].as_u64().unwrap_or(0);
        let lines = check_score_file(&file)?;
        if lines as u64 != expected || expected == 0 {
            return Err(format!(
                "{}: {lines} lines for {expected} scored utterances",
                file.display()
            ));
        }
    }
    let epochs = record["epochs"].as_array().ok_or("epochs")?;
    let numbers: Vec<u64> = epochs.iter().filter_map(|e| e["epoch"].as_u64()).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    if numbers != expected {
        return Err(format!("{}: epochs {numbers:?}", record_path.display()));
    }
    let detector_path = dir.join("best/detector.json");
    let detector: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&detector_path).map_err(|e| format!("{}: {e}", detector_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", detector_path.display()))?;
    if detector["epoch"] != record["best_epoch"] {
        return Err(format!(
            "best/detector.json is from epoch {}, the record's best epoch is {}",
            detector["epoch"], record["best_epoch"]
        ));
    }
    let mut checkpoints: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .map_err(|e| format!("{}/checkpoints: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    checkpoints.sort();
    if checkpoints != [format!("epoch-{:04}", numbers.len())] {
        return Err(format!(
            "{}/checkpoints holds {checkpoints:?}",
            dir.display()
        ));
    }
    Ok(record)
}

/// Parses one file by its kind; logs and the sweep's lock file are not checked.
pub fn check_file(path: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: String| Err(format!("{}: {why}", path.display()));
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    match ext.as_deref() {
        Some("json") => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                return bad(e.to_string());
            }
        }
        Some("toml") => {
            let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
            if let Err(e) = text.parse::<toml::Table>() {
                return bad(e.to_string());
            }
        }
        Some("safetensors") => {
            if let Err(e) = safetensors::SafeTensors::deserialize(&bytes) {
                return bad(e.to_string());
            }
        }
        Some("mpk") => match msgpack_value_end(&bytes, 0) {
            Some(end) if end == bytes.len() => {}
            Some(end) => return bad(format!("{} trailing bytes", bytes.len() - end)),
            None => return bad(format!("msgpack value cut short at {} bytes", bytes.len())),
        },
        Some("csv") => {
            let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
            let mut lines = text.lines();
            let columns = csv_fields(lines.next().unwrap_or_default());
            if columns < 2 || !text.ends_with('\n') {
                return bad("no header, or no final newline".into());
            }
            for (i, line) in lines.enumerate() {
                if csv_fields(line) != columns {
                    return bad(format!("line {} has not {columns} fields", i + 2));
                }
            }
        }
        Some("txt") if path.parent().is_some_and(|p| p.ends_with("scores")) => {
            check_score_file(path)?;
        }
        Some("log") => {}
        _ if name == ".sweep.lock" => {}
        _ => return bad("unexpected file".into()),
    }
    Ok(())
}

/// The number of `utt_id score` lines; every line must parse and the file end with a newline.
pub fn check_score_file(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !text.ends_with('\n') {
        return Err(format!("{}: no final newline", path.display()));
    }
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 2 || fields[1].parse::<f64>().is_err() {
            return Err(format!("{}: bad line `{line}`", path.display()));
        }
    }
    Ok(text.lines().count())
}

fn csv_fields(line: &str) -> usize {
    let mut quoted = false;
    let mut fields = 1;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields += 1,
            _ => {}
        }
    }
    fields
}

/// Where the msgpack value starting at `at` ends, or `None` when the bytes end first.
fn msgpack_value_end(b: &[u8], at: usize) -> Option<usize> {
    let tag = *b.get(at)?;
    let be = |from: usize, n: usize| -> Option<usize> {
        let bytes = b.get(from..from + n)?;
        Some(bytes.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize))
    };
    let skip = |from: usize, n: usize| (from + n <= b.len()).then_some(from + n);
    let items = |mut from: usize, n: usize| -> Option<usize> {
        for _ in 0..n {
            from = msgpack_value_end(b, from)?;
        }
        Some(from)
    };
    let p = at + 1;
    match tag {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(p),
        0x80..=0x8f => items(p, 2 * (tag & 0x0f) as usize),
        0x90..=0x9f => items(p, (tag & 0x0f) as usize),
        0xa0..=0xbf => skip(p, (tag & 0x1f) as usize),
        0xc4 | 0xd9 => skip(p + 1, be(p, 1)?),
        0xc5 | 0xda => skip(p + 2, be(p, 2)?),
        0xc6 | 0xdb => skip(p + 4, be(p, 4)?),
        0xc7 => skip(p + 2, be(p, 1)?),
        0xc8 => skip(p + 3, be(p, 2)?),
        0xc9 => skip(p + 5, be(p, 4)?),
        0xca => skip(p, 4),
        0xcb => skip(p, 8),
        0xcc | 0xd0 => skip(p, 1),
        0xcd | 0xd1 => skip(p, 2),
        0xce | 0xd2 => skip(p, 4),
        0xcf | 0xd3 => skip(p, 8),
        0xd4 => skip(p, 2),
        0xd5 => skip(p, 3),
        0xd6 => skip(p, 5),
        0xd7 => skip(p, 9),
        0xd8 => skip(p, 17),
        0xdc => items(p + 2, be(p, 2)?),
        0xdd => items(p + 4, be(p, 4)?),
        0xde => items(p + 2, 2 * be(p, 2)?),
        0xdf => items(p + 4, 2 * be(p, 4)?),
        0xc1 => None,
    }
}

/// Live processes (not zombies) whose command line mentions `needle`: trainers or sweeps
/// working in a test's folder.
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(true);
        if cmdline.contains(&needle) && !zombie {
            out.push((pid, cmdline.trim_end().to_string()));
        }
    }
    out
}

/// Waits (up to 20 s: a dying process releases its memory first) until no process mentions
/// `needle`; returns those still there then.
pub fn survivors(needle: &Path) -> Vec<(u32, String)> {
    let start = Instant::now();
    loop {
        let alive = processes_mentioning(needle);
        if alive.is_empty() || start.elapsed() > Duration::from_secs(20) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
