//! Every method in the trainer: one optimizer step on the CPU backend moves its parameters and
//! the head only.
//! (Its own process: the backend RNG is global, and seeding it here would race with the unit
//! tests that check seeded initialisation.)

use burn::backend::{Autodiff, Flex};

use fadlora_model::Wav2Vec2Config;
use fadlora_run::LoraTarget;
use fadlora_train::config::LoraSection;
use fadlora_train::detector::{param_paths, BaseSource, Detector, ParamPaths};
use fadlora_train::DetectorConfig;

mod common;
use common::around_one_adamw_step;

/// One AdamW step leaves every frozen tensor bit-identical and moves every trainable one. A
/// BatchNorm's running statistics change in any training forward pass and are no parameters.
fn moves_only_what_trains(model: Detector<AB>, paths: &ParamPaths) {
    let (before, after) = around_one_adamw_step(model);
    for path in paths.frozen.iter().filter(|p| !p.contains("running_")) {
        assert_eq!(before[path], after[path], "frozen {path} changed");
    }
    for path in &paths.trainable {
        assert_ne!(before[path], after[path], "{path} did not change");
    }
}

type AB = Autodiff<Flex>;

#[test]
fn one_lora_step_changes_only_adapters_and_head() {
    let device = Default::default();
    let lora = LoraSection {
        rank: 4,
        alpha: Some(8.0),
        dropout: 0.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
        layers: None,
        use_rslora: false,
        use_dora: false,
        moe: None,
    };
    let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_lora(Some(lora));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();

    let paths = param_paths(&model);
    // 2 layers x (q, v) x r (32 + 32), plus the head's Linear(32, 2).
    assert_eq!(paths.counts.trainable, 2 * 2 * 4 * 64 + 32 * 2 + 2);
    assert_eq!(paths.trainable.len(), 2 * 2 * 2 + 2);
    for path in &paths.trainable {
        assert!(
            path.contains(".lora.") || path.starts_with("head."),
            "{path} trains"
        );
    }
    assert!(paths
        .frozen
        .contains("wav2vec2.encoder.layers.0.attention.q_proj.weight"));

    let (before, after) = around_one_adamw_step(model);

    let changed: Vec<&String> = before
        .keys()
        .filter(|path| before[*path] != after[*path])
        .collect();
    for path in &paths.frozen {
        assert_eq!(before[path], after[path], "frozen {path} changed");
    }
    for path in &changed {
        assert!(paths.trainable.contains(*path), "{path} changed");
    }
    // Every B (non-zero gradient) and the head moved; A has a zero gradient in the first
    // step (B = 0) and moves only by weight decay.
    for path in &paths.trainable {
        assert!(changed.contains(&path), "{path} did not change");
    }
    println!(
        "{} tensors changed, {} frozen tensors bit-identical",
        changed.len(),
        paths.frozen.len()
    );
}

#[test]
fn one_dora_step_changes_only_adapters_magnitudes_and_head() {
    let device = Default::default();
    let lora = LoraSection {
        rank: 4,
        alpha: Some(8.0),
        dropout: 0.0,
        targets: vec![LoraTarget::Q, LoraTarget::FfnIn],
        layers: None,
        use_rslora: false,
        use_dora: true,
        moe: None,
    };
    let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_lora(Some(lora));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();

    let paths = param_paths(&model);
    // micro: width 32, FFN 64. Per layer: q is A 32x4 + B 4x32 + m 32, ffn_in is A 32x4 +
    // B 4x64 + m 64; two layers; plus the head's Linear(32, 2).
    let per_layer = (4 * 32 + 4 * 32 + 32) + (4 * 32 + 4 * 64 + 64);
    assert_eq!(paths.counts.trainable, 2 * per_layer + 32 * 2 + 2);
    assert_eq!(paths.trainable.len(), 2 * 2 * 3 + 2);
    assert!(paths
        .trainable
        .contains("wav2vec2.encoder.layers.1.feed_forward.intermediate_dense.lora.magnitude"));

    moves_only_what_trains(model, &paths);
}

#[test]
fn one_moe_lora_step_changes_only_experts_routers_and_head() {
    let device = Default::default();
    let lora = LoraSection {
        rank: 2,
        alpha: Some(4.0),
        dropout: 0.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
        layers: None,
        use_rslora: false,
        use_dora: false,
        moe: Some(fadlora_run::MoeSection {
            experts: 3,
            ..Default::default()
        }),
    };
    let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_lora(Some(lora));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let paths = param_paths(&model);
    // micro: width 32, 2 layers; q and v: 3 experts' A 32x2 and B 2x32, a 32x3 router.
    assert_eq!(
        paths.counts.trainable,
        2 * 2 * (3 * (32 * 2 + 2 * 32) + 32 * 3) + 32 * 2 + 2
    );
    assert!(paths
        .trainable
        .contains("wav2vec2.encoder.layers.1.attention.v_proj.moe.router"));
    moves_only_what_trains(model, &paths);
}

