//! Readers for the list files that say which audio file is bona fide and which is spoofed.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::utterance::dash_to_none;
use crate::{DataError, Label, Split, TrialConditions, Utterance};

/// Folder of the ASVspoof 2019 LA CM protocols, under the corpus root.
pub const ASVSPOOF2019_LA_PROTOCOL_DIR: &str = "ASVspoof2019_LA_cm_protocols";

/// The three ASVspoof 2019 LA splits: protocol file name and audio folder, under the root.
const ASVSPOOF2019_LA_SPLITS: [(Split, &str, &str); 3] = [
    (
        Split::Train,
        "ASVspoof2019.LA.cm.train.trn.txt",
        "ASVspoof2019_LA_train",
    ),
    (
        Split::Dev,
        "ASVspoof2019.LA.cm.dev.trl.txt",
        "ASVspoof2019_LA_dev",
    ),
    (
        Split::Eval,
        "ASVspoof2019.LA.cm.eval.trl.txt",
        "ASVspoof2019_LA_eval",
    ),
];

/// The two ASVspoof 2021 tracks that have CM keys in this format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asvspoof2021Track {
    /// Logical access: telephony codecs and channels.
    La,
    /// Speech deepfake: compression codecs, VCC source corpora.
    Df,
}

impl Asvspoof2021Track {
    pub fn as_str(self) -> &'static str {
        match self {
            Asvspoof2021Track::La => "LA",
            Asvspoof2021Track::Df => "DF",
        }
    }

    /// Where the key file may sit under the corpus root: as `LA-keys-full.tar.gz` unpacks
    /// (`keys/...`), or with the archive's own folder kept.
    pub fn key_file_candidates(self, root: &Path) -> [PathBuf; 2] {
        let track = self.as_str();
        let relative = PathBuf::from("keys")
            .join(track)
            .join("CM")
            .join("trial_metadata.txt");
        [
            root.join(&relative),
            root.join(format!("{track}-keys-full")).join(relative),
        ]
    }

    pub fn audio_dir(self, root: &Path) -> PathBuf {
        root.join(format!("ASVspoof2021_{}_eval", self.as_str()))
            .join("flac")
    }
}

/// Reads every ASVspoof 2019 LA CM protocol present under `root` (train, dev, eval), with
/// audio at `ASVspoof2019_LA_{split}/flac/{utterance}.flac`. Splits whose protocol file is
/// absent are skipped; having none at all is an error.
pub fn read_asvspoof2019_la(root: &Path) -> Result<Vec<Utterance>, DataError> {
    let protocol_dir = root.join(ASVSPOOF2019_LA_PROTOCOL_DIR);
    let mut utterances = Vec::new();
    // One registry over all splits: an utterance in both train and eval would leak.
    let mut ids = IdRegistry::default();
    let mut found_any = false;
    for (split, protocol_name, audio_dir) in ASVSPOOF2019_LA_SPLITS {
        let protocol = protocol_dir.join(protocol_name);
        if !protocol.is_file() {
            continue;
        }
        found_any = true;
        let audio_dir = root.join(audio_dir).join("flac");
        read_asvspoof2019_protocol_into(&protocol, &audio_dir, split, &mut ids, &mut utterances)?;
    }
    if !found_any {
        return Err(DataError::Missing {
            path: protocol_dir,
            what:
                "ASVspoof 2019 LA CM protocol (ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt)"
                    .to_owned(),
        });
    }
    Ok(utterances)
}

/// Reads one ASVspoof 2019 CM protocol (`SPEAKER UTTERANCE - ATTACK KEY` per line), placing
/// each utterance at `audio_dir/UTTERANCE.flac`.
pub fn read_asvspoof2019_protocol(
    protocol: &Path,
    audio_dir: &Path,
    split: Split,
) -> Result<Vec<Utterance>, DataError> {
    let mut utterances = Vec::new();
    read_asvspoof2019_protocol_into(
        protocol,
        audio_dir,
        split,
        &mut IdRegistry::default(),
        &mut utterances,
    )?;
    Ok(utterances)
}

fn read_asvspoof2019_protocol_into(
    protocol: &Path,
    audio_dir: &Path,
    split: Split,
    ids: &mut IdRegistry,
    utterances: &mut Vec<Utterance>,
) -> Result<(), DataError> {
    for_each_line(protocol, |line_number, line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [speaker, id, _environment, attack, key] = fields[..] else {
            return Err(malformed(
                protocol,
                line_number,
                format!(
                    "expected 5 fields `SPEAKER UTTERANCE - ATTACK KEY`, found {}: `{line}`",
                    fields.len()
                ),
            ));
        };
        let label = parse_label(protocol, line_number, key)?;
        ids.register(id, protocol, line_number)?;
        utterances.push(Utterance {
            id: id.to_owned(),
            path: audio_dir.join(format!("{id}.flac")),
            label,
            speaker: dash_to_none(speaker),
            system: dash_to_none(attack),
            split: split.clone(),
            conditions: None,
        });
        Ok(())
    })
}

