//! Mixed precision against the f32 path, on the fixture models: the model computes in the
//! float type of its input, LayerNorm and softmax in f32, and gradients reach f32 parameters.
//!
//! Tolerances (largest |reduced - f32| of the last hidden state, relative to the largest |f32|
//! value): 5e-2 for bf16 (8 mantissa bits, 0.4% per rounding), 1e-2 for f16 (11 bits). Measured
//! on the two fixture models: bf16 1.3e-2 and 3.0e-2, f16 1.5e-3 and 4.6e-3 (the post-LN
//! `base_group` layout is the less forgiving one).

mod common;

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use common::{fixture, read_reference, TB};
use fadlora_model::precision::cast_frozen;
use fadlora_model::{LoraConfig, LoraTarget, Precision, PrecisionDType, Wav2Vec2Model};

fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    diff / scale
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn reduced_precision_forward_stays_close_to_f32() {
    let device = Default::default();
    for name in common::MODELS {
        let dir = fixture(&[name, "safetensors_parametrizations"]);
        let model = Wav2Vec2Model::<TB>::from_pretrained(&dir, &device).unwrap();
        let reference = read_reference(&fixture(&[name, "reference.safetensors"]));
        let input = common::tensor(&reference["input_values"], [2, 16000]);
        let want = host(model.forward(input.clone(), false).last_hidden_state);
        for (precision, tol) in [(Precision::Bf16, 5e-2), (Precision::F16, 1e-2)] {
            let reduced = cast_frozen(model.clone(), precision);
            assert_eq!(
                reduced.encoder.layers[0]
                    .attention
                    .q_proj
                    .weight
                    .val()
                    .dtype(),
                DType::from(precision.dtype()),
                "weights are stored in {precision}"
            );
            let out = reduced
                .forward(input.clone().cast(precision.dtype()), false)
                .last_hidden_state;
            assert_eq!(out.dtype(), DType::from(precision.dtype()));
            let error = relative_error(&host(out), &want);
            assert!(error < tol, "{name} {precision}: relative error {error:e}");
            eprintln!("{name} {precision}: relative error {error:.2e} (tolerance {tol:e})");
        }
    }
}

#[test]
fn bf16_lora_training_keeps_f32_master_weights_and_gradients() {
    type AD = Autodiff<TB>;
    let device = Default::default();
    let dir = fixture(&["stable_layer", "safetensors_parametrizations"]);
    let model = Wav2Vec2Model::<AD>::from_pretrained(&dir, &device)
        .unwrap()
        .with_lora(
            &LoraConfig::new(4, 8.0).with_targets(vec![LoraTarget::Q, LoraTarget::V]),
            &device,
        );
    let model = cast_frozen(model, Precision::Bf16);
    let layer = &model.encoder.layers[0];
    // The frozen base is stored in bf16; adapters stay f32.
    assert_eq!(layer.attention.q_proj.weight.val().dtype(), DType::BF16);
    let lora = layer.attention.q_proj.lora.as_ref().unwrap();
    assert_eq!(lora.a.val().dtype(), DType::F32);
    let input = Tensor::<AD, 2>::random([1, 8000], burn::tensor::Distribution::Default, &device)
        .cast(FloatDType::BF16);
    let out = model.forward(input, false).last_hidden_state;
    let grads = out.cast(FloatDType::F32).sum().backward();
    // B starts at zero, so A's gradient is zero at first; B's is not.
    let grad_b = host(lora.b.grad(&grads).expect("adapter B trains"));
    assert!(grad_b.iter().all(|g| g.is_finite()) && grad_b.iter().any(|&g| g != 0.0));
    let grad_a = lora.a.grad(&grads).expect("adapter A trains");
    assert_eq!(
        grad_a.dtype(),
        DType::F32,
        "gradients of f32 parameters are f32"
    );
    assert!(layer.attention.q_proj.weight.grad(&grads).is_none());
}
