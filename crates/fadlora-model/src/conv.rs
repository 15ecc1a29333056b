//! The two convolutions of wav2vec2 written as im2col + matmul on time-major activations.
//!
//! The windows come from [`crate::ops`] (`conv_windows`, `same_windows`): one contiguous copy
//! per window row on the CPU, reshape/slice/cat or a `select` of time indices elsewhere, each
//! with its own backward. burn 0.21's `Conv1d` was measured ~140x slower than cuDNN on the
//! feature-encoder shapes on CUDA (without autotune) and slower than this formulation on the
//! CPU. Weights are stored directly in the matmul layout, so the PyTorch-to-burn rearrangement
//! happens once, when a checkpoint is loaded.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::prelude::*;

use crate::load::{permute, LoadError, TensorSource};
use crate::ops::{conv_windows, permute4, same_windows, ConvWindow, ModelBackend, SameWindow};

/// A valid (unpadded) strided `Conv1d` over `[batch, time, in_channels]` with
/// `stride <= kernel <= 2 * stride`.
///
/// `weight` is `[kernel * in_channels, out_channels]`, row `j * in_channels + c` holding
/// PyTorch's `weight[:, c, j]`: the order in which a window of `kernel` consecutive frames lies
/// in memory once time is split into blocks of `stride` frames.
#[derive(Module, Debug)]
pub struct StridedConv<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub in_channels: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl<B: Backend> StridedConv<B> {
    /// Random initialisation as Hugging Face's `_init_weights` (Kaiming normal weight).
    pub fn init(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        bias: bool,
        device: &B::Device,
    ) -> Self {
        let fan_in = in_channels * kernel;
        let weight = Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false,
        }
        .init_with([fan_in, out_channels], Some(fan_in), None, device);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let bias = bias.then(|| {
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([out_channels], device)
        });
        Self {
            weight,
            bias,
            in_channels,
            kernel,
            stride,
        }
    }

    /// Output length of PyTorch's valid convolution.
    pub fn output_len(&self, len: usize) -> usize {
        (len - self.kernel) / self.stride + 1
    }
}

impl<B: ModelBackend> StridedConv<B> {
    /// `[batch, time, in] -> [batch, (time - kernel) / stride + 1, out]`, in `x`'s float type.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, len, _] = x.dims();
        let (k, s) = (self.kernel, self.stride);
        assert!(
            len >= k,
            "convolution input of {len} frames is shorter than its kernel of {k}"
        );
        let dtype = x.dtype();
        // The windows are a copy anyway: a column of ones rides along and the bias becomes one
        // more weight row. A broadcast add over the output was measured slower than the whole
        // matmul of the first layer on the CPU backend.
        let window = ConvWindow {
            kernel: k,
            stride: s,
            ones: self.bias.is_some(),
        };
        let out_len = window.out_len(len);
        let weight = self.weight.val().cast(dtype);
        let out_channels = weight.dims()[1];
        let weight = match &self.bias {
            Some(bias) => Tensor::cat(vec![weight, bias.val().cast(dtype).unsqueeze::<2>()], 0),
            None => weight,
        };
        conv_windows(x, window)
            .matmul(weight)
            .reshape([batch, out_len, out_channels])
    }
}

/// The grouped "same" convolution of the positional embedding, with PyTorch's weight norm
/// over dim 2 kept as a reparametrisation: `w = g * v / ||v||`, the norm taken over every axis
/// but the kernel tap.
///
/// Keeping `g` and `v` (rather than a folded `w`) is what Hugging Face trains during full
/// fine-tuning and what its parameter count includes. `weight_v` is stored
/// `[groups, kernel * (in_channels / groups), out_channels / groups]`, row `j * in_per_group + c`
/// holding PyTorch's `weight_v[group * out_per_group + o, c, j]`: the order in which a window
/// of `kernel` frames lies once gathered (see [`WeightNormGroupedConv::forward`]).
#[derive(Module, Debug)]
pub struct WeightNormGroupedConv<B: Backend> {
    pub weight_g: Param<Tensor<B, 1>>,
    pub weight_v: Param<Tensor<B, 3>>,
    pub bias: Param<Tensor<B, 1>>,
    pub kernel: usize,
    pub groups: usize,
}

