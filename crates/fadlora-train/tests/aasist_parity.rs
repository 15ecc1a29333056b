//! The AASIST head against the PyTorch back end of `tools/fixtures/make_aasist_fixtures.py`
//! (SSL_Anti-spoofing's, eval mode, input width 32): its state dict loads by name and the
//! logits agree within 1e-4. The SLS head likewise against
//! `tools/fixtures/make_sls_fixtures.py` (width 32, 12 frames, 3 layers).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use fadlora_train::aasist::AasistConfig;
use safetensors::SafeTensors;

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/aasist")
}

fn tensor<const D: usize>(
    file: &SafeTensors,
    name: &str,
    device: &burn::tensor::Device<B>,
) -> Tensor<B, D> {
    let view = file.tensor(name).unwrap();
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_data(TensorData::new(values, view.shape().to_vec()), device)
}

#[test]
fn aasist_head_matches_pytorch_within_1e_4() {
    let device = Default::default();
    let head = AasistConfig::new(32)
        .init::<B>(&device)
        .load_pytorch(&fixtures().join("weights.safetensors"))
        .unwrap();
    let bytes = std::fs::read(fixtures().join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&bytes).unwrap();
    let input = tensor::<3>(&io, "input", &device);
    assert_matches_pytorch("AASIST", head.forward(input), &io, &device);
}

#[test]
fn a_misshapen_tensor_is_an_error_naming_it() {
    let device = Default::default();
    let bytes = std::fs::read(fixtures().join("weights.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    // Everything as it is, but the output layer one class too wide.
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<u8>, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.data().to_vec(),
                view.shape().to_vec(),
            )
        })
        .collect();
    for (name, _, data, shape) in &mut tensors {
        if name == "out_layer.weight" {
            shape[0] = 3;
            data.resize(3 * shape[1] * 4, 0);
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, data, shape)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let err = AasistConfig::new(32)
        .init::<B>(&device)
        .load_pytorch(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out_layer.weight"), "{err}");

    // A head built for another input width does not take these weights either.
    let err = AasistConfig::new(64)
        .init::<B>(&device)
        .load_pytorch(&fixtures().join("weights.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ll.weight"), "{err}");
}

/// The SLS head: the PyTorch classifier's state dict loads by name (BatchNorm running
/// statistics included) and the log-probabilities agree within 1e-4.
#[test]
fn sls_head_matches_pytorch_within_1e_4() {
    use fadlora_train::sls::SlsConfig;
    let device = Default::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sls");
    let head = SlsConfig::new()
        .with_input_width(32)
        .with_frames(12)
        .with_fc1_width(16)
        .init::<B>(&device)
        .load_pytorch(&dir.join("weights.safetensors"))
        .unwrap();
    let bytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&bytes).unwrap();
    let layers = tensor::<4>(&io, "layers", &device);
    let layers: Vec<Tensor<B, 3>> = (0..3)
        .map(|i| layers.clone().narrow(0, i, 1).squeeze_dim::<3>(0))
        .collect();
    assert_matches_pytorch("SLS", head.forward(layers), &io, &device);
    // A head of other sizes does not take these weights, and says which tensor.
    let err = SlsConfig::new()
        .with_input_width(32)
        .with_frames(15)
        .with_fc1_width(16)
        .init::<B>(&device)
        .load_pytorch(&dir.join("weights.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc1"), "{err}");
}

/// `got` `[2, 2]` against the fixture's `output` (PyTorch's), within 1e-4.
fn assert_matches_pytorch(what: &str, got: Tensor<B, 2>, io: &SafeTensors, device: &Device<B>) {
    let expected: Vec<f32> = tensor::<2>(io, "output", device)
        .into_data()
        .to_vec()
        .unwrap();
    let got: Vec<f32> = got.into_data().to_vec().unwrap();
    assert_eq!(got.len(), 4);
    let max_diff = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{what} parity: ours {got:?}, PyTorch {expected:?}, max |diff| {max_diff:e}");
    assert!(
        max_diff < 1e-4,
        "max |diff| {max_diff}: {got:?} vs {expected:?}"
    );
}
