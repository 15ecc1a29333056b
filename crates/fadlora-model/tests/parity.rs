//! Every output of the burn model against Hugging Face transformers' own, for both layouts and
//! every checkpoint spelling (fixtures/wav2vec2, generated with transformers 5.24).

mod common;

use common::*;
use fadlora_model::{count_params, Wav2Vec2Model};

const TOL: f32 = 1e-4;

fn check_batch_reference(model_name: &str, variant: &str) {
    let device = Default::default();
    let model = Wav2Vec2Model::<TB>::from_pretrained(fixture(&[model_name, variant]), &device)
        .unwrap_or_else(|e| panic!("{model_name}/{variant}: {e}"));
    let reference = read_reference(&fixture(&[model_name, "reference.safetensors"]));
    let input = &reference["input_values"];
    let out = model.forward(tensor(input, [input.shape[0], input.shape[1]]), true);
    let states = out.hidden_states.as_ref().expect("hidden states requested");
    assert_eq!(states.len(), model.config.num_hidden_layers + 1);
    let report = output_diffs(&out, &reference);
    for (name, diff) in &report {
        println!("{model_name}/{variant} {name}: max |diff| = {diff:.3e}");
    }
    for (name, diff) in report {
        assert!(
            diff <= TOL,
            "{model_name}/{variant} {name}: max |diff| {diff} > {TOL}"
        );
    }
}

#[test]
fn stable_layer_matches_reference_for_every_checkpoint_spelling() {
    for variant in VARIANTS {
        check_batch_reference("stable_layer", variant);
    }
}

#[test]
fn base_group_matches_reference_for_every_checkpoint_spelling() {
    for variant in VARIANTS {
        check_batch_reference("base_group", variant);
    }
}

#[test]
fn features_of_the_wav_match_reference() {
    let device = Default::default();
    for model_name in MODELS {
        let model = Wav2Vec2Model::<TB>::from_pretrained(
            fixture(&[model_name, "safetensors_weight_g"]),
            &device,
        )
        .unwrap();
        let reference = read_reference(&fixture(&[model_name, "features_reference.safetensors"]));
        let input = &reference["input_values"];
        let out = model.forward(tensor(input, [1, input.shape[0]]), true);
        let frames = out.last_hidden_state.dims()[1];
        let hidden = model.config.hidden_size;
        let mut outputs = vec![("last_hidden_state".to_string(), out.last_hidden_state)];
        for (i, s) in out.hidden_states.unwrap().into_iter().enumerate() {
            outputs.push((format!("hidden_states.{i}"), s));
        }
        for (name, t) in outputs {
            let diff = max_abs_diff(&t.reshape([frames, hidden]), &reference[&name], &name);
            println!("{model_name} features {name}: max |diff| = {diff:.3e}");
            assert!(diff <= TOL, "{model_name} {name}: {diff}");
        }
    }
}

#[test]
fn parameter_counts_equal_hugging_face() {
    // fixture_info.json: params_without_masked_spec_embed.
    let device = Default::default();
    for (model_name, expected) in [("stable_layer", 26_464), ("base_group", 20_367)] {
        let model = Wav2Vec2Model::<TB>::from_pretrained(
            fixture(&[model_name, "safetensors_weight_g"]),
            &device,
        )
        .unwrap();
        assert_eq!(count_params(&model), expected, "{model_name}");
        let random = model.config.init::<TB>(&device);
        assert_eq!(
            count_params(&random),
            expected,
            "{model_name} (random init)"
        );
    }
}

#[test]
fn eval_mode_is_deterministic() {
    let device = Default::default();
    let model = Wav2Vec2Model::<TB>::from_pretrained(
        fixture(&["stable_layer", "safetensors_weight_g"]),
        &device,
    )
    .unwrap();
    let reference = read_reference(&fixture(&["stable_layer", "reference.safetensors"]));
    let input = &reference["input_values"];
    let run = || {
        let out = model.forward(tensor(input, [2, input.shape[1]]), true);
        let mut all = vec![values(&out.last_hidden_state).1];
        all.extend(out.hidden_states.unwrap().iter().map(|s| values(s).1));
        all
    };
    // Bit-identical: dropout (p = 0.1 in this config) and LayerDrop must be off.
    assert_eq!(run(), run());
}

#[test]
fn a_cropped_batch_gives_each_item_its_solo_output() {
    let device = Default::default();
    for model_name in MODELS {
        let model = Wav2Vec2Model::<TB>::from_pretrained(
            fixture(&[model_name, "safetensors_weight_g"]),
            &device,
        )
        .unwrap();
        let batch_ref = read_reference(&fixture(&[model_name, "reference.safetensors"]));
        let wav_ref = read_reference(&fixture(&[model_name, "features_reference.safetensors"]));
        // Two different waveforms of different lengths (16,000 and 19,200 samples), cropped to
        // a length that is not a multiple of any stride product.
        let a = &batch_ref["input_values"].data[..16_000];
        let b = &wav_ref["input_values"].data[..];
        let len = 12_345;
        let crop = |x: &[f32]| x[..len].to_vec();
        let mut both = crop(a);
        both.extend(crop(b));
        let batch = model.forward(
            tensor(
                &Array {
                    shape: vec![2, len],
                    data: both,
                },
                [2, len],
            ),
            true,
        );
        for (i, x) in [a, b].into_iter().enumerate() {
            let solo = model.forward(
                tensor(
                    &Array {
                        shape: vec![1, len],
                        data: crop(x),
                    },
                    [1, len],
                ),
                true,
            );
            let mut pairs = vec![(batch.last_hidden_state.clone(), solo.last_hidden_state)];
            pairs.extend(
                batch
                    .hidden_states
                    .clone()
                    .unwrap()
                    .into_iter()
                    .zip(solo.hidden_states.unwrap()),
            );
            for (from_batch, alone) in pairs {
                let [_, frames, hidden] = from_batch.dims();
                let item = from_batch.slice(burn::prelude::s![i..i + 1, .., ..]);
                let (_, want) = values(&alone);
                let diff = max_abs_diff(
                    &item,
                    &Array {
                        shape: vec![1, frames, hidden],
                        data: want,
                    },
                    "item",
                );
                assert!(diff <= 1e-5, "{model_name} item {i}: {diff}");
            }
        }
    }
}