/// The largest window tensor gathered at once, in elements (256 MiB of f32). CUDA's memory pool
/// reserves a page of a quarter of the device for any allocation above a few GiB and keeps it;
/// XLS-R's windows at batch 8 are 843 MB, so they are gathered a few groups at a time.
const MAX_WINDOW_ELEMENTS: usize = 64 << 20;

impl<B: Backend> WeightNormGroupedConv<B> {
    /// Random initialisation as Hugging Face (`v ~ N(0, 2 / sqrt(kernel * channels))`, zero
    /// bias), with `g` set to the expected norm of `v` so that `w` starts out close to `v`
    /// without reading `v` back.
    pub fn init(channels: usize, kernel: usize, groups: usize, device: &B::Device) -> Self {
        let per_group = channels / groups;
        let std = 2.0 * (1.0 / (kernel * channels) as f64).sqrt();
        let weight_v = Initializer::Normal { mean: 0.0, std }
            .init([groups, kernel * per_group, per_group], device);
        let weight_g = Initializer::Constant {
            value: std * ((channels * per_group) as f64).sqrt(),
        }
        .init([kernel], device);
        Self {
            weight_g,
            weight_v,
            bias: Initializer::Zeros.init([channels], device),
            kernel,
            groups,
        }
    }

    /// A grouped `Conv1d(channels, channels, kernel, groups)` under `weight_norm(dim=2)` from a
    /// checkpoint: stored as `weight_g`/`weight_v`, as `parametrizations.weight.original0/1`, or
    /// (after `remove_weight_norm`) as a plain `weight`, from which `g` and `v` are recovered
    /// exactly.
    pub fn from_checkpoint(
        src: &mut TensorSource,
        prefix: &str,
        channels: usize,
        kernel: usize,
        groups: usize,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let per_group = channels / groups;
        let v_shape = [channels, per_group, kernel];
        let g_shape = [1, 1, kernel];
        let legacy = format!("{prefix}.weight_g");
        let parametrized = format!("{prefix}.parametrizations.weight.original0");
        let plain = format!("{prefix}.weight");
        let (g, v) = if src.shape(&legacy).is_some() {
            let g = src.take(&legacy, &g_shape)?;
            (g, src.take(&format!("{prefix}.weight_v"), &v_shape)?)
        } else if src.shape(&parametrized).is_some() {
            let g = src.take(&parametrized, &g_shape)?;
            let v = src.take(
                &format!("{prefix}.parametrizations.weight.original1"),
                &v_shape,
            )?;
            (g, v)
        } else if src.shape(&plain).is_some() {
            let v = src.take(&plain, &v_shape)?;
            (tap_norms(&v, kernel), v)
        } else {
            return Err(LoadError::MissingTensor {
                name: format!(
                    "{} (or {}, or {})",
                    src.shown(&src.full_key(&legacy)),
                    src.shown(&src.full_key(&parametrized)),
                    src.shown(&src.full_key(&plain))
                ),
                expected: g_shape.to_vec(),
            });
        };
        let v = Self::v_from_pytorch(&v, channels, kernel, groups);
        Ok(Self {
            weight_g: Param::from_data(TensorData::new(g, [kernel]), device),
            weight_v: Param::from_data(
                TensorData::new(v, [groups, kernel * per_group, per_group]),
                device,
            ),
            bias: src.take_param(&format!("{prefix}.bias"), [channels], device)?,
            kernel,
            groups,
        })
    }

    /// PyTorch's `weight_v` `[channels, channels / groups, kernel]` (host data) in the layout
    /// of [`Self::weight_v`].
    pub fn v_from_pytorch(v: &[f32], channels: usize, kernel: usize, groups: usize) -> Vec<f32> {
        let per_group = channels / groups;
        // [groups, out, in, k] -> [groups, k, in, out]
        permute(v, &[groups, per_group, per_group, kernel], &[0, 3, 2, 1])
    }

    /// The effective weight `g * v / ||v||`, `[groups, kernel * per_group, per_group]`.
    pub fn weight(&self) -> Tensor<B, 3> {
        let v = self.weight_v.val();
        let [groups, rows, out] = v.dims();
        let per_group_in = rows / self.kernel;
        let v = v.reshape([groups, self.kernel, per_group_in, out]);
        let norm = v
            .clone()
            .powi_scalar(2)
            .sum_dim(3)
            .sum_dim(2)
            .sum_dim(0)
            .sqrt();
        let scale = self.weight_g.val().reshape([1, self.kernel, 1, 1]) / norm;
        (v * scale).reshape([groups, rows, out])
    }
}

