//! Shared helpers: fixture paths and a reader for the reference safetensors.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;

pub type TB = Flex;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wav2vec2");

pub const MODELS: [&str; 2] = ["stable_layer", "base_group"];
pub const VARIANTS: [&str; 4] = [
    "safetensors_weight_g",
    "safetensors_parametrizations",
    "bin_weight_g",
    "bin_prefixed_pretraining",
];

pub fn fixture(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from(FIXTURES);
    for part in parts {
        p.push(part);
    }
    p
}

/// A named f32 array from a reference file.
#[derive(Clone, Debug)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read_reference(path: &Path) -> BTreeMap<String, Array> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (
                name,
                Array {
                    shape: view.shape().to_vec(),
                    data,
                },
            )
        })
        .collect()
}

pub fn tensor<const D: usize>(a: &Array, shape: [usize; D]) -> Tensor<TB, D> {
    Tensor::from_data(TensorData::new(a.data.clone(), shape), &Default::default())
}

pub fn values<const D: usize>(t: &Tensor<TB, D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.to_data();
    (data.shape.to_vec(), data.to_vec::<f32>().unwrap())
}

/// Max |a - b| after checking that the shapes agree.
pub fn max_abs_diff<const D: usize>(got: &Tensor<TB, D>, want: &Array, name: &str) -> f32 {
    let (shape, got) = values(got);
    assert_eq!(shape, want.shape, "shape of {name}");
    got.iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// Max |diff| of every output of `forward(.., true)` against transformers' reference, by name:
/// `extract_features`, each `hidden_states.{i}`, then `last_hidden_state`.
pub fn output_diffs(
    out: &fadlora_model::Wav2Vec2Output<TB>,
    reference: &BTreeMap<String, Array>,
) -> Vec<(String, f32)> {
    let mut report = vec![(
        "extract_features".to_string(),
        max_abs_diff(
            &out.extract_features,
            &reference["extract_features"],
            "extract_features",
        ),
    )];
    for (i, state) in out.hidden_states.iter().flatten().enumerate() {
        let name = format!("hidden_states.{i}");
        report.push((name.clone(), max_abs_diff(state, &reference[&name], &name)));
    }
    report.push((
        "last_hidden_state".into(),
        max_abs_diff(
            &out.last_hidden_state,
            &reference["last_hidden_state"],
            "last",
        ),
    ));
    report
}
