//! fairseq wav2vec2 checkpoints (fixtures/wav2vec2/fairseq, written by
//! tools/fixtures/make_fairseq_fixtures.py from the transformers fixtures' weights): the
//! settings give the Hugging Face config, and the outputs equal transformers' reference.

mod common;

use std::path::PathBuf;

use common::*;
use fadlora_model::fairseq::{fairseq_config, FairseqCheckpoint};
use fadlora_model::{FairseqError, LoadError, Wav2Vec2Config, Wav2Vec2Model};

const TOL: f32 = 1e-4;

fn fairseq_fixture(name: &str) -> PathBuf {
    fixture(&["fairseq", name])
}

fn hf_config(model: &str) -> Wav2Vec2Config {
    Wav2Vec2Config::from_hf_json_file(fixture(&[model, "safetensors_weight_g", "config.json"]))
        .unwrap()
}

fn check_outputs(file: &str, model_name: &str) {
    let device = Default::default();
    let model = Wav2Vec2Model::<TB>::from_fairseq(fairseq_fixture(file), &device)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let reference = read_reference(&fixture(&[model_name, "reference.safetensors"]));
    let input = &reference["input_values"];
    let out = model.forward(tensor(input, [input.shape[0], input.shape[1]]), true);
    assert!(out.hidden_states.is_some(), "hidden states requested");
    let report = output_diffs(&out, &reference);
    for (name, diff) in report {
        println!("{file} {name}: max |diff| = {diff:.3e}");
        assert!(diff <= TOL, "{file} {name}: max |diff| {diff} > {TOL}");
    }
}

#[test]
fn omegaconf_pretraining_checkpoint_matches_transformers() {
    check_outputs("stable_layer_omegaconf.pt", "stable_layer");
}

#[test]
fn namespace_checkpoint_with_group_norm_and_post_ln_matches_transformers() {
    check_outputs("base_group_args.pt", "base_group");
}

#[test]
fn finetuned_checkpoint_loads_the_nested_network() {
    check_outputs("stable_layer_finetuned_dict.pt", "stable_layer");
}

#[test]
fn settings_give_the_hugging_face_config() {
    for (file, model) in [
        ("stable_layer_omegaconf.pt", "stable_layer"),
        ("base_group_args.pt", "base_group"),
        ("stable_layer_finetuned_dict.pt", "stable_layer"),
    ] {
        let config = fairseq_config(fairseq_fixture(file)).unwrap();
        assert_eq!(config, hf_config(model), "{file}");
    }
}

#[test]
fn pretraining_and_ctc_extras_are_skipped() {
    let omegaconf = FairseqCheckpoint::open(fairseq_fixture("stable_layer_omegaconf.pt")).unwrap();
    let mut skipped = omegaconf.skipped().to_vec();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "final_proj.bias",
            "final_proj.weight",
            "mask_emb",
            "project_q.bias",
            "project_q.weight",
            "quantizer.vars",
            "quantizer.weight_proj.bias",
            "quantizer.weight_proj.weight",
        ]
    );
    let finetuned =
        FairseqCheckpoint::open(fairseq_fixture("stable_layer_finetuned_dict.pt")).unwrap();
    let mut skipped = finetuned.skipped().to_vec();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "w2v_encoder.proj.bias",
            "w2v_encoder.proj.weight",
            "w2v_encoder.w2v_model.mask_emb",
        ]
    );
}

#[test]
fn the_pretrained_path_dispatch_takes_a_pt_file() {
    let path = fairseq_fixture("base_group_args.pt");
    let config = fadlora_model::load::checkpoint_config(&path).unwrap();
    assert_eq!(config, hf_config("base_group"));
    let device = Default::default();
    Wav2Vec2Model::<TB>::from_checkpoint_path(config, &path, &device).unwrap();
    Wav2Vec2Model::<TB>::from_pretrained(&path, &device).unwrap();
}

