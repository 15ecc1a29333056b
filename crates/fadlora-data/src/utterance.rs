use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Ground truth of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Bonafide,
    Spoof,
}

impl Label {
    /// The class index SSL_Anti-spoofing and AASIST train with: 1 = bona fide, 0 = spoof.
    pub fn class_index(self) -> i64 {
        match self {
            Label::Bonafide => 1,
            Label::Spoof => 0,
        }
    }

    /// The spelling of ASVspoof protocols.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Bonafide => "bonafide",
            Label::Spoof => "spoof",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The labels are written `bonafide` (ASVspoof), `bona-fide` (In-the-Wild) and, by hand,
/// `bona fide` / `bona_fide`; case is ignored.
impl FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bonafide" | "bona-fide" | "bona fide" | "bona_fide" => Ok(Label::Bonafide),
            "spoof" => Ok(Label::Spoof),
            _ => Err(format!(
                "label `{s}` is neither bonafide (bona-fide) nor spoof"
            )),
        }
    }
}

/// Which part of a corpus a trial belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Dev,
    Eval,
    /// A split name a CSV list uses that is none of the three above, kept as written.
    Other(String),
    /// The list does not say (a CSV without a `split` column, or an empty cell).
    Unspecified,
}

impl Split {
    /// Accepts the usual aliases (`trn`, `training`; `development`, `valid`, `validation`;
    /// `evaluation`, `test`), case-insensitively. Anything else becomes [`Split::Other`] and an
    /// empty string [`Split::Unspecified`].
    pub fn parse(name: &str) -> Split {
        let trimmed = name.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "" => Split::Unspecified,
            "train" | "trn" | "training" => Split::Train,
            "dev" | "development" | "valid" | "validation" | "val" => Split::Dev,
            "eval" | "evaluation" | "test" => Split::Eval,
            _ => Split::Other(trimmed.to_owned()),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Split::Train => f.write_str("train"),
            Split::Dev => f.write_str("dev"),
            Split::Eval => f.write_str("eval"),
            Split::Other(name) => f.write_str(name),
            Split::Unspecified => f.write_str("unspecified"),
        }
    }
}

/// The conditions ASVspoof 2021 keys attach to each trial (docs/reference.md §4). The
/// ASVspoof 5 reader fills the codec, writes `-` for `trim` and the partition for `subset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrialConditions {
    /// Codec the trial went through (`alaw`, `mp3m4a`, `nocodec`, ...).
    pub codec: String,
    /// LA only: the telephony channel (`ita_tx`, `sin_tx`, ...).
    pub transmission: Option<String>,
    /// DF only: the corpus the source speech came from (`asvspoof`, `vcc2018`, `vcc2020`).
    pub source_corpus: Option<String>,
    /// `trim` or `notrim`: whether leading/trailing silence was removed.
    pub trim: String,
    /// `eval`, `progress` or `hidden_track`; results are reported on `eval`.
    pub subset: String,
    /// DF only: the vocoder family of a spoof (`traditional_vocoder`, `neural_vocoder_autoregressive`, ...).
    pub vocoder: Option<String>,
}

/// One trial of a corpus: an audio file and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Utterance {
    /// The name score files use (`LA_T_1138215`).
    pub id: String,
    pub path: PathBuf,
    pub label: Label,
    pub speaker: Option<String>,
    /// The attack / spoofing system id (`A07`); `None` for bona fide trials.
    pub system: Option<String>,
    pub split: Split,
    /// ASVspoof 2021 and ASVspoof 5 only.
    pub conditions: Option<TrialConditions>,
}

/// `-` is how ASVspoof protocols write "not applicable".
pub(crate) fn dash_to_none(field: &str) -> Option<String> {
    let field = field.trim();
    if field.is_empty() || field == "-" {
        None
    } else {
        Some(field.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_in_every_spelling() {
        for s in [
            "bonafide",
            "bona-fide",
            "Bona Fide",
            "BONA_FIDE",
            " bonafide ",
        ] {
            assert_eq!(s.parse::<Label>().unwrap(), Label::Bonafide, "{s}");
        }
        assert_eq!("Spoof".parse::<Label>().unwrap(), Label::Spoof);
        assert!("fake".parse::<Label>().is_err());
        assert_eq!(Label::Bonafide.class_index(), 1);
        assert_eq!(Label::Spoof.class_index(), 0);
    }

    #[test]
    fn splits_parse_with_aliases() {
        assert_eq!(Split::parse("TRN"), Split::Train);
        assert_eq!(Split::parse("validation"), Split::Dev);
        assert_eq!(Split::parse("test"), Split::Eval);
        assert_eq!(Split::parse(""), Split::Unspecified);
        assert_eq!(Split::parse("holdout"), Split::Other("holdout".into()));
        assert_eq!(Split::parse("holdout").to_string(), "holdout");
    }
}
