//! `fadlora data check`: decode every file of a dataset and report what is there and what is
//! broken. The first thing to run after downloading a corpus.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use fadlora_audio::{decode_many_map, AudioError};
use fadlora_data::{DatasetSpec, Label, Split, Utterance};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct DataCheckArgs {
    /// The dataset: asvspoof2019:DIR, asvspoof2021-la:DIR, asvspoof2021-df:DIR, asvspoof5:DIR,
    /// itw:DIR, csv:FILE, or a bare DIR/FILE whose kind is detected from its contents.
    #[arg(value_name = "DATASET_SPEC")]
    pub dataset: String,

    /// Decoding threads (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Print the report as one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Shape of one decoded file; everything the report needs, so samples are dropped at once.
#[derive(Clone, Copy)]
struct FileShape {
    sample_rate: u32,
    channels: u16,
    seconds: f64,
}

#[derive(Default)]
struct SystemCounts {
    bonafide: usize,
    spoof: usize,
}

#[derive(Default)]
struct SplitReport {
    files: usize,
    bonafide: usize,
    spoof: usize,
    by_system: BTreeMap<String, SystemCounts>,
    /// ASVspoof 2021 `subset` column (`eval`, `progress`, `hidden_track`).
    by_subset: BTreeMap<String, usize>,
    /// Codec condition (ASVspoof 2021 and 5), bona fide and spoof together.
    by_codec: BTreeMap<String, usize>,
    decoded: usize,
    seconds: f64,
    shortest_seconds: Option<f64>,
    longest_seconds: Option<f64>,
    sample_rates: BTreeMap<u32, usize>,
    channels: BTreeMap<u16, usize>,
    missing: usize,
    bad: usize,
}

struct Problem<'a> {
    utterance: &'a Utterance,
    error: AudioError,
}

pub fn run(args: DataCheckArgs) -> anyhow::Result<ExitCode> {
    let spec = DatasetSpec::parse(&args.dataset)?;
    let utterances = spec
        .load()
        .with_context(|| format!("reading the {} lists of {spec}", spec.kind_name()))?;
    anyhow::ensure!(
        !utterances.is_empty(),
        "{spec}: the {} lists name no utterances",
        spec.kind_name()
    );

    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = args.jobs {
        anyhow::ensure!(jobs > 0, "--jobs must be at least 1");
        pool = pool.num_threads(jobs);
    }
    let pool = pool.build().context("starting the decoding threads")?;

    let started = Instant::now();
    let progress = ProgressBar::new(utterances.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} decoding {pos}/{len} files [{elapsed_precise}<{eta_precise}] {wide_bar}",
        )
        .expect("static progress template"),
    );
    let paths: Vec<PathBuf> = utterances.iter().map(|u| u.path.clone()).collect();
    let shapes = pool.install(|| {
        decode_many_map(&paths, |_, decoded| {
            progress.inc(1);
            decoded.map(|audio| FileShape {
                sample_rate: audio.sample_rate,
                channels: audio.channels,
                seconds: audio.duration_seconds(),
            })
        })
    });
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let mut splits: BTreeMap<Split, SplitReport> = BTreeMap::new();
    let mut problems = Vec::new();
    for (utterance, shape) in utterances.iter().zip(shapes) {
        let report = splits.entry(utterance.split.clone()).or_default();
        report.files += 1;
        let system = report
            .by_system
            .entry(utterance.system.clone().unwrap_or_else(|| "-".to_owned()))
            .or_default();
        match utterance.label {
            Label::Bonafide => {
                report.bonafide += 1;
                system.bonafide += 1;
            }
            Label::Spoof => {
                report.spoof += 1;
                system.spoof += 1;
            }
        }
        if let Some(conditions) = &utterance.conditions {
            // ASVspoof 5 has no subset column and stores the partition there: not news.
            if conditions.subset != utterance.split.to_string() {
                *report
                    .by_subset
                    .entry(conditions.subset.clone())
                    .or_default() += 1;
            }
            *report.by_codec.entry(conditions.codec.clone()).or_default() += 1;
        }
        match shape {
            Ok(shape) => {
                report.decoded += 1;
                report.seconds += shape.seconds;
                report.shortest_seconds = Some(
                    report
                        .shortest_seconds
                        .map_or(shape.seconds, |s| s.min(shape.seconds)),
                );
                report.longest_seconds = Some(
                    report
                        .longest_seconds
                        .map_or(shape.seconds, |s| s.max(shape.seconds)),
                );
                *report.sample_rates.entry(shape.sample_rate).or_default() += 1;
                *report.channels.entry(shape.channels).or_default() += 1;
            }
            Err(error) => {
                if error.is_missing() {
                    report.missing += 1;
                } else {
                    report.bad += 1;
                }
                problems.push(Problem { utterance, error });
            }
        }
    }

    if args.json {
        println!("{}", json_report(&spec, &splits, &problems, elapsed));
    } else {
        print!(
            "{}",
            text_report(
                &spec,
                utterances.len(),
                &splits,
                &problems,
                elapsed,
                pool.current_num_threads()
            )
        );
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `H:MM:SS.s`, readable for both a 3-second test corpus and a 100-hour one.
fn hms(seconds: f64) -> String {
    let tenths = (seconds * 10.0).round() as u64;
    let (hours, rest) = (tenths / 36_000, tenths % 36_000);
    let (minutes, rest) = (rest / 600, rest % 600);
    format!("{hours}:{minutes:02}:{:02}.{}", rest / 10, rest % 10)
}

fn histogram<K: std::fmt::Display>(counts: &BTreeMap<K, usize>, unit: &str) -> String {
    if counts.is_empty() {
        return "none decoded".to_owned();
    }
    counts
        .iter()
        .map(|(key, n)| format!("{key}{unit}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_report(
    spec: &DatasetSpec,
    listed: usize,
    splits: &BTreeMap<Split, SplitReport>,
    problems: &[Problem],
    elapsed: f64,
    threads: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} at {}", spec.kind_name(), spec.path().display());
    let _ = writeln!(
        out,
        "{listed} files listed in {} split(s); decoded in {elapsed:.1} s on {threads} thread(s)",
        splits.len()
    );
    for (split, report) in splits {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "[{split}] {} files: {} bonafide, {} spoof; {} of audio",
            report.files,
            report.bonafide,
            report.spoof,
            hms(report.seconds)
        );
        let width = report
            .by_system
            .keys()
            .map(String::len)
            .chain(["system".len()])
            .max()
            .unwrap_or(6);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>8}  {:>8}",
            "system", "bonafide", "spoof"
        );
        for (system, counts) in &report.by_system {
            let _ = writeln!(
                out,
                "  {system:<width$}  {:>8}  {:>8}",
                counts.bonafide, counts.spoof
            );
        }
        if !report.by_subset.is_empty() {
            let _ = writeln!(out, "  subsets:      {}", histogram(&report.by_subset, ""));
        }
        if !report.by_codec.is_empty() {
            let _ = writeln!(out, "  codecs:       {}", histogram(&report.by_codec, ""));
        }
        let _ = writeln!(
            out,
            "  sample rates: {}",
            histogram(&report.sample_rates, " Hz")
        );
        let _ = writeln!(
            out,
            "  channels:     {}",
            histogram(&report.channels, " ch")
        );
        if let (Some(shortest), Some(longest)) = (report.shortest_seconds, report.longest_seconds) {
            let _ = writeln!(
                out,
                "  durations:    shortest {shortest:.2} s, mean {:.2} s, longest {longest:.2} s",
                report.seconds / report.decoded as f64
            );
        }
        if report.missing + report.bad > 0 {
            let _ = writeln!(
                out,
                "  problems:     {} missing, {} bad",
                report.missing, report.bad
            );
        }
    }
    let _ = writeln!(out);
    if problems.is_empty() {
        let _ = writeln!(out, "OK: every file decodes.");
    } else {
        let _ = writeln!(out, "{} file(s) missing or unreadable:", problems.len());
        for problem in problems {
            let kind = if problem.error.is_missing() {
                "MISSING"
            } else {
                "BAD"
            };
            let _ = writeln!(
                out,
                "  {kind:<7} [{}] {} {}: {}",
                problem.utterance.split,
                problem.utterance.id,
                problem.utterance.path.display(),
                problem.error.reason()
            );
        }
    }
    out
}

