//! Corpora for fadlora: protocol readers and decoded, fixed-length waveforms. No burn here:
//! the report reads protocols too, and the trainer turns waveforms into tensors.
//!
//! Every reader returns [`Utterance`]s: an id, the audio path, the label, speaker, attack
//! system, split and (ASVspoof 2021 and 5) the trial conditions. A malformed list line is a
//! [`DataError::Malformed`] naming the file and the 1-based line number.
//!
//! # Naming a dataset: [`DatasetSpec`]
//!
//! The command line takes a dataset as one string, `kind:path`:
//!
//! | spec | reads |
//! |---|---|
//! | `asvspoof2019:/data/LA` | ASVspoof 2019 LA: `ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt` (those present), audio `ASVspoof2019_LA_{train,dev,eval}/flac/UTT.flac` |
//! | `asvspoof2021-la:/data/2021` | ASVspoof 2021 LA key `keys/LA/CM/trial_metadata.txt` (or `LA-keys-full/keys/...`), audio `ASVspoof2021_LA_eval/flac/` |
//! | `asvspoof2021-df:/data/2021` | the same for DF (`keys/DF/...`, `ASVspoof2021_DF_eval/flac/`) |
//! | `asvspoof5:/data/asvspoof5` | ASVspoof 5 Track 1: `ASVspoof5.{train,dev.track_1,eval.track_1}.tsv` (those present) in `ASVspoof5_protocols/` or the root, audio `flac_T/`, `flac_D/`, `flac_E_eval/` (or `flac_E_*/`) by the file name's `T_`/`D_`/`E_` prefix |
//! | `itw:/data/release_in_the_wild` | In-the-Wild `meta.csv` (`file,speaker,label`) and the WAVs beside it |
//! | `csv:/data/list.csv` | a CSV with header `path,label[,speaker,system,split,id]` (`attack` may name the `system` column), paths relative to the CSV's folder |
//!
//! A bare path is recognised too: a folder containing `ASVspoof2019_LA_cm_protocols/` is ASVspoof
//! 2019 LA, one containing `ASVspoof5_protocols/` or an ASVspoof 5 Track 1 protocol is ASVspoof 5,
//! one containing `meta.csv` is In-the-Wild, one containing exactly one of the 2021 LA/DF
//! keys is that track, and a `*.csv` file is a CSV list.
//!
//! Labels are `bonafide`, `bona-fide` or `spoof` (any case). ASVspoof 2021 and In-the-Wild trials
//! are all [`Split::Eval`]; report 2021 results on `conditions.subset == "eval"`. ASVspoof 5
//! trials keep their attack (`A01`-`A32`) in [`Utterance::system`] and their codec condition
//! (`C01`-`C11`, [`ASVSPOOF5_NO_CODEC`] for none) in [`TrialConditions::codec`], so per-attack
//! and per-codec breakdowns group them as they group the 2021 conditions.
//!
//! # Waveforms for training and scoring
//!
//! [`AudioDataset`] decodes each utterance to mono 16 kHz and cuts or tiles it to a fixed
//! length ([`CropMode::First`] as SSL_Anti-spoofing evaluates, [`CropMode::Random`] for
//! training); [`AudioDataset::item`] gives an [`AudioItem`] whose waveform is the samples or
//! the decoding error. [`AudioDataset::with_augmentation`] applies RawBoost ([`RawBoost`]) to
//! training waveforms before they are cut, with draws seeded per epoch and item.

mod asvspoof5;
mod dataset;
mod error;
mod protocols;
mod spec;
mod utterance;

pub use asvspoof5::{
    asvspoof5_protocol_candidates, read_asvspoof5, read_asvspoof5_protocol, ASVSPOOF5_NO_CODEC,
    ASVSPOOF5_PROTOCOL_DIR,
};
pub use dataset::{AudioDataset, AudioItem, CropMode, Normalization, SSL_ANTI_SPOOFING_SAMPLES};
pub use error::DataError;
pub use fadlora_audio::{RawBoost, RawBoostMode};
pub use protocols::{
    read_asvspoof2019_la, read_asvspoof2019_protocol, read_asvspoof2021, read_asvspoof2021_key,
    read_csv_list, read_in_the_wild, Asvspoof2021Track, ASVSPOOF2019_LA_PROTOCOL_DIR,
};
pub use spec::DatasetSpec;
pub use utterance::{Label, Split, TrialConditions, Utterance};
