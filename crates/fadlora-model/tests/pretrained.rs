//! The pretrained front end shipped in `pretrained/tiny_hubert/` loads and computes what
//! transformers computes with it: every hidden state within 1e-4 of the reference that
//! tools/fixtures/check_hf_export.py wrote (transformers 5.x, the input values it used).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use fadlora_model::Wav2Vec2Model;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pretrained/tiny_hubert")
}

#[test]
fn the_shipped_checkpoint_matches_transformers() {
    let device = Default::default();
    let model = Wav2Vec2Model::<Flex>::from_pretrained(shipped(), &device).unwrap();
    let bytes = std::fs::read(shipped().join("reference.safetensors")).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let view = reference.tensor(name).unwrap();
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (view.shape().to_vec(), values)
    };
    let (shape, input) = tensor("input_values");
    let input = Tensor::<Flex, 2>::from_data(TensorData::new(input, [shape[0], shape[1]]), &device);
    let out = model.forward(input, true);
    let states = out.hidden_states.unwrap();
    assert_eq!(states.len(), model.config.num_hidden_layers + 1);
    for (i, state) in states.into_iter().enumerate() {
        let (shape, expected) = tensor(&format!("hidden_states.{i}"));
        assert_eq!(state.dims().to_vec(), shape, "hidden state {i}");
        let ours: Vec<f32> = state.into_data().to_vec().unwrap();
        let worst = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "hidden state {i}: max difference {worst}");
    }
}