/// Reads the ASVspoof 2021 LA or DF CM key (`keys/{LA,DF}/CM/trial_metadata.txt` under
/// `root`), with audio at `ASVspoof2021_{LA,DF}_eval/flac/TRIAL.flac`. Every trial gets
/// [`Split::Eval`]; the key's `subset` column (`eval`, `progress`, `hidden_track`) is kept in
/// [`Utterance::conditions`].
pub fn read_asvspoof2021(
    root: &Path,
    track: Asvspoof2021Track,
) -> Result<Vec<Utterance>, DataError> {
    let candidates = track.key_file_candidates(root);
    let Some(key_file) = candidates.iter().find(|p| p.is_file()) else {
        return Err(DataError::Missing {
            path: candidates[0].clone(),
            what: format!(
                "ASVspoof 2021 {} CM key (trial_metadata.txt)",
                track.as_str()
            ),
        });
    };
    read_asvspoof2021_key(key_file, &track.audio_dir(root), track)
}

/// Reads one ASVspoof 2021 key file. Column orders (docs/reference.md §4):
/// LA `SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET`;
/// DF `SPEAKER TRIAL CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER` followed by unused columns.
pub fn read_asvspoof2021_key(
    key_file: &Path,
    audio_dir: &Path,
    track: Asvspoof2021Track,
) -> Result<Vec<Utterance>, DataError> {
    let (min_fields, layout) = match track {
        Asvspoof2021Track::La => (8, "SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET"),
        Asvspoof2021Track::Df => (
            9,
            "SPEAKER TRIAL CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER ...",
        ),
    };
    let mut utterances = Vec::new();
    let mut ids = IdRegistry::default();
    for_each_line(key_file, |line_number, line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let exact = track == Asvspoof2021Track::La;
        if fields.len() < min_fields || (exact && fields.len() != min_fields) {
            return Err(malformed(
                key_file,
                line_number,
                format!(
                    "expected {}{min_fields} fields `{layout}`, found {}: `{line}`",
                    if exact { "" } else { "at least " },
                    fields.len()
                ),
            ));
        }
        let id = fields[1];
        let label = parse_label(key_file, line_number, fields[5])?;
        ids.register(id, key_file, line_number)?;
        let (transmission, source_corpus, vocoder) = match track {
            Asvspoof2021Track::La => (dash_to_none(fields[3]), None, None),
            Asvspoof2021Track::Df => (None, dash_to_none(fields[3]), dash_to_none(fields[8])),
        };
        utterances.push(Utterance {
            id: id.to_owned(),
            path: audio_dir.join(format!("{id}.flac")),
            label,
            speaker: dash_to_none(fields[0]),
            system: dash_to_none(fields[4]),
            split: Split::Eval,
            conditions: Some(TrialConditions {
                codec: fields[2].to_owned(),
                transmission,
                source_corpus,
                trim: fields[6].to_owned(),
                subset: fields[7].to_owned(),
                vocoder,
            }),
        });
        Ok(())
    })?;
    Ok(utterances)
}

/// Reads the In-the-Wild release: `root/meta.csv` (`file,speaker,label`, labels `bona-fide` /
/// `spoof`) with the WAV files beside it. The id is the file name without extension; all
/// trials are [`Split::Eval`] (the corpus is an evaluation set).
pub fn read_in_the_wild(root: &Path) -> Result<Vec<Utterance>, DataError> {
    let meta = root.join("meta.csv");
    if !meta.is_file() {
        return Err(DataError::Missing {
            path: meta,
            what: "In-the-Wild meta.csv".to_owned(),
        });
    }
    let table = CsvTable::read(&meta, &["file", "speaker", "label"])?;
    let mut utterances = Vec::with_capacity(table.rows.len());
    let mut ids = IdRegistry::default();
    for row in &table.rows {
        let file = table.required(row, "file")?;
        let label = parse_label(&meta, row.line, table.required(row, "label")?)?;
        let id = file_stem_id(file);
        ids.register(&id, &meta, row.line)?;
        utterances.push(Utterance {
            id,
            path: root.join(file),
            label,
            speaker: table.optional(row, "speaker"),
            system: None,
            split: Split::Eval,
            conditions: None,
        });
    }
    Ok(utterances)
}

/// Reads a plain CSV list with a header naming at least `path` and `label`, and optionally
/// `speaker`, `system` (or `attack`: the spoofing system, which per-attack EERs group by),
/// `split` and `id` (other columns are ignored, so a list may carry notes).
/// Relative paths are relative to the CSV's folder. Without an `id` column the id is the path
/// without its extension (`spk1/a001.wav` -> `spk1/a001`), which stays unique where bare file
/// names might not.
pub fn read_csv_list(csv_file: &Path) -> Result<Vec<Utterance>, DataError> {
    let base = csv_file.parent().unwrap_or(Path::new("."));
    let table = CsvTable::read(csv_file, &["path", "label"])?;
    let mut utterances = Vec::with_capacity(table.rows.len());
    let mut ids = IdRegistry::default();
    for row in &table.rows {
        let path = table.required(row, "path")?;
        let label = parse_label(csv_file, row.line, table.required(row, "label")?)?;
        let id = table
            .optional(row, "id")
            .unwrap_or_else(|| path_without_extension(path));
        ids.register(&id, csv_file, row.line)?;
        utterances.push(Utterance {
            id,
            path: base.join(path),
            label,
            speaker: table.optional(row, "speaker"),
            system: table
                .optional(row, "system")
                .or_else(|| table.optional(row, "attack")),
            split: table
                .optional(row, "split")
                .map_or(Split::Unspecified, |s| Split::parse(&s)),
            conditions: None,
        });
    }
    Ok(utterances)
}

