//! A model written with `save_pretrained` loads back (through the same loader as Hugging Face
//! checkpoints) to the same network: equal outputs in f32, within f16 rounding in f16, with
//! `masked_spec_embed` kept and every other key where Hugging Face puts it.
//! (tools/fixtures/check_hf_export.py checks that transformers loads it too.)

use std::path::Path;

use burn::backend::Flex;
use burn::prelude::*;
use fadlora_model::{ExportDtype, ExportOptions, Wav2Vec2Config, Wav2Vec2Model};

fn options(dtype: ExportDtype) -> ExportOptions {
    ExportOptions {
        dtype,
        mask_time_prob: 0.65,
        mask_time_length: 10,
        do_normalize: true,
    }
}

fn input(device: &Device<Flex>) -> Tensor<Flex, 2> {
    Tensor::from_data(
        TensorData::new(
            (0..2 * 6000)
                .map(|i| ((i as f32) * 0.011).sin() * 0.3)
                .collect(),
            [2, 6000],
        ),
        device,
    )
}

fn round_trip(config: Wav2Vec2Config, dtype: ExportDtype) -> f32 {
    let device = Default::default();
    Flex::seed(&device, 7);
    let model = config.init::<Flex>(&device).with_masked_spec_embed(&device);
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained(dir.path(), &options(dtype)).unwrap();
    // For tools/fixtures/check_hf_export.py: keep one export where it asks.
    if let Ok(keep) = std::env::var("FADLORA_KEEP_EXPORT") {
        if dtype == ExportDtype::F16 {
            model
                .save_pretrained(Path::new(&keep), &options(dtype))
                .unwrap();
        }
    }
    let loaded = Wav2Vec2Model::<Flex>::from_pretrained(dir.path(), &device).unwrap();
    assert_eq!(loaded.config.hidden_size, model.config.hidden_size);

    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let embed = file.tensor("masked_spec_embed").unwrap();
    assert_eq!(embed.shape(), [model.config.hidden_size]);
    for key in [
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        "feature_extractor.conv_layers.0.conv.weight",
        "encoder.layers.0.attention.q_proj.weight",
    ] {
        assert!(file.tensor(key).is_ok(), "missing {key}");
    }
    let q = file
        .tensor("encoder.layers.0.attention.k_proj.weight")
        .unwrap();
    assert_eq!(
        q.shape(),
        [model.config.hidden_size, model.config.hidden_size]
    );
    let ffn = file
        .tensor("encoder.layers.0.feed_forward.intermediate_dense.weight")
        .unwrap();
    assert_eq!(
        ffn.shape(),
        [model.config.intermediate_size, model.config.hidden_size],
        "PyTorch's [out, in]"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "Wav2Vec2Model");
    assert_eq!(config["mask_time_prob"], 0.65);

    let a = model.forward(input(&device), false).last_hidden_state;
    let b = loaded.forward(input(&device), false).last_hidden_state;
    (a - b).abs().max().into_scalar()
}

#[test]
fn f32_export_loads_back_to_the_same_network() {
    for config in [Wav2Vec2Config::micro(), Wav2Vec2Config::tiny()] {
        let diff = round_trip(config, ExportDtype::F32);
        assert_eq!(diff, 0.0);
    }
}

#[test]
fn f16_export_is_half_the_size_and_within_rounding() {
    let diff = round_trip(Wav2Vec2Config::micro(), ExportDtype::F16);
    assert!(diff > 0.0 && diff < 5e-2, "{diff}");
}

#[test]
fn a_model_without_masked_spec_embed_says_so_in_its_config() {
    let device = Default::default();
    let model = Wav2Vec2Config::micro().init::<Flex>(&device);
    let dir = tempfile::tempdir().unwrap();
    model
        .save_pretrained(dir.path(), &options(ExportDtype::F32))
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["mask_time_prob"], 0.0);
    Wav2Vec2Model::<Flex>::from_pretrained(dir.path(), &device).unwrap();
}

/// MMS adapters are transformers' own: they export with `adapter_attn_dim` and load back to the
/// same network. Bottleneck adapters have no transformers form and are refused.
#[test]
fn mms_adapters_export_and_bottleneck_adapters_are_refused() {
    use fadlora_model::{AdapterKind, AdapterLayerConfig};
    let device = Default::default();
    let mms = Wav2Vec2Model::<Flex>::from_pretrained(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/wav2vec2/mms_adapter"
        ),
        &device,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    mms.save_pretrained(dir.path(), &options(ExportDtype::F32))
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["adapter_attn_dim"], 8);
    let loaded = Wav2Vec2Model::<Flex>::from_pretrained(dir.path(), &device).unwrap();
    let a = mms.forward(input(&device), false).last_hidden_state;
    let b = loaded.forward(input(&device), false).last_hidden_state;
    assert_eq!(a.into_data(), b.into_data());

    let bottleneck = Wav2Vec2Config::micro()
        .init::<Flex>(&device)
        .try_with_adapters(
            &AdapterLayerConfig::new(AdapterKind::Bottleneck, 4),
            &device,
        )
        .unwrap();
    let err = bottleneck
        .save_pretrained(
            tempfile::tempdir().unwrap().path(),
            &options(ExportDtype::F32),
        )
        .unwrap_err();
    assert!(err.to_string().contains("bottleneck"), "{err}");
}