#[test]
fn one_ia3_step_changes_only_the_vectors_and_head() {
    let device = Default::default();
    let config = DetectorConfig::new(Wav2Vec2Config::micro())
        .with_ia3(Some(fadlora_run::Ia3Section::default()));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let paths = param_paths(&model);
    // micro: width 32, FFN 64, two layers: k and v outputs (32 each), output_dense's input (64).
    assert_eq!(paths.counts.trainable, 2 * (32 + 32 + 64) + 32 * 2 + 2);
    moves_only_what_trains(model, &paths);
}

/// The SLS head on a frozen front end (the sweep's `sls`): the head alone moves.
#[test]
fn one_frozen_sls_step_changes_only_the_head() {
    let device = Default::default();
    // around_one_adamw_step's 0.5 s inputs give micro 24 frames.
    let config = DetectorConfig::new(Wav2Vec2Config::micro())
        .with_frozen(Some(fadlora_run::FrozenSection {}))
        .with_head(fadlora_run::HeadKind::Sls)
        .with_head_frames(Some(24));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let paths = param_paths(&model);
    assert!(paths.trainable.iter().all(|p| p.starts_with("head.")));
    assert!(paths.counts.trainable > 0);
    moves_only_what_trains(model, &paths);
}

#[test]
fn one_adapter_step_changes_only_adapter_layers_and_head() {
    let device = Default::default();
    for kind in fadlora_run::AdapterKind::ALL {
        let adapter = fadlora_run::AdapterSection { kind, size: 4 };
        let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_adapter(Some(adapter));
        let model: Detector<AB> = config
            .build(&BaseSource::Random { seed: 5 }, &device)
            .unwrap();
        let paths = param_paths(&model);
        // micro: width 32, two layers. linear_1 32x4 + 4, linear_2 4x32 + 32, and for MMS a
        // LayerNorm (2 x 32); plus the head's Linear(32, 2).
        let norm = if kind == fadlora_run::AdapterKind::Mms {
            64
        } else {
            0
        };
        assert_eq!(
            paths.counts.trainable,
            2 * (norm + 32 * 4 + 4 + 4 * 32 + 32) + 32 * 2 + 2,
            "{kind}"
        );
        for path in &paths.trainable {
            assert!(
                path.contains(".adapter_layer.") || path.starts_with("head."),
                "{path} trains"
            );
        }
        let (before, after) = around_one_adamw_step(model);
        for path in &paths.frozen {
            assert_eq!(before[path], after[path], "frozen {path} changed");
        }
        // Below linear_2 (zero at init) the gradient is zero in the first step, as for LoRA's
        // A: weights there move only by weight decay and zero biases not at all. linear_2 and
        // the head move.
        for path in &paths.trainable {
            let moved = before[path] != after[path];
            let zero_bias = path.ends_with("linear_1.bias") || path.ends_with("norm.bias");
            assert_eq!(moved, !zero_bias, "{kind}: {path}");
        }
    }
}

/// Partial fine-tuning: the top (or bottom) encoder layer, with or without the feature
/// projection, trains whole; one step moves exactly those tensors and the head.
#[test]
fn one_partial_step_changes_only_the_chosen_layers_and_head() {
    let device = Default::default();
    for (layers, feature_projection, kept) in [
        (fadlora_run::PartialLayers::Top, true, "layers.1."),
        (fadlora_run::PartialLayers::Bottom, false, "layers.0."),
    ] {
        let partial = fadlora_run::PartialSection {
            layers,
            count: 1,
            feature_projection,
        };
        let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_partial(Some(partial));
        let model: Detector<AB> = config
            .build(&BaseSource::Random { seed: 5 }, &device)
            .unwrap();
        let paths = param_paths(&model);
        // micro: width 32, FFN 64. One layer: q/k/v/o 4 x (32x32 + 32), FFN 32x64 + 64 and
        // 64x32 + 32, two LayerNorms 2 x 64 = 8,544. The feature projection: LayerNorm 2 x 16
        // and Linear 16x32 + 32 = 576. The head's Linear(32, 2): 66.
        let projection = if feature_projection { 576 } else { 0 };
        assert_eq!(paths.counts.trainable, 8544 + projection + 66, "{layers}");
        let layer = format!("wav2vec2.encoder.{kept}");
        for path in &paths.trainable {
            assert!(
                path.starts_with(&layer)
                    || path.starts_with("head.")
                    || (feature_projection && path.starts_with("wav2vec2.feature_projection.")),
                "{layers}: {path} trains"
            );
        }
        // 16 tensors: weight and bias of q, k, v, o, the two FFN Linears and the two LayerNorms.
        let layer_tensors = paths
            .trainable
            .iter()
            .filter(|p| p.starts_with(&layer))
            .count();
        assert_eq!(layer_tensors, 16, "{layers}");
        let (before, after) = around_one_adamw_step(model);
        for path in &paths.frozen {
            assert_eq!(before[path], after[path], "{layers}: frozen {path} changed");
        }
        // The key bias starts at zero and its gradient is zero in exact arithmetic (a softmax
        // does not see a shift common to all of a query's scores): it may stay. The rest moves.
        for path in paths
            .trainable
            .iter()
            .filter(|p| !p.ends_with("k_proj.bias"))
        {
            assert_ne!(before[path], after[path], "{layers}: {path} did not change");
        }
    }
}

