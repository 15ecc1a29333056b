//! Broken checkpoints, config parsing and rejection, presets.

mod common;

use common::*;
use fadlora_model::{count_params, ConfigError, LoadError, Wav2Vec2Config, Wav2Vec2Model};

fn load_broken(name: &str) -> LoadError {
    Wav2Vec2Model::<TB>::from_pretrained(fixture(&["stable_layer", name]), &Default::default())
        .expect_err("a broken checkpoint must not load")
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let err = load_broken("broken_wrong_shape");
    let msg = err.to_string();
    println!("{msg}");
    match &err {
        LoadError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(
                name,
                "encoder.layers.0.feed_forward.intermediate_dense.weight"
            );
            assert_eq!(expected, &[64, 32]);
            assert_eq!(found, &[32, 64]);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    assert!(msg.contains("encoder.layers.0.feed_forward.intermediate_dense.weight"));
    assert!(
        msg.contains("[32, 64]") && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn missing_key_names_the_tensor_and_its_shape() {
    let err = load_broken("broken_missing_key");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, LoadError::MissingTensor { .. }), "{err:?}");
    assert!(
        msg.contains("encoder.layers.1.attention.v_proj.weight"),
        "{msg}"
    );
    assert!(msg.contains("[32, 32]"), "{msg}");
}

#[test]
fn extra_key_names_the_tensor_and_its_shape() {
    let err = load_broken("broken_extra_key");
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, LoadError::UnexpectedTensor { others: 0, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("encoder.layers.0.attention.bogus.weight"),
        "{msg}"
    );
    assert!(msg.contains("[4, 4]"), "{msg}");
}

#[test]
fn directory_without_weights_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture(&["stable_layer", "safetensors_weight_g", "config.json"]),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = Wav2Vec2Model::<TB>::from_pretrained(dir.path(), &Default::default()).unwrap_err();
    assert!(matches!(err, LoadError::NoWeights { .. }), "{err:?}");
}

#[test]
fn fixture_configs_parse_with_their_layouts() {
    let stable = Wav2Vec2Config::from_hf_json_file(fixture(&[
        "stable_layer",
        "safetensors_weight_g",
        "config.json",
    ]))
    .unwrap();
    assert_eq!(stable.hidden_size, 32);
    assert_eq!(stable.num_attention_heads, 4);
    assert_eq!(
        stable.feat_extract_norm().unwrap(),
        fadlora_model::FeatExtractNorm::Layer
    );
    assert!(stable.do_stable_layer_norm && stable.conv_bias);
    assert_eq!(
        (
            stable.num_conv_pos_embeddings,
            stable.num_conv_pos_embedding_groups
        ),
        (16, 4)
    );
    assert_eq!(stable.num_frames(16_000), Some(49));
    assert_eq!(stable.num_frames(19_200), Some(59));
    assert_eq!(stable.num_frames(399), None);
    assert_eq!(stable.receptive_field(), 400);

    let base = Wav2Vec2Config::from_hf_json_file(fixture(&[
        "base_group",
        "bin_prefixed_pretraining",
        "config.json",
    ]))
    .unwrap();
    assert_eq!(
        base.feat_extract_norm().unwrap(),
        fadlora_model::FeatExtractNorm::Group
    );
    assert!(!base.do_stable_layer_norm && !base.conv_bias);
    assert_eq!((base.hidden_size, base.num_hidden_layers), (24, 3));
}

fn reject(patch: &str) -> ConfigError {
    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&[
            "stable_layer",
            "safetensors_weight_g",
            "config.json",
        ]))
        .unwrap(),
    )
    .unwrap();
    let patch: serde_json::Value = serde_json::from_str(patch).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        json[k] = v.clone();
    }
    Wav2Vec2Config::from_hf_json_str(&json.to_string())
        .expect_err(&format!("{patch} must be rejected"))
}

