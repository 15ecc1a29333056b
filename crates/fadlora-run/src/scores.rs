//! Score files (`utt_id score`, ASVspoof style), the organisers' ASV score files, and the EER
//! of a score set against any protocol the data crate reads.

use std::collections::HashMap;
use std::path::Path;

use fadlora_data::{
    read_asvspoof2019_protocol, read_asvspoof2021_key, read_asvspoof5_protocol, read_csv_list,
    Asvspoof2021Track, DatasetSpec, Label, Split, Utterance, ASVSPOOF5_PROTOCOL_DIR,
};
use fadlora_metrics::{AsvScores, Eer, MinTdcf, TdcfCostModel, Track1Metrics};
use serde::{Deserialize, Serialize};

use crate::fs::write_atomic;
use crate::RunError;

/// One scored trial. Higher score = more bona fide.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub id: String,
    pub label: Label,
    pub score: f64,
}

pub fn eer_of(scores: &[Scored]) -> Result<Eer, RunError> {
    let (bona, spoof) = split_by_label(scores);
    Ok(fadlora_metrics::eer(&bona, &spoof)?)
}

pub fn split_by_label(scores: &[Scored]) -> (Vec<f64>, Vec<f64>) {
    let mut bona = Vec::new();
    let mut spoof = Vec::new();
    for s in scores {
        match s.label {
            Label::Bonafide => bona.push(s.score),
            Label::Spoof => spoof.push(s.score),
        }
    }
    (bona, spoof)
}

/// Writes `utt_id score` lines to `path` in one go: into a temporary file beside it, then
/// renamed over it, so a reader never sees a partial file and nothing is ever appended.
/// Scores are written with Rust's shortest round-trip formatting, so reading the file back
/// gives exactly the values the EER was computed from.
pub fn write_score_file(path: &Path, scores: &[Scored]) -> Result<(), RunError> {
    let mut text = String::with_capacity(scores.len() * 32);
    for s in scores {
        text.push_str(&format!("{} {}\n", s.id, s.score));
    }
    write_atomic(path, text.as_bytes())
}

/// The non-blank lines of a whitespace-separated score file whose last column is a number:
/// calls `row(line_number, fields, score)` for each, and names file and line on any error.
fn for_each_scored_line(
    path: &Path,
    expected: &str,
    mut row: impl FnMut(usize, &[&str], f64) -> Result<(), String>,
) -> Result<(), RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |why: String| RunError::Invalid(format!("{}:{}: {why}", path.display(), i + 1));
        if fields.len() < 2 {
            return Err(bad(format!("expected `{expected}`, found `{line}`")));
        }
        let last = fields[fields.len() - 1];
        let score: f64 = last
            .parse()
            .map_err(|_| bad(format!("`{last}` is not a number")))?;
        row(i + 1, &fields, score).map_err(bad)?;
    }
    Ok(())
}

/// Reads a score file: `utt_id score` per line (extra leading columns, as in some ASVspoof
/// score files, are allowed: the id is the first field, the score the last).
pub fn read_score_file(path: &Path) -> Result<Vec<(String, f64)>, RunError> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for_each_scored_line(path, "utt_id score", |line, fields, score| {
        if let Some(first) = seen.insert(fields[0].to_string(), line) {
            return Err(format!(
                "utterance `{}` is scored twice (first on line {first})",
                fields[0]
            ));
        }
        out.push((fields[0].to_string(), score));
        Ok(())
    })?;
    Ok(out)
}

/// Reads ground truth from any format the data crate reads: a dataset spec or folder
/// (`asvspoof2019:DIR`, `asvspoof5:DIR`, `itw:DIR`, ...), a CSV list, an ASVspoof 2019
/// protocol file, an ASVspoof 5 Track 1 protocol file or an ASVspoof 2021 LA/DF key file.
pub fn read_protocol(protocol: &str) -> Result<Vec<Utterance>, RunError> {
    let path = Path::new(protocol);
    if !path.is_file() {
        return Ok(DatasetSpec::parse(protocol)?.load()?);
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(read_csv_list(path)?);
    }
    let audio_dir = path.parent().unwrap_or(Path::new("."));
    let first = match read_asvspoof2019_protocol(path, audio_dir, Split::Unspecified) {
        Ok(utts) => return Ok(utts),
        Err(e) => e,
    };
    // Before the 2021 DF key, which also takes ten or more columns.
    let corpus_root = match audio_dir.file_name() {
        Some(name) if name == ASVSPOOF5_PROTOCOL_DIR => audio_dir.parent().unwrap_or(audio_dir),
        _ => audio_dir,
    };
    match read_asvspoof5_protocol(path, corpus_root) {
        Ok(utts) => return Ok(utts),
        // A `.tsv` is an ASVspoof 5 protocol: its own error says what is wrong, the 2019
        // reader's would not.
        Err(e)
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv")) =>
        {
            return Err(e.into())
        }
        Err(_) => {}
    }
    for track in [Asvspoof2021Track::La, Asvspoof2021Track::Df] {
        if let Ok(utts) = read_asvspoof2021_key(path, audio_dir, track) {
            return Ok(utts);
        }
    }
    Err(first.into())
}

