use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::asvspoof5::{asvspoof5_protocol_candidates, read_asvspoof5, ASVSPOOF5_PROTOCOL_DIR};
use crate::protocols::{
    read_asvspoof2019_la, read_asvspoof2021, read_csv_list, read_in_the_wild, Asvspoof2021Track,
    ASVSPOOF2019_LA_PROTOCOL_DIR,
};
use crate::{DataError, Utterance};

/// A dataset named in one string, as the command line takes it. See the crate documentation
/// for the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DatasetSpec {
    /// ASVspoof 2019 LA corpus root (the folder holding `ASVspoof2019_LA_cm_protocols`).
    Asvspoof2019La(PathBuf),
    /// ASVspoof 2021 LA or DF root (holding `keys/` and `ASVspoof2021_{LA,DF}_eval/`).
    Asvspoof2021(Asvspoof2021Track, PathBuf),
    /// ASVspoof 5 root (holding `ASVspoof5_protocols/` or the Track 1 `.tsv` protocols, and
    /// `flac_T/`, `flac_D/`, `flac_E_eval/`).
    Asvspoof5(PathBuf),
    /// In-the-Wild release folder (holding `meta.csv` and the WAV files).
    InTheWild(PathBuf),
    /// A plain CSV list.
    Csv(PathBuf),
}

const PREFIXES: &str = "asvspoof2019:, asvspoof2021-la:, asvspoof2021-df:, asvspoof5:, itw:, csv:";

impl DatasetSpec {
    /// Parses `kind:path`, or detects the kind of a bare path from what it contains (this
    /// looks at the file system).
    pub fn parse(spec: &str) -> Result<DatasetSpec, DataError> {
        let invalid = |reason: String| DataError::InvalidSpec {
            spec: spec.to_owned(),
            reason,
        };
        if let Some((kind, path)) = spec.split_once(':') {
            let path = PathBuf::from(path);
            let parsed = match kind.to_ascii_lowercase().as_str() {
                "asvspoof2019" | "asvspoof2019-la" => Some(DatasetSpec::Asvspoof2019La(path)),
                "asvspoof2021-la" => Some(DatasetSpec::Asvspoof2021(Asvspoof2021Track::La, path)),
                "asvspoof2021-df" => Some(DatasetSpec::Asvspoof2021(Asvspoof2021Track::Df, path)),
                "asvspoof5" => Some(DatasetSpec::Asvspoof5(path)),
                "itw" | "in-the-wild" => Some(DatasetSpec::InTheWild(path)),
                "csv" => Some(DatasetSpec::Csv(path)),
                _ => None,
            };
            if let Some(parsed) = parsed {
                if parsed.path().as_os_str().is_empty() {
                    return Err(invalid(format!("no path after `{kind}:`")));
                }
                return Ok(parsed);
            }
            // Not a known prefix: a path that happens to contain a colon.
        }
        Self::detect(Path::new(spec)).map_err(invalid)
    }

    fn detect(path: &Path) -> Result<DatasetSpec, String> {
        if !path.exists() {
            return Err(format!(
                "no such file or folder; name a dataset as one of {PREFIXES} followed by a path"
            ));
        }
        if path.is_file() {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                return Ok(DatasetSpec::Csv(path.to_path_buf()));
            }
            return Err("a file that is not a .csv list".to_owned());
        }
        if path.join(ASVSPOOF2019_LA_PROTOCOL_DIR).is_dir() {
            return Ok(DatasetSpec::Asvspoof2019La(path.to_path_buf()));
        }
        if path.join(ASVSPOOF5_PROTOCOL_DIR).is_dir()
            || asvspoof5_protocol_candidates(path)
                .iter()
                .any(|p| p.is_file())
        {
            return Ok(DatasetSpec::Asvspoof5(path.to_path_buf()));
        }
        if path.join("meta.csv").is_file() {
            return Ok(DatasetSpec::InTheWild(path.to_path_buf()));
        }
        let tracks: Vec<Asvspoof2021Track> = [Asvspoof2021Track::La, Asvspoof2021Track::Df]
            .into_iter()
            .filter(|t| t.key_file_candidates(path).iter().any(|p| p.is_file()))
            .collect();
        match tracks[..] {
            [track] => Ok(DatasetSpec::Asvspoof2021(track, path.to_path_buf())),
            [_, _] => Err(
                "holds both ASVspoof 2021 LA and DF keys; say asvspoof2021-la: or asvspoof2021-df:"
                    .to_owned(),
            ),
            _ => Err(format!(
                "cannot tell the dataset kind (no {ASVSPOOF2019_LA_PROTOCOL_DIR}/, \
                 {ASVSPOOF5_PROTOCOL_DIR}/, meta.csv or keys/{{LA,DF}}/CM/trial_metadata.txt \
                 inside); prefix it with one of {PREFIXES}"
            )),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            DatasetSpec::Asvspoof2019La(p)
            | DatasetSpec::Asvspoof2021(_, p)
            | DatasetSpec::Asvspoof5(p)
            | DatasetSpec::InTheWild(p)
            | DatasetSpec::Csv(p) => p,
        }
    }

    /// Human-readable kind, for reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            DatasetSpec::Asvspoof2019La(_) => "ASVspoof 2019 LA",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::La, _) => "ASVspoof 2021 LA",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::Df, _) => "ASVspoof 2021 DF",
            DatasetSpec::Asvspoof5(_) => "ASVspoof 5",
            DatasetSpec::InTheWild(_) => "In-the-Wild",
            DatasetSpec::Csv(_) => "CSV list",
        }
    }

    /// Reads the dataset's list files (no audio is opened).
    pub fn load(&self) -> Result<Vec<Utterance>, DataError> {
        match self {
            DatasetSpec::Asvspoof2019La(root) => read_asvspoof2019_la(root),
            DatasetSpec::Asvspoof2021(track, root) => read_asvspoof2021(root, *track),
            DatasetSpec::Asvspoof5(root) => read_asvspoof5(root),
            DatasetSpec::InTheWild(root) => read_in_the_wild(root),
            DatasetSpec::Csv(file) => read_csv_list(file),
        }
    }
}

impl FromStr for DatasetSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetSpec::parse(s)
    }
}

/// The canonical `kind:path` form, which [`DatasetSpec::parse`] reads back.
impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self {
            DatasetSpec::Asvspoof2019La(_) => "asvspoof2019",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::La, _) => "asvspoof2021-la",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::Df, _) => "asvspoof2021-df",
            DatasetSpec::Asvspoof5(_) => "asvspoof5",
            DatasetSpec::InTheWild(_) => "itw",
            DatasetSpec::Csv(_) => "csv",
        };
        write!(f, "{prefix}:{}", self.path().display())
    }
}
