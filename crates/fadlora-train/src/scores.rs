//! Scoring a dataset, score files (`utt_id score`, ASVspoof style) and the EER of a score set
//! against any protocol the data crate reads.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fadlora_data::{
    read_asvspoof2019_protocol, read_asvspoof2021_key, read_csv_list, Asvspoof2021Track,
    AudioDataset, DatasetSpec, Label, Split, Utterance,
};
use fadlora_metrics::{AsvScores, Eer, MinTdcf, TdcfCostModel};
use serde::{Deserialize, Serialize};

use crate::data::{stack, Prefetch};
use crate::detector::Detector;
use crate::measure::MemoryProbe;
use crate::TrainError;

/// One scored trial. Higher score = more bona fide.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub id: String,
    pub label: Label,
    pub score: f64,
}

/// The outcome of scoring a labelled set.
#[derive(Debug, Clone)]
pub struct ScoredSet {
    pub scores: Vec<Scored>,
    /// Class-weighted cross-entropy over the whole set (same weighting as training).
    pub loss: f64,
    pub eer: Eer,
    pub seconds: f64,
}

impl ScoredSet {
    pub fn utt_per_s(&self) -> f64 {
        self.scores.len() as f64 / self.seconds.max(1e-9)
    }
}

/// Scores every utterance of `dataset` with `model` (no gradients: pass the inner-backend
/// module), in batches of `batch_size`.
pub fn score_dataset<B: fadlora_model::ModelBackend>(
    model: &Detector<B>,
    dataset: &Arc<AudioDataset>,
    batch_size: usize,
    class_weights: [f64; 2],
    device: &B::Device,
    memory: &mut MemoryProbe,
) -> Result<ScoredSet, TrainError> {
    let start = Instant::now();
    let mut scores = Vec::with_capacity(dataset.utterances().len());
    let (mut weighted_nll, mut weight_sum) = (0.0, 0.0);
    let indices: Vec<usize> = (0..dataset.utterances().len()).collect();
    let batches: Vec<Vec<usize>> = indices.chunks(batch_size).map(<[usize]>::to_vec).collect();
    let decoded = Prefetch::new(Arc::clone(dataset), batches.clone());
    for (chunk, items) in batches.iter().zip(decoded) {
        let batch = stack::<B>(items, device)?;
        let logits = model.forward(batch.waveforms);
        memory.sample();
        let logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits");
        for (row, (&index, id)) in chunk.iter().zip(batch.ids).enumerate() {
            let label = dataset.utterances()[index].label;
            let (spoof, bona) = (logits[2 * row] as f64, logits[2 * row + 1] as f64);
            // Log-sum-exp written out so the loss is computed in f64 on the host.
            let max = spoof.max(bona);
            let log_z = max + ((spoof - max).exp() + (bona - max).exp()).ln();
            let (target, w) = match label {
                Label::Bonafide => (bona, class_weights[1]),
                Label::Spoof => (spoof, class_weights[0]),
            };
            weighted_nll += w * (log_z - target);
            weight_sum += w;
            scores.push(Scored {
                id,
                label,
                score: bona - spoof,
            });
        }
    }
    let eer = eer_of(&scores)?;
    Ok(ScoredSet {
        scores,
        loss: weighted_nll / weight_sum.max(1e-12),
        eer,
        seconds: start.elapsed().as_secs_f64(),
    })
}

pub fn eer_of(scores: &[Scored]) -> Result<Eer, TrainError> {
    let (bona, spoof) = split_by_label(scores);
    Ok(fadlora_metrics::eer(&bona, &spoof)?)
}

pub(crate) fn split_by_label(scores: &[Scored]) -> (Vec<f64>, Vec<f64>) {
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
pub fn write_score_file(path: &Path, scores: &[Scored]) -> Result<(), TrainError> {
    let mut text = String::with_capacity(scores.len() * 32);
    for s in scores {
        text.push_str(&format!("{} {}\n", s.id, s.score));
    }
    write_atomic(path, text.as_bytes())
}

/// The suffix of [`write_atomic`]'s temporary files (`.NAME.XXXXXX.tmp`), by which a run
/// folder's leftovers from a killed process are recognised and removed.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Temp file in the same folder + rename (atomic on POSIX file systems). Errors name `path`:
/// the temporary file's random name would not tell a user which file could not be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dropped (and so deleted) on every error path; only a killed process leaves it behind.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| TrainError::io(path, e))?;
    // Through the plain file: NamedTempFile's own writes append its random path to errors.
    tmp.as_file_mut()
        .write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| TrainError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| TrainError::io(path, e.error))?;
    Ok(())
}

/// The non-blank lines of a whitespace-separated score file whose last column is a number:
/// calls `row(line_number, fields, score)` for each, and names file and line on any error.
fn for_each_scored_line(
    path: &Path,
    expected: &str,
    mut row: impl FnMut(usize, &[&str], f64) -> Result<(), String>,
) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |why: String| TrainError::Invalid(format!("{}:{}: {why}", path.display(), i + 1));
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
pub fn read_score_file(path: &Path) -> Result<Vec<(String, f64)>, TrainError> {
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
/// (`asvspoof2019:DIR`, `itw:DIR`, ...), a CSV list, an ASVspoof 2019 protocol file or an
/// ASVspoof 2021 LA/DF key file.
pub fn read_protocol(protocol: &str) -> Result<Vec<Utterance>, TrainError> {
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

/// Joins scores with the protocol by utterance id and computes EER (and min t-DCF when ASV
/// scores are given). Every score must belong to the protocol and every selected protocol
/// trial must have a score.
pub fn evaluate_scores(
    scores: &[(String, f64)],
    protocol: &[Utterance],
    filter: &ProtocolFilter,
    asv: Option<&AsvScores>,
) -> Result<EerReport, TrainError> {
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
            TrainError::Invalid(format!(
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
        return Err(TrainError::Invalid(format!(
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
    Ok(EerReport {
        eer_percent: eer.eer * 100.0,
        threshold: eer.threshold,
        min_tdcf,
        n_bonafide: bona.len(),
        n_spoof: spoof.len(),
    })
}

/// The organisers' ASV score file: `... KEY SCORE` with KEY `target`, `nontarget` or `spoof`
/// in the second-to-last column (ASVspoof 2019 `*.asv.*.scores.txt`; the reference script
/// reads columns 1 and 2).
pub fn read_asv_scores(path: &Path) -> Result<AsvScores, TrainError> {
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
