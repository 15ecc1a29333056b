//! Gradients against torch autograd: the fixture models of `fixtures/wav2vec2/` with the loss
//! `sum(last_hidden_state * probe)`, reference gradients computed by Hugging Face transformers
//! in float64 (`tools/fixtures/make_gradient_fixtures.py`). Checks the gradient of the input
//! (which flows back through every operation, with the exact erf GELU) and of every parameter.

mod common;

use std::collections::BTreeMap;

use burn::backend::Autodiff;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use common::{fixture, read_reference, Array, MODELS};
use fadlora_model::conv::WeightNormGroupedConv;
use fadlora_model::load::permute;
use fadlora_model::norm::Norm;
use fadlora_model::{ModelBackend, Wav2Vec2Model};

/// The largest |ours - torch| of a gradient, relative to the largest |torch| value of that
/// tensor. HF's own float32 computation differs from the float64 reference by up to 7e-6 of
/// that scale on these fixtures.
const TOL: f32 = 5e-5;
/// The scale of a gradient that is zero in exact arithmetic (so at most `TOL` absolute).
const ZERO_GRADIENT_SCALE: f32 = 1.0;

/// Compares gradients, all named by their Hugging Face parameter name.
struct Checker<'a> {
    reference: &'a BTreeMap<String, Array>,
    checked: Vec<String>,
    worst: (f32, String),
}