fn file_stem_id(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned())
}

fn path_without_extension(path: &str) -> String {
    let as_path = Path::new(path);
    match as_path.extension() {
        Some(_) => as_path.with_extension("").to_string_lossy().into_owned(),
        None => path.to_owned(),
    }
}

pub(crate) fn parse_label(file: &Path, line: u64, key: &str) -> Result<Label, DataError> {
    key.parse()
        .map_err(|reason: String| malformed(file, line, reason))
}

pub(crate) fn malformed(file: &Path, line: u64, reason: String) -> DataError {
    DataError::Malformed {
        path: file.to_path_buf(),
        line,
        reason,
    }
}

fn read_list_file(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
                what: "list file".to_owned(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Calls `handle` with each non-blank line (1-based number, text without the line ending).
pub(crate) fn for_each_line(
    path: &Path,
    mut handle: impl FnMut(u64, &str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let bytes = read_list_file(path)?;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index as u64 + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| malformed(path, line_number, "not valid UTF-8".to_owned()))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        handle(line_number, text)?;
    }
    Ok(())
}

/// Detects an utterance id listed twice, which would silently double-count a trial in EER.
#[derive(Default)]
pub(crate) struct IdRegistry {
    first_seen: HashMap<String, String>,
}

impl IdRegistry {
    pub(crate) fn register(&mut self, id: &str, file: &Path, line: u64) -> Result<(), DataError> {
        if let Some(first_seen) = self.first_seen.get(id) {
            return Err(DataError::DuplicateId {
                path: file.to_path_buf(),
                line,
                id: id.to_owned(),
                first_seen: first_seen.clone(),
            });
        }
        self.first_seen
            .insert(id.to_owned(), format!("{}:{line}", file.display()));
        Ok(())
    }
}

struct CsvRow {
    line: u64,
    fields: Vec<String>,
}

/// A CSV file with a header, read whole, with the line number of each record kept for errors.
struct CsvTable {
    path: PathBuf,
    columns: HashMap<String, usize>,
    rows: Vec<CsvRow>,
}

impl CsvTable {
    fn read(path: &Path, required_columns: &[&str]) -> Result<CsvTable, DataError> {
        let bytes = read_list_file(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes.as_slice());
        // The csv crate's own line counter skips blank lines, and a record's byte offset
        // points at any blank lines before it; skip those and count the newlines before the
        // record's first byte, so the number matches what an editor shows.
        let newline_offsets: Vec<u64> = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i as u64)
            .collect();
        let line_at = |position: Option<&csv::Position>| -> u64 {
            position.map_or(1, |p| {
                let blank = bytes
                    .iter()
                    .skip(p.byte() as usize)
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count() as u64;
                let start = p.byte() + blank;
                newline_offsets.partition_point(|&offset| offset < start) as u64 + 1
            })
        };
        let csv_error = |error: csv::Error| {
            let line = line_at(error.position());
            let reason = match error.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("expected {expected_len} fields like the header, found {len}"),
                csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
                _ => error.to_string(),
            };
            malformed(path, line, reason)
        };
        let header = reader.headers().map_err(csv_error)?.clone();
        let columns: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.trim().to_ascii_lowercase(), i))
            .collect();
        for column in required_columns {
            if !columns.contains_key(*column) {
                return Err(malformed(
                    path,
                    1,
                    format!(
                        "the header must name the columns {}, found `{}`",
                        required_columns.join(", "),
                        header.iter().collect::<Vec<_>>().join(",")
                    ),
                ));
            }
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(csv_error)?;
            let line = line_at(record.position());
            if record.iter().all(str::is_empty) {
                continue;
            }
            rows.push(CsvRow {
                line,
                fields: record.iter().map(str::to_owned).collect(),
            });
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            columns,
            rows,
        })
    }

    fn required<'r>(&self, row: &'r CsvRow, column: &str) -> Result<&'r str, DataError> {
        let value = self
            .columns
            .get(column)
            .map_or("", |&i| row.fields[i].as_str());
        if value.is_empty() {
            return Err(malformed(
                &self.path,
                row.line,
                format!("the `{column}` field is empty"),
            ));
        }
        Ok(value)
    }

    fn optional(&self, row: &CsvRow, column: &str) -> Option<String> {
        self.columns
            .get(column)
            .and_then(|&i| dash_to_none(&row.fields[i]))
    }
}