/// The fixture's tensors as snapshots, for building checkpoints the fixtures do not ship.
fn snapshots(path: &std::path::Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    read_reference(path)
        .into_iter()
        .map(|(k, a)| (k, (a.shape, a.data)))
        .collect()
}

fn source_from(
    tensors: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    dtype: burn::tensor::DType,
) -> fadlora_model::TensorSource {
    use burn::module::ParamId;
    use burn::prelude::TensorData;
    let map = tensors
        .into_iter()
        .map(|(name, (shape, data))| {
            let data = TensorData::new(data, shape).convert_dtype(dtype);
            let path = name.split('.').map(str::to_string).collect();
            (
                name,
                burn_store::TensorSnapshot::from_data(data, path, vec![], ParamId::new()),
            )
        })
        .collect();
    fadlora_model::TensorSource::from_snapshots("in-memory".into(), map)
}

#[test]
fn a_plain_folded_positional_weight_and_half_precision_weights_load() {
    let device = Default::default();
    let dir = fixture(&["stable_layer", "safetensors_weight_g"]);
    let config = fadlora_model::Wav2Vec2Config::from_hf_json_file(dir.join("config.json")).unwrap();
    let mut tensors = snapshots(&dir.join("model.safetensors"));
    // Fold weight norm by hand (as `remove_weight_norm` would) and store a plain `weight`.
    let (_, g) = tensors
        .remove("encoder.pos_conv_embed.conv.weight_g")
        .unwrap();
    let (v_shape, v) = tensors
        .remove("encoder.pos_conv_embed.conv.weight_v")
        .unwrap();
    let k = v_shape[2];
    let mut w = v.clone();
    for (j, &gj) in g.iter().enumerate() {
        let norm = v
            .iter()
            .skip(j)
            .step_by(k)
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        for (wi, vi) in w.iter_mut().zip(&v).skip(j).step_by(k) {
            *wi = (f64::from(gj) * f64::from(*vi) / norm) as f32;
        }
    }
    tensors.insert("encoder.pos_conv_embed.conv.weight".into(), (v_shape, w));

    let reference = read_reference(&fixture(&["stable_layer", "reference.safetensors"]));
    let input = &reference["input_values"];
    for (dtype, tol) in [
        (burn::tensor::DType::F32, TOL),
        (burn::tensor::DType::F16, 0.05),
    ] {
        let mut src = source_from(tensors.clone(), dtype);
        let model = Wav2Vec2Model::<TB>::from_source(config.clone(), &mut src, &device).unwrap();
        let out = model.forward(tensor(input, [2, input.shape[1]]), false);
        let diff = max_abs_diff(
            &out.last_hidden_state,
            &reference["last_hidden_state"],
            "last",
        );
        println!("plain pos-conv weight, {dtype:?} weights: max |diff| = {diff:.3e}");
        assert!(diff <= tol, "{dtype:?}: {diff}");
    }
}

#[test]
fn dropout_acts_only_when_training() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    let device = Default::default();
    let dir = fixture(&["stable_layer", "safetensors_weight_g"]);
    let reference = read_reference(&fixture(&["stable_layer", "reference.safetensors"]));
    let input = &reference["input_values"];
    let training = Wav2Vec2Model::<Autodiff<TB>>::from_pretrained(&dir, &device).unwrap();
    let x = burn::prelude::Tensor::<Autodiff<TB>, 2>::from_data(
        burn::prelude::TensorData::new(input.data.clone(), [2, input.shape[1]]),
        &device,
    );
    let a = training
        .forward(x.clone(), false)
        .last_hidden_state
        .into_data();
    let b = training.forward(x, false).last_hidden_state.into_data();
    assert_ne!(a, b, "dropout p = 0.1 must change training outputs");
    // The same weights without autodiff: Hugging Face's eval mode.
    let eval = training.valid();
    let out = eval.forward(tensor(input, [2, input.shape[1]]), false);
    let diff = max_abs_diff(
        &out.last_hidden_state,
        &reference["last_hidden_state"],
        "last",
    );
    assert!(diff <= TOL, "{diff}");
}

/// Hugging Face's MMS attention adapters (`adapter_attn_dim`): a pre-LN model with random
/// adapters in every layer loads them with the rest and reproduces every output of
/// transformers (fixtures/wav2vec2/mms_adapter, tools/fixtures/make_mms_adapter_fixtures.py).
#[test]
fn mms_attention_adapters_load_and_match_reference() {
    check_batch_reference("mms_adapter", "");
    let device = Default::default();
    let model = Wav2Vec2Model::<TB>::from_pretrained(fixture(&["mms_adapter"]), &device).unwrap();
    assert_eq!(model.adapter_layers().len(), 2);
    // fixture_info.json: 27,728 parameters, 32 of them masked_spec_embed; 616 per adapter.
    assert_eq!(count_params(&model), 27_728 - 32);
    let per_layer = fadlora_model::AdapterLayerConfig::new(fadlora_model::AdapterKind::Mms, 8)
        .params_per_layer(32);
    assert_eq!(per_layer, 616);
    assert_eq!(count_params(&model), 26_464 + 2 * per_layer);
}
