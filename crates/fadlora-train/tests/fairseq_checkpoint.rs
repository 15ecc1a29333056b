//! A run's `model.checkpoint` may name a fairseq `.pt` file: the architecture comes from its
//! settings and the detector's front end from its weights, equal to loading it directly.

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
