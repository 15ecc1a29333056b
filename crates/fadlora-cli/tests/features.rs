//! `fadlora features` and `fadlora params` end to end: the binary on the fixture checkpoints
//! and WAVs against Hugging Face's own features (fixtures/wav2vec2/*/features_reference).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wav2vec2");
const TOL: f32 = 1e-4;

fn fixture(parts: &[&str]) -> PathBuf {
    parts
        .iter()
        .fold(PathBuf::from(FIXTURES), |p, part| p.join(part))
}

fn fadlora(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "fadlora {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn reference(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

/// A minimal reader for the `.npy` files the command writes (format 1.0, `<f4`, C order).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let dims = &header[header.find("'shape': (").unwrap() + 10..];
    let dims = &dims[..dims.find(')').unwrap()];
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

fn max_diff(got: &(Vec<usize>, Vec<f32>), want: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(got.0, want.0);
    got.1
        .iter()
        .zip(&want.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn all_layers_of_the_normalising_model_match_hugging_face() {
    // stable_layer: preprocessor_config.json says do_normalize = true.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feats");
    let checkpoint = fixture(&["stable_layer", "safetensors_weight_g"]);
    let wav = fixture(&["stable_layer", "audio.wav"]);
    fadlora(&[
        "features",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--layers",
        "all",
        "--out",
        out.to_str().unwrap(),
        wav.to_str().unwrap(),
    ]);
    let want = reference(&fixture(&[
        "stable_layer",
        "features_reference.safetensors",
    ]));
    let mut names: Vec<(String, String)> = (0..=2)
        .map(|i| (format!("audio.layer{i}.npy"), format!("hidden_states.{i}")))
        .collect();
    names.push(("audio.last.npy".into(), "last_hidden_state".into()));
    for (file, key) in names {
        let diff = max_diff(&read_npy(&out.join(&file)), &want[&key]);
        println!("stable_layer {file} vs {key}: max |diff| = {diff:.3e}");
        assert!(diff <= TOL, "{file}: {diff}");
    }
    let written = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(written, 4, "exactly hidden_states 0..=2 and last");
}

#[test]
fn one_layer_of_one_file_is_a_single_npy_without_normalisation() {
    // base_group: do_normalize = false, so the samples go in as they are.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layer2.npy");
    let checkpoint = fixture(&["base_group", "bin_prefixed_pretraining"]);
    let wav = fixture(&["base_group", "audio.wav"]);
    fadlora(&[
        "features",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--layers",
        "2",
        "--out",
        out.to_str().unwrap(),
        wav.to_str().unwrap(),
    ]);
    let want = reference(&fixture(&["base_group", "features_reference.safetensors"]));
    let diff = max_diff(&read_npy(&out), &want["hidden_states.2"]);
    println!("base_group layer2.npy vs hidden_states.2: max |diff| = {diff:.3e}");
    assert!(diff <= TOL, "{diff}");
}

/// The adapted encoder (PEFT's `qv_r4` on stable_layer) run by the binary, merged, against the
/// model crate's unmerged adapter forward (which tests/lora.rs checks against PEFT within 1e-4).
#[test]
fn adapter_features_equal_the_unmerged_adapted_model() {
    use burn::backend::Flex;
    use burn::prelude::*;
    use fadlora_model::Wav2Vec2Model;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("feats");
    let checkpoint = fixture(&["stable_layer", "safetensors_weight_g"]);
    let adapter = fixture(&["..", "peft", "qv_r4"]);
    let wav = fixture(&["stable_layer", "audio.wav"]);
    fadlora(&[
        "features",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--layers",
        "2,last",
        "--out",
        out.to_str().unwrap(),
        wav.to_str().unwrap(),
    ]);
    let device = Default::default();
    let model = Wav2Vec2Model::<Flex>::from_pretrained(&checkpoint, &device)
        .unwrap()
        .load_adapter(&adapter, &device)
        .unwrap();
    let mut wave = fadlora_audio::load_mono_16k(&wav).unwrap();
    fadlora_audio::normalize_zero_mean_unit_variance(&mut wave);
    let samples = wave.len();
    let result = model.forward(
        Tensor::<Flex, 2>::from_data(TensorData::new(wave, [1, samples]), &device),
        true,
    );
    let as_pair = |t: Tensor<Flex, 3>| {
        let [_, frames, hidden] = t.dims();
        (vec![frames, hidden], t.into_data().to_vec::<f32>().unwrap())
    };
    let base = reference(&fixture(&[
        "stable_layer",
        "features_reference.safetensors",
    ]));
    for (file, want, base_key) in [
        (
            "audio.layer2.npy",
            as_pair(result.hidden_states.unwrap()[2].clone()),
            "hidden_states.2",
        ),
        (
            "audio.last.npy",
            as_pair(result.last_hidden_state),
            "last_hidden_state",
        ),
    ] {
        let got = read_npy(&out.join(file));
        let diff = max_diff(&got, &want);
        let from_base = max_diff(&got, &base[base_key]);
        println!(
            "adapter {file}: max |diff| vs unmerged = {diff:.3e}, vs base model = {from_base:.3}"
        );
        assert!(diff <= TOL, "{file}: {diff}");
        assert!(from_base > 0.1, "{file}: the adapter changed nothing");
    }
}

#[test]
fn a_missing_backend_or_bad_layer_is_a_clear_error() {
    let checkpoint = fixture(&["base_group", "safetensors_weight_g"]);
    let wav = fixture(&["base_group", "audio.wav"]);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "features",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--out",
            "/nonexistent/x.npy",
        ];
        args.extend_from_slice(extra);
        args.push(wav.to_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--layers", "4"]);
    assert!(err.contains("index 4 out of range"), "{err}");
    #[cfg(not(feature = "cuda"))]
    {
        let err = run(&["--backend", "cuda"]);
        assert!(err.contains("--features cuda"), "{err}");
    }
}

#[test]
fn params_reports_per_block_counts() {
    let out = fadlora(&["params", "--preset", "xls-r-300m"]);
    println!("{out}");
    assert!(out
        .lines()
        .any(|l| l.starts_with("total") && l.ends_with("315,437,696")));
    assert!(out.contains("encoder layer 23"));
    // A fixture checkpoint: HF counts 26,464 parameters without masked_spec_embed.
    let dir = fixture(&["stable_layer", "safetensors_weight_g"]);
    let out = fadlora(&["params", "--checkpoint", dir.to_str().unwrap()]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("total") && l.ends_with("26,464")),
        "{out}"
    );
}