/// A layer sum: the front end frozen, one logit per hidden state (micro: 2 layers, so 3) and
/// the head train; at init the weights are equal, so the head sees the plain mean of the
/// states (the last being the final output); one step moves exactly the logits and the head.
#[test]
fn one_layer_sum_step_changes_only_the_weights_and_head() {
    use burn::prelude::*;
    let device = Default::default();
    let config = DetectorConfig::new(Wav2Vec2Config::micro())
        .with_layer_sum(Some(fadlora_run::LayerSumSection {}));
    let plain: Detector<Flex> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let samples: Vec<f32> = (0..2 * 4000)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x =
        Tensor::<Flex, 2>::from_data(burn::tensor::TensorData::new(samples, [2, 4000]), &device);
    let weights = plain.layer_weights.as_ref().unwrap().val();
    assert_eq!(weights.dims(), [3]);
    let summed = plain.layer_sum(x.clone(), weights);
    let output = plain.wav2vec2.forward(x, true);
    let mut states = output.hidden_states.unwrap();
    assert_eq!(states.len(), 3);
    states[2] = output.last_hidden_state;
    let mean = (states[0].clone() + states[1].clone() + states[2].clone()) / 3.0;
    summed
        .to_data()
        .assert_approx_eq::<f32>(&mean.to_data(), burn::tensor::Tolerance::absolute(1e-5));

    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let paths = param_paths(&model);
    // 3 logits (2 layers + the encoder's input) and the head's Linear(32, 2).
    assert_eq!(paths.counts.trainable, 3 + 32 * 2 + 2);
    assert_eq!(
        paths
            .trainable
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "head.MeanLinear.linear.bias",
            "head.MeanLinear.linear.weight",
            "layer_weights"
        ]
    );
    moves_only_what_trains(model, &paths);
}

/// A run's `model.checkpoint` may name a fairseq `.pt` file: the architecture comes from its
/// settings and the detector's front end from its weights, equal to loading it directly.
mod fairseq_checkpoint {
    use std::path::PathBuf;

    use burn::backend::Flex;
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use fadlora_model::Wav2Vec2Model;
    use fadlora_run::config::ModelSection;
    use fadlora_train::config::wav2vec2_config;
    use fadlora_train::detector::{BaseSource, Detector};
    use fadlora_train::DetectorConfig;

    fn fixture() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/wav2vec2/fairseq/stable_layer_omegaconf.pt"
        ))
    }

    #[test]
    fn a_fairseq_pt_is_a_pretrained_source() {
        let path = fixture();
        let section = ModelSection {
            checkpoint: Some(path.clone()),
            ..Default::default()
        };
        let arch = wav2vec2_config(&section).unwrap();
        assert_eq!(arch, fadlora_model::fairseq::fairseq_config(&path).unwrap());

        let device = Default::default();
        let detector: Detector<Flex> = DetectorConfig::new(arch)
            .build(&BaseSource::Pretrained { dir: path.clone() }, &device)
            .unwrap();
        let direct = Wav2Vec2Model::<Flex>::from_fairseq(&path, &device).unwrap();
        let samples: Vec<f32> = (0..2 * 1600)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(samples, [2, 1600]), &device);
        let a = detector
            .wav2vec2
            .forward(x.clone(), false)
            .last_hidden_state;
        let b = direct.forward(x, false).last_hidden_state;
        assert_eq!(a.to_data(), b.to_data());
    }
}