impl Checker<'_> {
    /// `got` is our gradient as host data; `layout` maps the reference (PyTorch layout) to ours.
    fn check(&mut self, hf_name: &str, got: Vec<f32>, layout: impl Fn(&Array) -> Vec<f32>) {
        let want = &self.reference[&format!("grad.{hf_name}")];
        let want_data = layout(want);
        assert_eq!(
            got.len(),
            want_data.len(),
            "size of the gradient of {hf_name}"
        );
        let scale = want_data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(&want_data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // A gradient that is zero in exact arithmetic (the key projection's bias: softmax
        // ignores a constant added to every score) has no scale of its own: f32 rounding of
        // the sums behind it is compared with the unit scale instead.
        let relative = if scale < 1e-9 {
            diff / ZERO_GRADIENT_SCALE
        } else {
            diff / scale
        };
        assert!(
            relative < TOL,
            "gradient of {hf_name}: max |diff| {diff:e} against max |torch| {scale:e}"
        );
        if relative > self.worst.0 {
            self.worst = (relative, hf_name.to_string());
        }
        self.checked.push(hf_name.to_string());
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn grad<AD: AutodiffBackend, const D: usize>(
    param: &Param<Tensor<AD, D>>,
    grads: &AD::Gradients,
) -> Vec<f32> {
    host(param.grad(grads).expect("every parameter trains"))
}

fn same(a: &Array) -> Vec<f32> {
    a.data.clone()
}

/// A LayerNorm's weight and bias, at `{hf_name}.weight` and `{hf_name}.bias`.
fn check_norm<AD: AutodiffBackend>(
    checker: &mut Checker,
    hf_name: &str,
    norm: &Norm<AD>,
    grads: &AD::Gradients,
) {
    checker.check(
        &format!("{hf_name}.weight"),
        grad(&norm.weight, grads),
        same,
    );
    checker.check(&format!("{hf_name}.bias"), grad(&norm.bias, grads), same);
}

/// PyTorch `[out, in]` to burn's `[in, out]`.
fn transposed(a: &Array) -> Vec<f32> {
    permute(&a.data, &a.shape, &[1, 0])
}

#[test]
fn every_gradient_matches_torch_autograd() {
    gradients_match_torch::<Autodiff<burn::backend::Flex>>(&Default::default());
}

/// The same on wgpu (Mesa lavapipe in CI): cubecl's own GELU backward is the derivative of the
/// tanh approximation, which this catches (`cargo test -p fadlora-model --features wgpu`).
#[cfg(feature = "wgpu")]
#[test]
fn every_gradient_matches_torch_autograd_on_wgpu() {
    gradients_match_torch::<Autodiff<burn::backend::Wgpu>>(&Default::default());
}

fn gradients_match_torch<AD>(device: &AD::Device)
where
    AD: AutodiffBackend + ModelBackend,
{
    for name in MODELS {
        let reference = read_reference(&fixture(&[name, "gradients.safetensors"]));
        // torch ran the model in eval mode; burn's dropout and LayerDrop act whenever
        // gradients are recorded, so they are switched off in the configuration.
        let dir = fixture(&[name, "safetensors_parametrizations"]);
        let mut config =
            fadlora_model::Wav2Vec2Config::from_hf_json_file(dir.join("config.json")).unwrap();
        config.hidden_dropout = 0.0;
        config.attention_dropout = 0.0;
        config.activation_dropout = 0.0;
        config.feat_proj_dropout = 0.0;
        config.layerdrop = 0.0;
        let model =
            Wav2Vec2Model::<AD>::from_file(config, &dir.join("model.safetensors"), device).unwrap();
        let input = &reference["input_values"];
        let input = Tensor::<AD, 2>::from_data(
            TensorData::new(input.data.clone(), [input.shape[0], input.shape[1]]),
            device,
        )
        .require_grad();
        let probe = &reference["probe"];
        let probe = Tensor::<AD, 3>::from_data(
            TensorData::new(
                probe.data.clone(),
                [probe.shape[0], probe.shape[1], probe.shape[2]],
            ),
            device,
        );
        let out = model.forward(input.clone(), false).last_hidden_state;
        let loss = (out * probe).sum();
        let want_loss = reference["loss"].data[0];
        let got_loss = host(loss.clone())[0];
        assert!(
            (got_loss - want_loss).abs() < 1e-4 * want_loss.abs(),
            "{name}: loss {got_loss} against torch's {want_loss}"
        );
        let grads = loss.backward();
        let mut checker = Checker {
            reference: &reference,
            checked: vec![],
            worst: (0.0, String::new()),
        };
        checker.check("input_values", host(input.grad(&grads).unwrap()), same);

        let config = &model.config;
        for (i, layer) in model.feature_extractor.conv_layers.iter().enumerate() {
            let prefix = format!("feature_extractor.conv_layers.{i}");
            let (c_out, c_in, k) = (
                config.conv_dim[i],
                if i == 0 { 1 } else { config.conv_dim[i - 1] },
                config.conv_kernel[i],
            );
            checker.check(
                &format!("{prefix}.conv.weight"),
                grad(&layer.conv.weight, &grads),
                |a| permute(&a.data, &[c_out, c_in, k], &[2, 1, 0]),
            );
            if let Some(bias) = &layer.conv.bias {
                checker.check(&format!("{prefix}.conv.bias"), grad(bias, &grads), same);
            }
            if let Some(norm) = &layer.layer_norm {
                check_norm(&mut checker, &format!("{prefix}.layer_norm"), norm, &grads);
            }
        }
        let projection = &model.feature_projection;
        check_norm(
            &mut checker,
            "feature_projection.layer_norm",
            &projection.layer_norm,
            &grads,
        );
        checker.check(
            "feature_projection.projection.weight",
            grad(&projection.projection.weight, &grads),
            transposed,
        );
        checker.check(
            "feature_projection.projection.bias",
            grad(projection.projection.bias.as_ref().unwrap(), &grads),
            same,
        );

        let encoder = &model.encoder;
        let pos = &encoder.pos_conv_embed.conv;
        let (h, k, groups) = (
            config.hidden_size,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
        );
        let pos_prefix = "encoder.pos_conv_embed.conv";
        checker.check(
            &format!("{pos_prefix}.parametrizations.weight.original0"),
            grad(&pos.weight_g, &grads),
            same,
        );
        checker.check(
            &format!("{pos_prefix}.parametrizations.weight.original1"),
            grad(&pos.weight_v, &grads),
            |a| WeightNormGroupedConv::<AD>::v_from_pytorch(&a.data, h, k, groups),
        );
        checker.check(&format!("{pos_prefix}.bias"), grad(&pos.bias, &grads), same);
        check_norm(
            &mut checker,
            "encoder.layer_norm",
            &encoder.layer_norm,
            &grads,
        );

        for (i, layer) in encoder.layers.iter().enumerate() {
            let prefix = format!("encoder.layers.{i}");
            let linears = [
                ("attention.q_proj", &layer.attention.q_proj),
                ("attention.k_proj", &layer.attention.k_proj),
                ("attention.v_proj", &layer.attention.v_proj),
                ("attention.out_proj", &layer.attention.out_proj),
                (
                    "feed_forward.intermediate_dense",
                    &layer.feed_forward.intermediate_dense,
                ),
                (
                    "feed_forward.output_dense",
                    &layer.feed_forward.output_dense,
                ),
            ];
            for (path, linear) in linears {
                checker.check(
                    &format!("{prefix}.{path}.weight"),
                    grad(&linear.weight, &grads),
                    transposed,
                );
                checker.check(
                    &format!("{prefix}.{path}.bias"),
                    grad(linear.bias.as_ref().unwrap(), &grads),
                    same,
                );
            }
            for (path, norm) in [
                ("layer_norm", &layer.layer_norm),
                ("final_layer_norm", &layer.final_layer_norm),
            ] {
                check_norm(&mut checker, &format!("{prefix}.{path}"), norm, &grads);
            }
        }
        // Every gradient torch computed was compared.
        let expected = reference.keys().filter(|k| k.starts_with("grad.")).count();
        assert_eq!(
            checker.checked.len(),
            expected,
            "{name}: compared {:?}",
            checker.checked
        );
        eprintln!(
            "{name}: {} gradients within {TOL:e} of torch's scale; worst {:.2e} ({})",
            checker.checked.len(),
            checker.worst.0,
            checker.worst.1
        );
    }
}