/// `||w[:, :, j]||` for each tap `j` of a `[out, in, kernel]` weight: weight norm's `g` for a
/// weight whose `v` is the weight itself.
fn tap_norms(w: &[f32], kernel: usize) -> Vec<f32> {
    let mut sums = vec![0f64; kernel];
    for (i, &x) in w.iter().enumerate() {
        sums[i % kernel] += f64::from(x) * f64::from(x);
    }
    sums.into_iter().map(|s| s.sqrt() as f32).collect()
}

impl<B: ModelBackend> WeightNormGroupedConv<B> {
    /// `[batch, time, channels] -> [batch, time, channels]`, padded by `kernel / 2` on both
    /// sides with the last output frame dropped for even kernels (Hugging Face's
    /// `Wav2Vec2SamePadLayer`); that frame is simply never computed here.
    ///
    /// im2col ([`same_windows`]: each group's windows as contiguous `[batch * time, kernel *
    /// per_group]` rows) and one batched matmul over the groups.
    ///
    /// burn-flex's own grouped `conv1d` was measured against this (examples/conv_formulations.rs):
    /// faster on its own, but not once the weight is normalised and rearranged for it each call.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, len, channels] = x.dims();
        let (k, groups) = (self.kernel, self.groups);
        let per_group = channels / groups;
        let dtype = x.dtype();
        let weight = self.weight().cast(dtype);
        let per_chunk =
            (MAX_WINDOW_ELEMENTS / (batch * len * k * per_group).max(1)).clamp(1, groups);
        let outputs: Vec<Tensor<B, 3>> = (0..groups)
            .step_by(per_chunk)
            .map(|g0| {
                let g1 = (g0 + per_chunk).min(groups);
                let x = if g1 - g0 == groups {
                    x.clone()
                } else {
                    x.clone().slice(s![.., .., g0 * per_group..g1 * per_group])
                };
                let window = SameWindow {
                    kernel: k,
                    groups: g1 - g0,
                };
                same_windows(x, window).matmul(weight.clone().slice(s![g0..g1, .., ..]))
            })
            .collect();
        let y = if outputs.len() == 1 {
            outputs.into_iter().next().expect("one chunk")
        } else {
            Tensor::cat(outputs, 0)
        };
        // [groups, batch * time, per_group] -> [batch, time, channels]
        permute4(y.reshape([groups, batch, len, per_group]), [1, 2, 0, 3])
            .reshape([batch, len, channels])
            + self.bias.val().cast(dtype).unsqueeze::<3>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type TB = Flex;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// PyTorch's `conv1d(x, w, b, stride, padding, groups)` for `x: [B, C, T]`, `w: [O, C/g, k]`,
    /// computed by direct summation in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive_conv1d(
        x: &[f32],
        (batch, channels, len): (usize, usize, usize),
        w: &[f32],
        (out_ch, kernel): (usize, usize),
        b: Option<&[f32]>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> (Vec<f32>, usize) {
        let in_per_group = channels / groups;
        let out_per_group = out_ch / groups;
        let out_len = (len + 2 * padding - kernel) / stride + 1;
        let mut y = vec![0f32; batch * out_ch * out_len];
        for n in 0..batch {
            for o in 0..out_ch {
                let g = o / out_per_group;
                for t in 0..out_len {
                    let mut acc = b.map_or(0.0, |b| f64::from(b[o]));
                    for c in 0..in_per_group {
                        for j in 0..kernel {
                            let pos = (t * stride + j) as isize - padding as isize;
                            if pos < 0 || pos as usize >= len {
                                continue;
                            }
                            let xv = x[(n * channels + g * in_per_group + c) * len + pos as usize];
                            let wv = w[(o * in_per_group + c) * kernel + j];
                            acc += f64::from(xv) * f64::from(wv);
                        }
                    }
                    y[(n * out_ch + o) * out_len + t] = acc as f32;
                }
            }
        }
        (y, out_len)
    }

