//! The ASVspoof 5 (2024) Track 1 protocols.
//!
//! Each protocol line is `SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED
//! ATTACK_TAG ATTACK_LABEL KEY TMP`, separated by spaces although the files are named `.tsv`,
//! with `-` for a value that does not apply. The file name's prefix (`T_`, `D_`, `E_`) is the
//! partition, and the audio of each partition sits in its own folder.

use std::fs;
use std::path::{Path, PathBuf};

use crate::protocols::{for_each_line, malformed, parse_label, IdRegistry};
use crate::utterance::dash_to_none;
use crate::{DataError, Split, TrialConditions, Utterance};

/// Folder the protocol archive (`ASVspoof5_protocols.tar.gz`) unpacks to, under the corpus root.
pub const ASVSPOOF5_PROTOCOL_DIR: &str = "ASVspoof5_protocols";

/// The Track 1 protocol of each partition.
const ASVSPOOF5_PROTOCOLS: [(Split, &str); 3] = [
    (Split::Train, "ASVspoof5.train.tsv"),
    (Split::Dev, "ASVspoof5.dev.track_1.tsv"),
    (Split::Eval, "ASVspoof5.eval.track_1.tsv"),
];

const LAYOUT: &str = "SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED \
                      ATTACK_TAG ATTACK_LABEL KEY TMP";
const FIELDS: usize = 10;

/// What the reader stores as the codec of a trial whose `CODEC` column is `-`, so that a
/// per-codec breakdown names the uncompressed condition in words.
pub const ASVSPOOF5_NO_CODEC: &str = "none";

/// Where a Track 1 protocol may sit under `root`: in `ASVspoof5_protocols/`, or unpacked
/// directly into the root. Every candidate of every partition, in partition order.
pub fn asvspoof5_protocol_candidates(root: &Path) -> Vec<PathBuf> {
    ASVSPOOF5_PROTOCOLS
        .iter()
        .flat_map(|(_, name)| {
            [
                root.join(ASVSPOOF5_PROTOCOL_DIR).join(name),
                root.join(name),
            ]
        })
        .collect()
}

/// Reads every ASVspoof 5 Track 1 protocol present under `root` (train, dev, eval; see
/// [`asvspoof5_protocol_candidates`]), with audio at `flac_T/`, `flac_D/` and `flac_E_eval/`
/// (or any `flac_E_*/`). Partitions whose protocol is absent are skipped; having none at all
/// is an error. A line whose file name belongs to another partition than its protocol (a
/// `D_` file in the train list) is malformed.
pub fn read_asvspoof5(root: &Path) -> Result<Vec<Utterance>, DataError> {
    let audio = AudioDirs::find(root);
    let mut utterances = Vec::new();
    // One registry over all partitions: a file listed in two would leak between them.
    let mut ids = IdRegistry::default();
    let mut found_any = false;
    for (split, name) in ASVSPOOF5_PROTOCOLS {
        let candidates = [
            root.join(ASVSPOOF5_PROTOCOL_DIR).join(name),
            root.join(name),
        ];
        let Some(protocol) = candidates.iter().find(|p| p.is_file()) else {
            continue;
        };
        found_any = true;
        read_into(protocol, &audio, Some(&split), &mut ids, &mut utterances)?;
    }
    if !found_any {
        return Err(DataError::Missing {
            path: root.join(ASVSPOOF5_PROTOCOL_DIR),
            what: "ASVspoof 5 Track 1 protocol \
                   (ASVspoof5.{train,dev.track_1,eval.track_1}.tsv)"
                .to_owned(),
        });
    }
    Ok(utterances)
}

/// Reads one ASVspoof 5 Track 1 protocol file, whatever its name; each trial's partition comes
/// from its file name's prefix, and its audio is looked for in that partition's folder under
/// `root`.
pub fn read_asvspoof5_protocol(protocol: &Path, root: &Path) -> Result<Vec<Utterance>, DataError> {
    let mut utterances = Vec::new();
    read_into(
        protocol,
        &AudioDirs::find(root),
        None,
        &mut IdRegistry::default(),
        &mut utterances,
    )?;
    Ok(utterances)
}

