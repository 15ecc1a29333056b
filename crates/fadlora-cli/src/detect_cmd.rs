//! `fadlora detect` (score files, folders and lists of files) and `fadlora bench detect`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fadlora_data::{DatasetSpec, Split};
use fadlora_train::backend::default_backend;
use fadlora_train::detect::{
    default_decode_threads, detect_files, Aggregate, DetectOptions, DetectOutcome, FileScore,
};
use fadlora_train::infer::evaluate_checkpoint;
use fadlora_train::BackendKind;
use indicatif::{ProgressBar, ProgressStyle};

/// Extensions picked up when a folder is scanned without `--glob`.
pub const AUDIO_EXTENSIONS: [&str; 9] = [
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac",
];

/// The exit status when some inputs could not be scored (the others were).
const SOME_FAILED: u8 = 2;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    /// One line per file (tab-separated), errors included; `--timeline` adds the windows.
    Text,
    /// One JSON document with every file's windows.
    Json,
    /// One row per file, per window and per error (`kind` = file | window | error).
    Csv,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum AggregateArg {
    Mean,
    Min,
    Max,
}

impl From<AggregateArg> for Aggregate {
    fn from(value: AggregateArg) -> Self {
        match value {
            AggregateArg::Mean => Aggregate::Mean,
            AggregateArg::Min => Aggregate::Min,
            AggregateArg::Max => Aggregate::Max,
        }
    }
}

#[derive(clap::Args)]
pub struct DetectArgs {
    /// A training output folder (or its `best/`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Decision threshold on the score (bona fide logit minus spoof logit). Default: the dev
    /// EER threshold of the selected epoch, stored with the checkpoint.
    #[arg(long)]
    threshold: Option<f64>,
    #[arg(long, default_value_t = default_backend())]
    backend: BackendKind,
    /// Audio files and folders (searched recursively). WAV, FLAC, MP3, Ogg Vorbis, Opus and
    /// AAC/M4A at any rate, resampled to 16 kHz mono.
    audio: Vec<PathBuf>,
    /// A file listing one input per line (`-` = standard input); blank lines and lines
    /// starting with `#` are skipped, relative paths are taken from the current folder.
    #[arg(long)]
    list: Option<PathBuf>,
    /// Which files of a folder to take, matched against the path below the folder (`*`
    /// crosses `/`). Default: the audio extensions (wav, flac, mp3, ogg, oga, opus, m4a, mp4,
    /// aac). Files named directly are always taken.
    #[arg(long)]
    glob: Option<String>,
    /// Seconds between window starts (default: half the detector's training length).
    #[arg(long)]
    hop: Option<f64>,
    /// Score only each file's first window, as `fadlora eval` scores an utterance.
    #[arg(long, conflicts_with = "hop")]
    first_window: bool,
    /// How window scores make the file's score: `min` flags a file when any window looks fake.
    #[arg(long, value_enum, default_value_t = AggregateArg::Mean)]
    aggregate: AggregateArg,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Shorthand for `--format json`.
    #[arg(long, conflicts_with_all = ["format", "csv"])]
    json: bool,
    /// Shorthand for `--format csv`.
    #[arg(long, conflicts_with = "format")]
    csv: bool,
    /// Text output: print each window's score under its file.
    #[arg(long)]
    timeline: bool,
    /// Windows per forward pass (windows of several files share a batch).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Threads decoding files while the model scores (default: half the cores).
    #[arg(long, default_value_t = default_decode_threads())]
    decode_threads: usize,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// An input that is scored (a file) or already known to fail (a folder that cannot be read).
enum Input {
    File(PathBuf),
    Unreadable(PathBuf, String),
}

pub fn detect(args: DetectArgs) -> Result<ExitCode> {
    let format = if args.json {
        OutputFormat::Json
    } else if args.csv {
        OutputFormat::Csv
    } else {
        args.format
    };
    let glob = args
        .glob
        .as_deref()
        .map(glob::Pattern::new)
        .transpose()
        .context("--glob")?;
    let mut named = args.audio.clone();
    if let Some(list) = &args.list {
        named.extend(read_list(list)?);
    }
    if named.is_empty() {
        bail!("no inputs: name audio files or folders, or give --list FILE");
    }
    let inputs = expand_inputs(&named, glob.as_ref());
    let files: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|input| match input {
            Input::File(path) => Some(path.clone()),
            Input::Unreadable(..) => None,
        })
        .collect();
    if files.is_empty() && inputs.is_empty() {
        bail!("the folders named hold no audio files (see --glob)");
    }