    /// `[B, C, T]` host data to a time-major `[B, T, C]` tensor.
    fn time_major(x: &[f32], (b, c, t): (usize, usize, usize)) -> Tensor<TB, 3> {
        let data = permute(x, &[b, c, t], &[0, 2, 1]);
        Tensor::from_data(TensorData::new(data, [b, t, c]), &Default::default())
    }

    fn assert_close(got: Tensor<TB, 3>, want_bct: &[f32], (b, c, t): (usize, usize, usize)) {
        assert_eq!(got.dims(), [b, t, c]);
        let want = permute(want_bct, &[b, c, t], &[0, 2, 1]);
        let got = got.into_data().to_vec::<f32>().unwrap();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "max |diff| {diff}");
    }

    #[test]
    fn strided_conv_equals_direct_convolution() {
        let device = Default::default();
        // (in, out, kernel, stride): the wav2vec2 shapes, plus kernel < stride.
        for (c_in, c_out, k, s) in [(1, 6, 10, 5), (5, 4, 3, 2), (4, 3, 2, 2), (3, 2, 2, 3)] {
            // Lengths that are and are not multiples of the stride, and the shortest input.
            for len in [k, k + 1, 2 * s + k, 37, 40] {
                let batch = 2;
                let x = values(batch * c_in * len, len as u64);
                let w = values(c_out * c_in * k, 7);
                let bias = values(c_out, 3);
                let (want, out_len) =
                    naive_conv1d(&x, (batch, c_in, len), &w, (c_out, k), Some(&bias), s, 0, 1);
                let weight = permute(&w, &[c_out, c_in, k], &[2, 1, 0]);
                let conv = StridedConv::<TB> {
                    weight: Param::from_data(TensorData::new(weight, [k * c_in, c_out]), &device),
                    bias: Some(Param::from_data(TensorData::new(bias, [c_out]), &device)),
                    in_channels: c_in,
                    kernel: k,
                    stride: s,
                };
                let got = conv.forward(time_major(&x, (batch, c_in, len)));
                assert_close(got, &want, (batch, c_out, out_len));
            }
        }
    }

    #[test]
    fn weight_normed_grouped_conv_equals_direct_convolution() {
        let device = Default::default();
        for (channels, k, groups) in [(8, 6, 2), (6, 5, 3), (4, 4, 1)] {
            for len in [1, 3, 11] {
                let batch = 2;
                let per_group = channels / groups;
                let x = values(batch * channels * len, 11 + len as u64);
                let v = values(channels * per_group * k, 5);
                let g: Vec<f32> = values(k, 9).iter().map(|x| 1.0 + 0.5 * x).collect();
                let bias = values(channels, 13);
                // torch._weight_norm(v, g, dim=2)
                let mut w = v.clone();
                for (j, &gj) in g.iter().enumerate() {
                    let norm = v
                        .iter()
                        .skip(j)
                        .step_by(k)
                        .map(|x| f64::from(*x).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    for (wi, vi) in w.iter_mut().zip(&v).skip(j).step_by(k) {
                        *wi = (f64::from(gj) * f64::from(*vi) / norm) as f32;
                    }
                }
                let (mut want, out_len) = naive_conv1d(
                    &x,
                    (batch, channels, len),
                    &w,
                    (channels, k),
                    Some(&bias),
                    1,
                    k / 2,
                    groups,
                );
                // Hugging Face's SamePadLayer drops the last frame for even kernels.
                if out_len != len {
                    want = want
                        .chunks(out_len)
                        .flat_map(|row| row[..len].to_vec())
                        .collect();
                }
                let v = WeightNormGroupedConv::<TB>::v_from_pytorch(&v, channels, k, groups);
                let conv = WeightNormGroupedConv::<TB> {
                    weight_g: Param::from_data(TensorData::new(g, [k]), &device),
                    weight_v: Param::from_data(
                        TensorData::new(v, [groups, k * per_group, per_group]),
                        &device,
                    ),
                    bias: Param::from_data(TensorData::new(bias, [channels]), &device),
                    kernel: k,
                    groups,
                };
                let got = conv.forward(time_major(&x, (batch, channels, len)));
                assert_close(got, &want, (batch, channels, len));
            }
        }
    }
}
