//! Times the pieces of the feature encoder on the CPU backend (tiny preset, batch 4 x 32,000).
use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::gelu;
use fadlora_model::Wav2Vec2Config;

type B = Flex;

fn time<T>(name: &str, f: impl Fn() -> T) -> T {
    let _ = f();
    let start = Instant::now();
    let n = 3;
    for _ in 0..n - 1 {
        let _ = f();
    }
    let out = f();
    println!(
        "{name:<40} {:8.2} ms",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    out
}

fn main() {
    let device = Default::default();
    let model = Wav2Vec2Config::tiny().init::<B>(&device);
    let x = Tensor::<B, 2>::random([4, 32_000], burn::tensor::Distribution::Default, &device);
    let mut h = x.unsqueeze_dim::<3>(2);
    for (i, layer) in model.feature_extractor.conv_layers.iter().enumerate() {
        let hin = h.clone();
        let c = time(&format!("conv {i} im2col+matmul {:?}", hin.dims()), || {
            layer.conv.forward(hin.clone())
        });
        let cc = c.clone();
        let n = time(&format!("conv {i} norm"), || {
            layer.layer_norm.as_ref().unwrap().forward(cc.clone())
        });
        let nn = n.clone();
        h = time(&format!("conv {i} gelu"), || gelu(nn.clone()));
        let _ = h.clone().slice(s![0..1, 0..1, 0..1]).into_data();
    }
    let a = Tensor::<B, 2>::random([25_000, 768], burn::tensor::Distribution::Default, &device);
    let w = Tensor::<B, 2>::random([768, 256], burn::tensor::Distribution::Default, &device);
    time("matmul [25000,768]x[768,256]", || {
        a.clone().matmul(w.clone())
    });
    let big = Tensor::<B, 3>::random([4, 6399, 256], burn::tensor::Distribution::Default, &device);
    time("mean_dim(2) [4,6399,256]", || big.clone().mean_dim(2));
    time("sub broadcast", || {
        big.clone() - big.clone().slice(s![.., .., 0..1])
    });
    time("gelu [4,6399,256]", || gelu(big.clone()));
    time("x*x [4,6399,256]", || big.clone() * big.clone());
    time("erf [4,6399,256]", || big.clone().erf());
    let bias = Tensor::<B, 1>::random([256], burn::tensor::Distribution::Default, &device);
    time("+ bias[256] broadcast", || {
        big.clone() + bias.clone().unsqueeze::<3>()
    });
    let mean = big.clone().mean_dim(2);
    time("- mean [4,6399,1] broadcast", || big.clone() - mean.clone());
    time("/ mean [4,6399,1] broadcast", || big.clone() / mean.clone());
}
