//! One function per fuzz target, shared by the cargo-fuzz targets (nightly, libFuzzer) and the
//! stable replay test `crates/fadlora-cli/tests/fuzz_replay.rs`.
//!
//! Every function must return normally on any input: errors are the expected answer to hostile
//! bytes, while a panic, abort, hang or runaway allocation is a bug in the library under test.
//! This is the only file that names the libraries' paths and types, so moving a type means
//! editing here alone.

// Each fuzz target binary calls one of these functions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Flex;
use fadlora_audio::{AudioError, TARGET_SAMPLE_RATE};
use fadlora_data::{Asvspoof2021Track, Split};
use fadlora_model::{Wav2Vec2Config, Wav2Vec2Model};

type B = Flex;

/// The readers take paths, so every input goes through a file; a fresh folder per call keeps
/// parallel test threads from overwriting each other's input.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a scratch folder")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the fuzz input");
    path
}

/// WAV input with the RIFF/WAVE magic forced in place, so mutations are spent on the header
/// fields and chunks rather than on rediscovering the magic.
pub fn decode_wav(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 12 {
        bytes[0..4].copy_from_slice(b"RIFF");
        bytes[8..12].copy_from_slice(b"WAVE");
    }
    decode_audio(&bytes, "input.wav");
}

/// FLAC input with the `fLaC` magic forced, unless it starts with an ID3v2 tag (which the
/// decoder skips before looking for `fLaC`).
pub fn decode_flac(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 4 && !bytes.starts_with(b"ID3") {
        bytes[0..4].copy_from_slice(b"fLaC");
    }
    decode_audio(&bytes, "input.flac");
}

fn decode_audio(bytes: &[u8], name: &str) {
    let dir = scratch();
    let path = write(dir.path(), name, bytes);
    match fadlora_audio::decode(&path) {
        Ok(audio) => {
            let mono = audio.to_mono();
            let _ = audio.duration_seconds();
            // What `load_mono_16k` does next: a header's sample rate reaches the resampler.
            match fadlora_audio::resample(&mono, audio.sample_rate, TARGET_SAMPLE_RATE) {
                Ok(resampled) => {
                    let _ = fadlora_audio::fixed_length(&resampled, 1000);
                }
                Err(e) => {
                    let _ = e.reason();
                }
            }
        }
        // The decoder turns its own panics into this error; under the fuzzer that is a crash.
        Err(AudioError::DecoderPanic { detail, .. }) => panic!("decoder panicked: {detail}"),
        Err(e) => {
            let _ = e.reason();
        }
    }
}

/// The same bytes as every protocol list the data crate reads: ASVspoof 2019 LA, ASVspoof 2021
/// LA and DF keys, In-the-Wild `meta.csv` and a plain CSV list.
pub fn protocols(data: &[u8]) {
    let dir = scratch();
    let root = dir.path();
    let audio = root.join("flac");

    let list = write(root, "protocol.txt", data);
    let _ = fadlora_data::read_asvspoof2019_protocol(&list, &audio, Split::Train);
    for track in [Asvspoof2021Track::La, Asvspoof2021Track::Df] {
        let _ = fadlora_data::read_asvspoof2021_key(&list, &audio, track);
    }
    write(root, "meta.csv", data);
    let _ = fadlora_data::read_in_the_wild(root);
    let csv = write(root, "list.csv", data);
    let _ = fadlora_data::read_csv_list(&csv);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fadlora_data::DatasetSpec::parse(text);
    }
}

/// A run TOML, as `fadlora train` reads it.
pub fn run_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fadlora_train::parse_run_config(text, Path::new("run.toml")) {
        Ok(mut config) => config.resolve_paths(Path::new("/runs")),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// An experiment TOML, parsed and expanded into its grid of runs, as `fadlora sweep` does.
pub fn experiment_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fadlora_sweep::Experiment::parse(
        text,
        Path::new("experiments/fuzz.toml"),
        fadlora_train::config::MODEL_RULES,
    ) {
        Ok(experiment) => {
            let _ = experiment.plan(Path::new("/results"));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A one-layer, four-wide wav2vec2: the smallest shape that has every kind of tensor a real
/// checkpoint has, so the seed checkpoints stay a few KB and mutations reach every loader path.
pub fn micro_config() -> Wav2Vec2Config {
    Wav2Vec2Config {
        hidden_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 1,
        intermediate_size: 4,
        conv_dim: vec![4],
        conv_kernel: vec![2],
        conv_stride: vec![1],
        num_feat_extract_layers: None,
        num_conv_pos_embeddings: 2,
        num_conv_pos_embedding_groups: 1,
        ..Wav2Vec2Config::xls_r_300m()
    }
}

/// The same bytes as a safetensors file and as a PyTorch `.bin`, loaded into [`micro_config`].
pub fn checkpoint(data: &[u8]) {
    let dir = scratch();
    let device = Default::default();
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let path = write(dir.path(), name, data);
        if let Err(e) = Wav2Vec2Model::<B>::from_file(micro_config(), &path, &device) {
            let _ = e.to_string();
        }
    }
}

/// A fairseq `.pt` checkpoint (a zip holding a pickle with omegaconf or argparse settings and
/// tensor storages), read by fadlora's own pickle machine: any input is a checkpoint or an
/// error, never a panic.
pub fn fairseq_checkpoint(data: &[u8]) {
    let dir = scratch();
    let path = write(dir.path(), "model.pt", data);
    if let Err(e) = Wav2Vec2Model::<B>::from_fairseq(&path, &Default::default()) {
        let _ = e.to_string();
    }
}

/// The architecture of the PEFT adapter fixtures (`fixtures/peft`), so their adapters load.
fn adapter_base_config() -> Wav2Vec2Config {
    Wav2Vec2Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        conv_dim: vec![16; 7],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
        ..Wav2Vec2Config::xls_r_300m()
    }
}

/// A PEFT adapter folder packed in one input: a little-endian `u16` length, that many bytes of
/// `adapter_config.json`, then `adapter_model.safetensors`.
pub fn adapter(data: &[u8]) {
    let (config, weights) = split_adapter_input(data);
    let dir = scratch();
    write(dir.path(), "adapter_config.json", config);
    write(dir.path(), "adapter_model.safetensors", weights);
    static BASE: OnceLock<Wav2Vec2Model<B>> = OnceLock::new();
    let device = Default::default();
    let base = BASE.get_or_init(|| adapter_base_config().init::<B>(&device));
    if let Err(e) = base.clone().load_adapter_with_extras(dir.path(), &device) {
        let _ = e.to_string();
    }
}

/// Splits an [`adapter`] input; also used to build its seeds.
pub fn split_adapter_input(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(len)
}