/// `fadlora eer`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EerReport {
    pub eer_percent: f64,
    pub threshold: f64,
    pub min_tdcf: Option<f64>,
    /// ASVspoof 5 Track 1 normalised minimum DCF (Pspoof 0.05, Cmiss 1, Cfa 10).
    pub min_dcf: f64,
    /// The same DCF at the Bayes threshold, reading scores as natural-log LLRs.
    pub act_dcf: f64,
    /// Log-likelihood-ratio cost in bits.
    pub cllr: f64,
    /// Cllr after the best monotonic (PAV) recalibration, in bits.
    pub min_cllr: f64,
    pub n_bonafide: usize,
    pub n_spoof: usize,
}

/// Which protocol entries a score set is compared against.
#[derive(Debug, Clone, Default)]
pub struct ProtocolFilter {
    /// Keep one split of a multi-split corpus (`train`, `dev`, `eval`).
    pub split: Option<String>,
    /// ASVspoof 2021 keys: keep trials of this subset (`eval`, `progress`, `hidden_track`).
    pub subset: Option<String>,
}

/// Joins scores with the protocol by utterance id and computes EER, the ASVspoof 5 Track 1
/// metrics (minDCF, actDCF, Cllr, minCllr; cheap, and meaningful for any protocol) and min
/// t-DCF when ASV scores are given. Every score must belong to the protocol and every selected protocol
/// trial must have a score.
pub fn evaluate_scores(
    scores: &[(String, f64)],
    protocol: &[Utterance],
    filter: &ProtocolFilter,
    asv: Option<&AsvScores>,
) -> Result<EerReport, RunError> {
    let wanted_split = filter.split.as_deref().map(Split::parse);
    let selected: HashMap<&str, Label> = protocol
        .iter()
        .filter(|u| wanted_split.as_ref().is_none_or(|s| &u.split == s))
        .filter(|u| match (&filter.subset, &u.conditions) {
            (Some(subset), Some(c)) => &c.subset == subset,
            _ => true,
        })
        .map(|u| (u.id.as_str(), u.label))
        .collect();
    let mut labelled = Vec::with_capacity(scores.len());
    for (id, score) in scores {
        let label = *selected.get(id.as_str()).ok_or_else(|| {
            RunError::Invalid(format!(
                "scored utterance `{id}` is not in the (filtered) protocol"
            ))
        })?;
        labelled.push(Scored {
            id: id.clone(),
            label,
            score: *score,
        });
    }
    if labelled.len() != selected.len() {
        let scored: std::collections::HashSet<&str> =
            scores.iter().map(|(id, _)| id.as_str()).collect();
        let missing: Vec<&&str> = selected
            .keys()
            .filter(|id| !scored.contains(**id))
            .collect();
        return Err(RunError::Invalid(format!(
            "{} trial(s) of the protocol have no score, e.g. `{}` (select a split with --split)",
            missing.len(),
            missing.first().map_or("?", |s| **s)
        )));
    }
    let (bona, spoof) = split_by_label(&labelled);
    let eer = fadlora_metrics::eer(&bona, &spoof)?;
    let min_tdcf = match asv {
        Some(asv) => {
            let MinTdcf { min_tdcf, .. } =
                fadlora_metrics::min_tdcf(&bona, &spoof, asv, &TdcfCostModel::asvspoof2019())?;
            Some(min_tdcf)
        }
        None => None,
    };
    let Track1Metrics {
        min_dcf,
        act_dcf,
        cllr,
        min_cllr,
    } = fadlora_metrics::track1_metrics(&bona, &spoof)?;
    Ok(EerReport {
        eer_percent: eer.eer * 100.0,
        threshold: eer.threshold,
        min_tdcf,
        min_dcf,
        act_dcf,
        cllr,
        min_cllr,
        n_bonafide: bona.len(),
        n_spoof: spoof.len(),
    })
}

/// The organisers' ASV score file: `... KEY SCORE` with KEY `target`, `nontarget` or `spoof`
/// in the second-to-last column (ASVspoof 2019 `*.asv.*.scores.txt`; the reference script
/// reads columns 1 and 2).
pub fn read_asv_scores(path: &Path) -> Result<AsvScores, RunError> {
    let mut asv = AsvScores::default();
    for_each_scored_line(path, "[id] key score", |_, fields, score| {
        match fields[fields.len() - 2] {
            "target" => asv.target.push(score),
            "nontarget" => asv.nontarget.push(score),
            "spoof" => asv.spoof.push(score),
            other => return Err(format!("key `{other}` is none of target, nontarget, spoof")),
        }
        Ok(())
    })?;
    Ok(asv)
}
