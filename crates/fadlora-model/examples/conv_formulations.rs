//! burn-flex's native `conv1d` against the model's im2col + matmul convolutions, forward and
//! forward + backward, on the CPU at the tiny preset's shapes (batch 4 x 32,000 samples):
//! the first and a later feature-encoder convolution, and the grouped positional convolution.
//!
//!     cargo run --release -p fadlora-model --example conv_formulations
//!
//! Prints one JSON line per case with both medians in ms. The native positional convolution
//! here gets a ready PyTorch-layout weight; the model's weight is `g * v / ||v||`, recomputed
//! and rearranged each call, and with that (tried) it was slower forward (31 against 24 ms) and
//! only 15% faster forward + backward, so the model keeps im2col + matmul for all three.
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;
use fadlora_model::conv::{StridedConv, WeightNormGroupedConv};

type B = Autodiff<Flex>;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs the backward pass of `y`, or forces `y` (flex runs eagerly; reading one value keeps
/// the work from being elided).
fn finish(y: Tensor<B, 3>, backward: bool) {
    if backward {
        let _ = y.sum().backward();
    } else {
        let _ = y.sum().into_data();
    }
}

struct Case {
    name: &'static str,
    batch: usize,
    len: usize,
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: usize,
}

fn main() {
    let device = Default::default();
    let cases = [
        Case {
            name: "feature conv 0 (1->256, k10 s5)",
            batch: 4,
            len: 32_000,
            channels_in: 1,
            channels_out: 256,
            kernel: 10,
            stride: 5,
            groups: 1,
            padding: 0,
        },
        Case {
            name: "feature conv 1 (256->256, k3 s2)",
            batch: 4,
            len: 6_399,
            channels_in: 256,
            channels_out: 256,
            kernel: 3,
            stride: 2,
            groups: 1,
            padding: 0,
        },
        Case {
            name: "positional conv (256, k128, 16 groups)",
            batch: 4,
            len: 99,
            channels_in: 256,
            channels_out: 256,
            kernel: 128,
            stride: 1,
            groups: 16,
            padding: 64,
        },
    ];
    for case in cases {
        let time_major = Tensor::<B, 3>::random(
            [case.batch, case.len, case.channels_in],
            Distribution::Default,
            &device,
        )
        .require_grad();
        let channel_major = time_major.clone().swap_dims(1, 2).detach().require_grad();
        let weight = Tensor::<B, 3>::random(
            [
                case.channels_out,
                case.channels_in / case.groups,
                case.kernel,
            ],
            Distribution::Default,
            &device,
        )
        .require_grad();
        let bias = Tensor::<B, 1>::zeros([case.channels_out], &device).require_grad();
        let options = ConvOptions::new([case.stride], [case.padding], [1], case.groups);
        let native = |backward: bool| {
            let y = conv1d(
                channel_major.clone(),
                weight.clone(),
                Some(bias.clone()),
                options.clone(),
            );
            finish(y, backward);
        };
        let ours: Box<dyn Fn(bool)> = if case.groups == 1 {
            let conv = StridedConv::<B>::init(
                case.channels_in,
                case.channels_out,
                case.kernel,
                case.stride,
                true,
                &device,
            );
            let x = time_major.clone();
            Box::new(move |backward| finish(conv.forward(x.clone()), backward))
        } else {
            let conv = WeightNormGroupedConv::<B>::init(
                case.channels_in,
                case.kernel,
                case.groups,
                &device,
            );
            let x = time_major.clone();
            Box::new(move |backward| finish(conv.forward(x.clone()), backward))
        };
        let native_forward = median_ms(|| native(false));
        let native_step = median_ms(|| native(true));
        let ours_forward = median_ms(|| ours(false));
        let ours_step = median_ms(|| ours(true));
        println!(
            "{{\"case\":\"{}\",\"native_conv1d_forward_ms\":{native_forward:.2},\"im2col_matmul_forward_ms\":{ours_forward:.2},\"native_conv1d_forward_backward_ms\":{native_step:.2},\"im2col_matmul_forward_backward_ms\":{ours_step:.2}}}",
            case.name
        );
    }
}