fn load_err(name: &str) -> FairseqError {
    match Wav2Vec2Model::<TB>::from_fairseq(fairseq_fixture(name), &Default::default()) {
        Ok(_) => panic!("{name} must not load"),
        Err(e) => e,
    }
}

#[test]
fn a_pt_without_model_is_not_a_fairseq_checkpoint() {
    let err = load_err("broken_no_model.pt");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, FairseqError::NotFairseq { .. }), "{err:?}");
    assert!(
        msg.contains("broken_no_model.pt") && msg.contains("`model`"),
        "{msg}"
    );
}

#[test]
fn an_unsupported_activation_is_named() {
    let err = load_err("broken_relu.pt");
    let msg = err.to_string();
    println!("{msg}");
    match &err {
        FairseqError::Unsupported { field, value, .. } => {
            assert_eq!(field, "activation_fn");
            assert_eq!(value, "\"relu\"");
        }
        other => panic!("expected an unsupported setting, got {other:?}"),
    }
    assert!(msg.contains("broken_relu.pt"), "{msg}");
}

#[test]
fn a_wrong_shape_names_the_fairseq_tensor() {
    let err = load_err("broken_wrong_shape.pt");
    let msg = err.to_string();
    println!("{msg}");
    match err.load_error() {
        Some(LoadError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "feature_extractor.conv_layers.0.0.weight");
            assert_eq!(expected, &[16, 1, 10]);
            assert_eq!(found, &[10, 1, 16]);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    assert!(msg.contains("broken_wrong_shape.pt"), "{msg}");
}

#[test]
fn an_unknown_tensor_is_named() {
    let err = load_err("broken_unknown_tensor.pt");
    let msg = err.to_string();
    println!("{msg}");
    match err.load_error() {
        Some(LoadError::UnexpectedTensor {
            name,
            shape,
            others,
        }) => {
            assert_eq!(name, "encoder.layers.0.self_attn.bogus.weight");
            assert_eq!(shape, &[4, 4]);
            assert_eq!(*others, 0);
        }
        other => panic!("expected an unexpected tensor, got {other:?}"),
    }
    assert!(msg.contains("broken_unknown_tensor.pt"), "{msg}");
}

#[test]
fn a_missing_tensor_is_named_by_its_fairseq_name() {
    // The wrong-shape fixture holds only the first convolution's weight: with a config that
    // accepts its shape, loading stops at the first tensor it lacks (that convolution's bias).
    let checkpoint = FairseqCheckpoint::open(fairseq_fixture("broken_wrong_shape.pt")).unwrap();
    let mut config = checkpoint.config().clone();
    config.conv_dim[0] = 10; // accept the transposed first weight ([10, 1, 16])
    config.conv_kernel[0] = 16;
    config.conv_stride[0] = 8;
    let err = match checkpoint.into_model::<TB>(config, &Default::default()) {
        Ok(_) => panic!("an incomplete checkpoint must not load"),
        Err(e) => e,
    };
    println!("{err}");
    match err.load_error() {
        Some(LoadError::MissingTensor { name, .. }) => {
            assert_eq!(name, "feature_extractor.conv_layers.0.0.bias");
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_zip_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.pt");
    std::fs::write(&path, b"\x80\x02\x8a\x0alegacy").unwrap();
    let err = match Wav2Vec2Model::<TB>::from_fairseq(&path, &Default::default()) {
        Ok(_) => panic!("must not load"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, FairseqError::Read { .. }), "{err:?}");
    assert!(msg.contains("legacy.pt") && msg.contains("zip"), "{msg}");
}

#[test]
fn a_missing_pt_file_is_reported_as_a_fairseq_checkpoint() {
    let path = fairseq_fixture("no_such_file.pt");
    let err = fadlora_model::load::checkpoint_config(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, LoadError::Fairseq(e) if matches!(**e, FairseqError::Read { .. })),
        "{err:?}"
    );
    assert!(msg.contains("no_such_file.pt"), "{msg}");
}