    let progress = if args.no_progress || files.len() < 2 {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files {per_sec} eta {eta}")
                .expect("valid template"),
        );
        bar
    };
    let hop_samples = args
        .hop
        .map(|seconds| {
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--hop must be a positive number of seconds, not {seconds}");
            }
            Ok(((seconds * 16_000.0).round() as usize).max(1))
        })
        .transpose()?;
    let options = DetectOptions {
        hop_samples,
        first_window_only: args.first_window,
        aggregate: args.aggregate.into(),
        batch_size: args.batch_size,
        decode_threads: args.decode_threads,
    };
    let outcome = detect_files(&args.checkpoint, &files, &options, args.backend, &|| {
        progress.inc(1)
    })?;
    progress.finish_and_clear();

    let threshold = args
        .threshold
        .or(outcome.info.dev_eer_threshold)
        .unwrap_or(0.0);
    let mut scored = outcome.files.iter();
    let results: Vec<(&Path, Result<&FileScore, String>)> = inputs
        .iter()
        .map(|input| match input {
            Input::File(path) => {
                let result = scored.next().expect("one result per file");
                (path.as_path(), result.as_ref().map_err(|e| e.reason()))
            }
            Input::Unreadable(path, reason) => (path.as_path(), Err(reason.clone())),
        })
        .collect();
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        OutputFormat::Text => write_text(&mut out, &results, threshold, args.timeline)?,
        OutputFormat::Json => write_json(&mut out, &results, threshold, &outcome, &options)?,
        OutputFormat::Csv => write_csv(&mut out, &results, threshold)?,
    }
    out.flush()?;
    eprintln!(
        "{} scored, {failed} failed; windows of {:.2} s every {:.2} s, file score = {} of its \
         windows, threshold {threshold} (score > threshold = bona fide)",
        results.len() - failed,
        outcome.window_samples as f64 / 16_000.0,
        outcome.hop_samples as f64 / 16_000.0,
        options.aggregate,
    );
    Ok(if failed > 0 {
        ExitCode::from(SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn decision(score: f64, threshold: f64) -> &'static str {
    if score > threshold {
        "bonafide"
    } else {
        "spoof"
    }
}

fn write_text(
    out: &mut impl Write,
    results: &[(&Path, Result<&FileScore, String>)],
    threshold: f64,
    timeline: bool,
) -> Result<()> {
    for (path, result) in results {
        match result {
            Ok(file) => {
                writeln!(
                    out,
                    "{}\t{:.6}\t{}\t{} window{}, {:.2} s",
                    path.display(),
                    file.score,
                    decision(file.score, threshold),
                    file.windows.len(),
                    if file.windows.len() == 1 { "" } else { "s" },
                    file.duration_s
                )?;
                if timeline {
                    for w in &file.windows {
                        writeln!(
                            out,
                            "  {:8.2}-{:<8.2}\t{:.6}\t{}",
                            w.start_s,
                            w.end_s,
                            w.score,
                            decision(w.score, threshold)
                        )?;
                    }
                }
            }
            Err(reason) => writeln!(out, "{}\tERROR\t{reason}", path.display())?,
        }
    }
    Ok(())
}

/// `--json` output; field order is the order a reader wants to see them in.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    scored: usize,
    failed: usize,
    threshold: f64,
    window_s: f64,
    hop_s: f64,
    aggregate: String,
    files: Vec<JsonFile<'a>>,
}

#[derive(serde::Serialize)]
struct JsonFile<'a> {
    path: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    windows: Option<Vec<JsonWindow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct JsonWindow {
    start_s: f64,
    end_s: f64,
    score: f64,
    decision: &'static str,
}

fn write_json(
    out: &mut impl Write,
    results: &[(&Path, Result<&FileScore, String>)],
    threshold: f64,
    outcome: &DetectOutcome,
    options: &DetectOptions,
) -> Result<()> {
    let files: Vec<JsonFile> = results
        .iter()
        .map(|(path, result)| match result {
            Ok(file) => JsonFile {
                path,
                score: Some(file.score),
                decision: Some(decision(file.score, threshold)),
                duration_s: Some(file.duration_s),
                windows: Some(
                    file.windows
                        .iter()
                        .map(|w| JsonWindow {
                            start_s: w.start_s,
                            end_s: w.end_s,
                            score: w.score,
                            decision: decision(w.score, threshold),
                        })
                        .collect(),
                ),
                error: None,
            },
            Err(reason) => JsonFile {
                path,
                score: None,
                decision: None,
                duration_s: None,
                windows: None,
                error: Some(reason),
            },
        })
        .collect();
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let report = JsonReport {
        scored: results.len() - failed,
        failed,
        threshold,
        window_s: outcome.window_samples as f64 / 16_000.0,
        hop_s: outcome.hop_samples as f64 / 16_000.0,
        aggregate: options.aggregate.to_string(),
        files,
    };
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)?;
    Ok(())
}

fn write_csv(
    out: &mut impl Write,
    results: &[(&Path, Result<&FileScore, String>)],
    threshold: f64,
) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "path", "kind", "start_s", "end_s", "score", "decision", "error",
    ])?;
    for (path, result) in results {
        let path = path.display().to_string();
        match result {
            Ok(file) => {
                writer.write_record([
                    path.as_str(),
                    "file",
                    "0",
                    &file.duration_s.to_string(),
                    &file.score.to_string(),
                    decision(file.score, threshold),
                    "",
                ])?;
                for w in &file.windows {
                    writer.write_record([
                        path.as_str(),
                        "window",
                        &w.start_s.to_string(),
                        &w.end_s.to_string(),
                        &w.score.to_string(),
                        decision(w.score, threshold),
                        "",
                    ])?;
                }
            }
            Err(reason) => {
                writer.write_record([path.as_str(), "error", "", "", "", "", reason.as_str()])?
            }
        }
    }
    writer.flush()?;
    Ok(())
}

fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let reader: Box<dyn BufRead> = if list == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(list)
            .with_context(|| format!("reading the list {}", list.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut paths = Vec::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("reading the list {}", list.display()))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            paths.push(PathBuf::from(line));
        }
    }
    Ok(paths)
}

/// Files stay as named (a missing one fails when it is decoded, with the others scored);
/// folders are replaced by the matching files below them, sorted, in the folder's place.
fn expand_inputs(named: &[PathBuf], glob: Option<&glob::Pattern>) -> Vec<Input> {
    let mut inputs = Vec::new();
    for path in named {
        if path.is_dir() {
            walk(path, path, glob, &mut inputs);
        } else {
            inputs.push(Input::File(path.clone()));
        }
    }
    inputs
}

fn walk(root: &Path, dir: &Path, glob: Option<&glob::Pattern>, inputs: &mut Vec<Input>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            inputs.push(Input::Unreadable(
                dir.to_path_buf(),
                format!("cannot list the folder: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(root, &path, glob, inputs);
        } else if wanted(root, &path, glob) {
            inputs.push(Input::File(path));
        }
    }
}

fn wanted(root: &Path, path: &Path, glob: Option<&glob::Pattern>) -> bool {
    match glob {
        Some(pattern) => {
            let relative = path.strip_prefix(root).unwrap_or(path);
            pattern.matches_path(relative)
        }
        None => path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())),
    }
}

#[derive(clap::Args)]
pub struct BenchDetectArgs {
    /// A training output folder (or its `best/`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The files to score: a dataset (`asvspoof2019:DIR`, `csv:FILE`, ...).
    #[arg(long)]
    dataset: String,
    /// Which split of the dataset.
    #[arg(long, default_value = "eval")]
    split: String,
    #[arg(long, default_value_t = default_backend())]
    backend: BackendKind,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = default_decode_threads())]
    decode_threads: usize,
}

/// Files per second of `detect` (whole files and first windows) against `eval` of the same
/// model on the same files, as one JSON object.
pub fn bench_detect(args: BenchDetectArgs) -> Result<ExitCode> {
    let spec = DatasetSpec::parse(&args.dataset).map_err(anyhow::Error::msg)?;
    let wanted = Split::parse(&args.split);
    let files: Vec<PathBuf> = spec
        .load()?
        .into_iter()
        .filter(|u| u.split == wanted)
        .map(|u| u.path)
        .collect();
    if files.is_empty() {
        bail!(
            "split `{}` of {} has no utterances",
            args.split,
            args.dataset
        );
    }
    let run = |first_window_only: bool| -> Result<(DetectOutcome, f64)> {
        let options = DetectOptions {
            first_window_only,
            batch_size: args.batch_size,
            decode_threads: args.decode_threads,
            ..Default::default()
        };
        let started = Instant::now();
        let outcome = detect_files(&args.checkpoint, &files, &options, args.backend, &|| {})?;
        if outcome.failed() > 0 {
            bail!("{} of the files failed to decode", outcome.failed());
        }
        Ok((outcome, started.elapsed().as_secs_f64()))
    };
    // Once untimed, so that the first timed pass does not pay for loading kernels and caches.
    run(true)?;
    let (whole, whole_s) = run(false)?;
    let (_, first_s) = run(true)?;
    let eval_started = Instant::now();
    let eval = evaluate_checkpoint(
        &args.checkpoint,
        &spec,
        Some(&args.split),
        args.backend,
        args.batch_size,
        [0.5, 0.5],
    )?;
    let eval_s = eval_started.elapsed().as_secs_f64();
    let audio_s: f64 = whole
        .files
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .map(|f| f.duration_s)
        .sum();
    let n = files.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "backend": args.backend.to_string(),
            "device": whole.device_name,
            "files": files.len(),
            "audio_s": audio_s,
            "window_s": whole.window_samples as f64 / 16_000.0,
            "hop_s": whole.hop_samples as f64 / 16_000.0,
            "batch_size": args.batch_size,
            "decode_threads": args.decode_threads,
            "detect_whole_files": {
                "windows": whole.windows_scored,
                "files_per_s": n / whole_s,
                "windows_per_s": whole.windows_scored as f64 / whole_s,
                "audio_s_per_s": audio_s / whole_s,
            },
            "detect_first_window": {
                "files_per_s": n / first_s,
            },
            "eval": {
                "files_per_s": n / eval_s,
                "utt_per_s_scoring_only": eval.utt_per_s(),
            },
            "first_window_over_eval": (n / first_s) / (n / eval_s),
        })
    );
    Ok(ExitCode::SUCCESS)
}
