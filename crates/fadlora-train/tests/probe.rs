//! Frozen-feature probes: the whole wav2vec2 frozen, the head alone trained on one hidden
//! state. (Its own process: the backend RNG is global, and seeding it here would race with the
//! unit tests that check seeded initialisation.)

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::TensorData;
use fadlora_model::Wav2Vec2Config;
use fadlora_train::detector::{param_paths, BaseSource, Detector, Head};
use fadlora_train::DetectorConfig;

mod common;
use common::around_one_adamw_step;

type AB = Autodiff<Flex>;

fn waveforms<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
    let samples: Vec<f32> = (0..2 * 4000)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(samples, [2, 4000]), device)
}

#[test]
fn a_probe_trains_only_the_head_and_pools_the_chosen_hidden_state() {
    let device = Default::default();
    let arch = Wav2Vec2Config::micro();
    let layers = arch.num_hidden_layers;
    let mut logits_by_layer = Vec::new();
    for layer in 0..=layers {
        let config = DetectorConfig::new(arch.clone()).with_probe_layer(Some(layer));
        let trained: Detector<AB> = config
            .build(&BaseSource::Random { seed: 5 }, &device)
            .unwrap();
        let paths = param_paths(&trained);
        assert_eq!(
            paths.trainable.iter().collect::<Vec<_>>(),
            [
                "head.MeanLinear.linear.bias",
                "head.MeanLinear.linear.weight"
            ]
        );
        assert_eq!(paths.counts.trainable, arch.hidden_size * 2 + 2);
        assert!(paths.frozen.iter().all(|p| p.starts_with("wav2vec2.")));
        assert_eq!(
            paths.counts.total,
            fadlora_model::count_params(&trained.wav2vec2) + paths.counts.trainable
        );

        // The same network on a plain backend, against the pooling done by hand.
        let detector: Detector<Flex> = config
            .build(&BaseSource::Random { seed: 5 }, &device)
            .unwrap();
        let logits = detector.forward(waveforms(&device));
        let output = detector.wav2vec2.forward(waveforms(&device), true);
        let hidden = if layer < layers {
            output.hidden_states.unwrap()[layer].clone()
        } else {
            // The pre-LN layout's last hidden state is normed; `hidden_states[layers]` is not.
            output.last_hidden_state
        };
        let pooled = hidden.mean_dim(1).reshape([2, arch.hidden_size]);
        let Head::MeanLinear(head) = &detector.head else {
            unreachable!("the default head")
        };
        let expected = head.linear.forward(pooled);
        let logits = logits.into_data();
        logits.assert_approx_eq::<f32>(&expected.into_data(), Default::default());
        logits_by_layer.push(logits.to_vec::<f32>().unwrap());
    }
    // Each layer is a different feature, or the checks above would prove little; and the
    // final output is not the un-normed last entry of `hidden_states`.
    for a in 0..=layers {
        for b in a + 1..=layers {
            assert_ne!(logits_by_layer[a], logits_by_layer[b], "layers {a} and {b}");
        }
    }
}

#[test]
fn an_optimizer_step_on_a_probe_moves_the_head_and_not_a_bit_of_the_backbone() {
    let device = Default::default();
    let config = DetectorConfig::new(Wav2Vec2Config::micro()).with_probe_layer(Some(1));
    let model: Detector<AB> = config
        .build(&BaseSource::Random { seed: 5 }, &device)
        .unwrap();
    let paths = param_paths(&model);
    let (before, after) = around_one_adamw_step(model);
    assert!(paths.frozen.len() > 10, "{:?}", paths.frozen);
    for path in &paths.frozen {
        assert_eq!(before[path], after[path], "frozen {path} changed");
    }
    for path in &paths.trainable {
        assert_ne!(before[path], after[path], "{path} did not change");
    }
}