#[test]
fn unsupported_settings_are_rejected_with_the_setting_named() {
    for (patch, needle) in [
        (r#"{"feat_extract_norm": "batch"}"#, "feat_extract_norm"),
        (r#"{"hidden_act": "relu"}"#, "hidden_act"),
        (
            r#"{"feat_extract_activation": "gelu_new"}"#,
            "feat_extract_activation",
        ),
        (r#"{"add_adapter": true}"#, "add_adapter"),
        (r#"{"adapter_attn_dim": 0}"#, "adapter_attn_dim"),
        (r#"{"model_type": "hubert"}"#, "model_type"),
        (r#"{"conv_kernel": [10, 3, 3, 3, 3, 2, 5]}"#, "conv_kernel"),
        (r#"{"conv_stride": [5, 2, 2]}"#, "conv_stride"),
        (
            r#"{"num_feat_extract_layers": 6}"#,
            "num_feat_extract_layers",
        ),
        (r#"{"num_attention_heads": 5}"#, "num_attention_heads"),
        (
            r#"{"num_conv_pos_embedding_groups": 3}"#,
            "num_conv_pos_embedding_groups",
        ),
    ] {
        let err = reject(patch);
        let msg = err.to_string();
        println!("{patch}: {msg}");
        assert!(msg.contains(needle), "{patch}: {msg}");
    }
    assert!(matches!(
        reject(r#"{"hidden_size": "wide"}"#),
        ConfigError::Json { .. }
    ));
}

/// transformers' own `Wav2Vec2Config()`, every key written out
/// (tools/fixtures/make_config_fixtures.py).
fn hf_default_config() -> Wav2Vec2Config {
    let written = std::fs::read_to_string(fixture(&["hf_default_config.json"])).unwrap();
    let mut hf_defaults = Wav2Vec2Config::from_hf_json_str(&written).unwrap();
    // transformers writes this one out because it derives it from `conv_dim`; it is not a
    // default of its own.
    assert_eq!(hf_defaults.num_feat_extract_layers, Some(7));
    hf_defaults.num_feat_extract_layers = None;
    hf_defaults
}

#[test]
fn hugging_face_defaults_fill_missing_keys() {
    let filled_in = Wav2Vec2Config::from_hf_json_str(r#"{"model_type": "wav2vec2"}"#).unwrap();
    assert_eq!(filled_in, hf_default_config());
}

#[test]
fn presets_have_the_published_sizes() {
    let device = Default::default();
    // docs/reference.md §2: Wav2Vec2Model without masked_spec_embed. Counted lazily: nothing is allocated.
    let xls_r = Wav2Vec2Config::xls_r_300m().init::<TB>(&device);
    assert_eq!(count_params(&xls_r), 315_437_696);
    // facebook/wav2vec2-base: 94,371,712 for HF's Wav2Vec2Model, less the 768 of
    // masked_spec_embed.
    let base = Wav2Vec2Config::base().init::<TB>(&device);
    assert_eq!(count_params(&base), 94_371_712 - 768);
    // transformers' defaults are wav2vec2-base's settings.
    assert_eq!(Wav2Vec2Config::base(), hf_default_config());
    for preset in Wav2Vec2Config::PRESETS {
        Wav2Vec2Config::preset(preset)
            .unwrap_or_else(|| panic!("`{preset}` is listed but not known"))
            .validate()
            .unwrap();
    }
}

/// `micro` is the XLS-R-layout model of the fixtures, whose config.json transformers wrote, with
/// two heads instead of four and without dropout or LayerDrop.
#[test]
fn micro_preset_is_the_stable_layer_fixture_with_two_heads_and_no_dropout() {
    let mut fixture = Wav2Vec2Config::from_hf_json_file(fixture(&[
        "stable_layer",
        "safetensors_weight_g",
        "config.json",
    ]))
    .unwrap();
    fixture.num_feat_extract_layers = None;
    fixture.num_attention_heads = 2;
    fixture.hidden_dropout = 0.0;
    fixture.activation_dropout = 0.0;
    fixture.attention_dropout = 0.0;
    fixture.feat_proj_dropout = 0.0;
    fixture.layerdrop = 0.0;
    assert_eq!(Wav2Vec2Config::micro(), fixture);
}