fn read_into(
    protocol: &Path,
    audio: &AudioDirs,
    expected: Option<&Split>,
    ids: &mut IdRegistry,
    utterances: &mut Vec<Utterance>,
) -> Result<(), DataError> {
    let mut first = true;
    for_each_line(protocol, |line_number, line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_first = std::mem::replace(&mut first, false);
        // The released files have no header, but a hand-made list copied from the README might.
        if is_first
            && fields
                .get(1)
                .is_some_and(|f| f.eq_ignore_ascii_case("FLAC_FILE_NAME"))
        {
            return Ok(());
        }
        let [speaker, id, _gender, codec, _codec_q, _codec_seed, _attack_tag, attack, key, _tmp] =
            fields[..]
        else {
            return Err(malformed(
                protocol,
                line_number,
                format!(
                    "expected {FIELDS} fields `{LAYOUT}`, found {}: `{line}`",
                    fields.len()
                ),
            ));
        };
        let label = parse_label(protocol, line_number, key)?;
        let split = split_of(id).ok_or_else(|| {
            malformed(
                protocol,
                line_number,
                format!(
                    "file name `{id}` does not start with T_, D_ or E_, which tell its partition"
                ),
            )
        })?;
        if let Some(expected) = expected.filter(|e| **e != split) {
            return Err(malformed(
                protocol,
                line_number,
                format!("`{id}` is a {split} file, listed in the {expected} protocol"),
            ));
        }
        ids.register(id, protocol, line_number)?;
        // Bona fide lines write `bonafide` (or `-`) where a spoof names its attack.
        let system = dash_to_none(attack).filter(|a| !a.eq_ignore_ascii_case("bonafide"));
        utterances.push(Utterance {
            id: id.to_owned(),
            path: audio.path_of(&split, id),
            label,
            speaker: dash_to_none(speaker),
            system,
            split: split.clone(),
            conditions: Some(TrialConditions {
                codec: dash_to_none(codec).unwrap_or_else(|| ASVSPOOF5_NO_CODEC.to_owned()),
                transmission: None,
                source_corpus: None,
                trim: "-".to_owned(),
                // No subset column: the partition stands in, so `--subset eval` means the
                // evaluation set here as it does for the 2021 keys.
                subset: split.to_string(),
                vocoder: None,
            }),
        });
        Ok(())
    })
}

fn split_of(id: &str) -> Option<Split> {
    match id.get(..2)? {
        "T_" => Some(Split::Train),
        "D_" => Some(Split::Dev),
        "E_" => Some(Split::Eval),
        _ => None,
    }
}

/// The audio folder of each partition under the corpus root.
struct AudioDirs {
    train: PathBuf,
    dev: PathBuf,
    /// `flac_E_eval/` when present, else every `flac_E_*/` folder (the evaluation archives
    /// unpacked one by one), else `flac_E_eval/` so that a missing folder shows in the paths.
    eval: Vec<PathBuf>,
}

impl AudioDirs {
    fn find(root: &Path) -> AudioDirs {
        let standard = root.join("flac_E_eval");
        let eval = if standard.is_dir() {
            vec![standard]
        } else {
            let mut found: Vec<PathBuf> = fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("flac_E_"))
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            if found.is_empty() {
                vec![standard]
            } else {
                found
            }
        };
        AudioDirs {
            train: root.join("flac_T"),
            dev: root.join("flac_D"),
            eval,
        }
    }

    fn path_of(&self, split: &Split, id: &str) -> PathBuf {
        let file = format!("{id}.flac");
        match split {
            Split::Train => self.train.join(file),
            Split::Dev => self.dev.join(file),
            _ => match &self.eval[..] {
                [only] => only.join(file),
                // Several folders: the one that holds the file (one stat per trial, only in
                // this layout), else the first so that the file is reported missing there.
                dirs => dirs
                    .iter()
                    .map(|d| d.join(&file))
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| dirs[0].join(&file)),
            },
        }
    }
}