fn json_report(
    spec: &DatasetSpec,
    splits: &BTreeMap<Split, SplitReport>,
    problems: &[Problem],
    elapsed: f64,
) -> serde_json::Value {
    let splits: serde_json::Map<String, serde_json::Value> = splits
        .iter()
        .map(|(split, r)| {
            let systems: serde_json::Map<String, serde_json::Value> = r
                .by_system
                .iter()
                .map(|(system, c)| {
                    (
                        system.clone(),
                        serde_json::json!({ "bonafide": c.bonafide, "spoof": c.spoof }),
                    )
                })
                .collect();
            let value = serde_json::json!({
                "files": r.files,
                "bonafide": r.bonafide,
                "spoof": r.spoof,
                "systems": systems,
                "subsets": r.by_subset,
                "codecs": r.by_codec,
                "decoded": r.decoded,
                "seconds": r.seconds,
                "shortest_seconds": r.shortest_seconds,
                "longest_seconds": r.longest_seconds,
                "sample_rates": r.sample_rates.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                "channels": r.channels.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                "missing": r.missing,
                "bad": r.bad,
            });
            (split.to_string(), value)
        })
        .collect();
    let problems: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.utterance.id,
                "split": p.utterance.split.to_string(),
                "path": p.utterance.path.display().to_string(),
                "kind": if p.error.is_missing() { "missing" } else { "bad" },
                "reason": p.error.reason(),
            })
        })
        .collect();
    serde_json::json!({
        "dataset": spec.to_string(),
        "kind": spec.kind_name(),
        "decode_seconds": elapsed,
        "splits": splits,
        "problems": problems,
        "ok": problems.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::hms;

    #[test]
    fn hms_formats_hours_minutes_and_tenths() {
        assert_eq!(hms(0.0), "0:00:00.0");
        assert_eq!(hms(1.26), "0:00:01.3");
        assert_eq!(hms(61.0), "0:01:01.0");
        assert_eq!(hms(3_723.45), "1:02:03.5");
        assert_eq!(hms(360_000.0), "100:00:00.0");
    }
}
