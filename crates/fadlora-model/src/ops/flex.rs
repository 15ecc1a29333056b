//! The row operations on the CPU backend: one pass over the data, split across rayon's threads.
//! burn-flex runs element-wise float ops on one thread with scalar libm calls and has no fused
//! backward for LayerNorm or softmax. Non-`f32` tensors take the composed path.

use burn::backend::flex::{FlexDevice, FlexTensor};
use burn::backend::Flex;
use burn::prelude::Tensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use burn::tensor::{Distribution, FloatDType};
use rayon::prelude::*;

use super::fast_math;
use super::{composed, ConvWindow, ModelBackend, SameWindow};

/// Elements per rayon task of an element-wise kernel.
const CHUNK: usize = 1 << 14;
/// Elements per rayon task of a row kernel (whole rows, at least one).
const ROW_CHUNK: usize = 1 << 14;

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// The elements of `t` in row-major order (copied only if `t` is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `[rows, cols]` of a row-operation input.
fn rows_cols(t: &FlexTensor) -> (usize, usize) {
    let shape = t.shape();
    (shape[0], shape[1])
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

impl ModelBackend for Flex {
    // burn-flex's fused attention measured slower than matmul + softmax + matmul here: the
    // `tiny` preset's four layers took 38-47 ms against 28-32 ms (batch 4 x 99 frames).

    fn gelu_rows(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return <Flex as burn::tensor::ops::ActivationOps<Flex>>::gelu(x);
        }
        let x = contiguous(x);
        let input = values(&x);
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .for_each(|(out, input)| {
                for (o, &v) in out.iter_mut().zip(input) {
                    *o = 0.5 * v * (1.0 + fast_math::erf(v * FRAC_1_SQRT_2));
                }
            });
        tensor(out, x.shape())
    }

    fn gelu_rows_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x, &grad]) {
            return composed::gelu_backward::<Self>(x, grad);
        }
        let (x, grad) = (contiguous(x), contiguous(grad));
        let mut out = vec![0f32; values(&x).len()];
        out.par_chunks_mut(CHUNK)
            .zip(values(&x).par_chunks(CHUNK))
            .zip(values(&grad).par_chunks(CHUNK))
            .for_each(|((out, x), grad)| {
                for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
                    let cdf = 0.5 * (1.0 + fast_math::erf(v * FRAC_1_SQRT_2));
                    let pdf = FRAC_1_SQRT_2PI * fast_math::exp(-0.5 * v * v);
                    *o = g * (cdf + v * pdf);
                }
            });
        tensor(out, x.shape())
    }

    fn layer_norm_rows_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        if !is_f32(&[&x, &gamma, &grad]) {
            return composed::layer_norm_backward::<Self>(x, gamma, grad, eps);
        }
        let (x, gamma, grad) = (contiguous(x), contiguous(gamma), contiguous(grad));
        let (rows, cols) = rows_cols(&x);
        let gamma_values = values(&gamma);
        let per_task = (ROW_CHUNK / cols.max(1)).max(1) * cols;
        let mut dx = vec![0f32; rows * cols];
        let zero = || (vec![0f32; cols], vec![0f32; cols]);
        let (dgamma, dbeta) = dx
            .par_chunks_mut(per_task)
            .zip(values(&x).par_chunks(per_task))
            .zip(values(&grad).par_chunks(per_task))
            .map(|((dx, x), grad)| {
                let (mut dgamma, mut dbeta) = zero();
                let mut xhat = vec![0f32; cols];
                for ((dx, x), grad) in dx
                    .chunks_exact_mut(cols)
                    .zip(x.chunks_exact(cols))
                    .zip(grad.chunks_exact(cols))
                {
                    let n = cols as f32;
                    let mean = x.iter().sum::<f32>() / n;
                    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                    let rstd = 1.0 / (var + eps as f32).sqrt();
                    let (mut sum_g, mut sum_g_xhat) = (0f32, 0f32);
                    for (((h, &v), &g), &w) in xhat.iter_mut().zip(x).zip(grad).zip(gamma_values) {
                        *h = (v - mean) * rstd;
                        let gw = g * w;
                        sum_g += gw;
                        sum_g_xhat += gw * *h;
                    }
                    let (mean_g, mean_g_xhat) = (sum_g / n, sum_g_xhat / n);
                    for (i, ((d, &g), &w)) in dx.iter_mut().zip(grad).zip(gamma_values).enumerate()
                    {
                        *d = rstd * (g * w - mean_g - xhat[i] * mean_g_xhat);
                        dgamma[i] += g * xhat[i];
                        dbeta[i] += g;
                    }
                }
                (dgamma, dbeta)
            })
            // Partial sums in chunk order, added up in that order: the result does not
            // depend on how rayon scheduled the chunks (training is bit-reproducible).
            .collect::<Vec<_>>()
            .into_iter()
            .fold(zero(), |(mut ga, mut ba), (gb, bb)| {
                ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                ba.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                (ga, ba)
            });
        [
            tensor(dx, x.shape()),
            tensor(dgamma, Shape::new([cols])),
            tensor(dbeta, Shape::new([cols])),
        ]
    }

    fn softmax_rows_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&y, &grad]) {
            return composed::softmax_backward::<Self>(y, grad);
        }
        let (y, grad) = (contiguous(y), contiguous(grad));
        let (_, cols) = rows_cols(&y);
        let per_task = (ROW_CHUNK / cols.max(1)).max(1) * cols;
        let mut out = vec![0f32; values(&y).len()];
        out.par_chunks_mut(per_task)
            .zip(values(&y).par_chunks(per_task))
            .zip(values(&grad).par_chunks(per_task))
            .for_each(|((out, y), grad)| {
                for ((out, y), grad) in out
                    .chunks_exact_mut(cols)
                    .zip(y.chunks_exact(cols))
                    .zip(grad.chunks_exact(cols))
                {
                    let dot: f32 = y.iter().zip(grad).map(|(a, b)| a * b).sum();
                    for ((o, &y), &g) in out.iter_mut().zip(y).zip(grad) {
                        *o = y * (g - dot);
                    }
                }
            });
        tensor(out, y.shape())
    }

    fn conv_windows(x: FloatTensor<Self>, window: ConvWindow) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return composed::conv_windows::<Self>(x, window);
        }
        let x = contiguous(x);
        let [batch, len, channels] = dims3(&x);
        let ConvWindow {
            kernel,
            stride,
            ones,
        } = window;
        let out_len = window.out_len(len);
        let width = window.width(channels);
        let span = kernel * channels;
        let input = values(&x);
        let mut out = vec![0f32; batch * out_len * width];
        let rows_per_task = (ROW_CHUNK / width).max(1);
        out.par_chunks_mut(rows_per_task * width)
            .enumerate()
            .for_each(|(task, rows)| {
                for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                    let r = task * rows_per_task + i;
                    let (b, t) = (r / out_len, r % out_len);
                    let start = (b * len + t * stride) * channels;
                    row[..span].copy_from_slice(&input[start..start + span]);
                    if ones {
                        row[span] = 1.0;
                    }
                }
            });
        tensor(out, Shape::new([batch * out_len, width]))
    }

    fn conv_windows_backward(
        grad: FloatTensor<Self>,
        input: [usize; 3],
        window: ConvWindow,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&grad]) {
            return composed::conv_windows_backward::<Self>(grad, input, window);
        }
        let grad = contiguous(grad);
        let [batch, len, channels] = input;
        let ConvWindow { kernel, stride, .. } = window;
        let out_len = window.out_len(len);
        let width = window.width(channels);
        let span = kernel * channels;
        let grad_values = values(&grad);
        let mut dx = vec![0f32; batch * len * channels];
        // One utterance per task: its windows overlap each other, never another's.
        dx.par_chunks_mut(len * channels)
            .zip(grad_values.par_chunks(out_len * width))
            .for_each(|(dx, grad)| {
                for (t, row) in grad.chunks_exact(width).enumerate() {
                    let start = t * stride * channels;
                    for (d, &g) in dx[start..start + span].iter_mut().zip(&row[..span]) {
                        *d += g;
                    }
                }
            });
        tensor(dx, Shape::new(input))
    }

    fn same_windows(x: FloatTensor<Self>, window: SameWindow) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return composed::same_windows::<Self>(x, window);
        }
        let x = contiguous(x);
        let [batch, len, channels] = dims3(&x);
        let SameWindow { kernel, groups } = window;
        let per_group = channels / groups;
        let left = window.left() as isize;
        let width = kernel * per_group;
        let input = values(&x);
        // Rows of zeros first: taps that fall in the padding stay zero.
        let mut out = vec![0f32; groups * batch * len * width];
        let rows_per_task = (ROW_CHUNK / width).max(1);
        out.par_chunks_mut(rows_per_task * width)
            .enumerate()
            .for_each(|(task, rows)| {
                for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                    let r = task * rows_per_task + i;
                    let (g, b, t) = (r / (batch * len), (r / len) % batch, r % len);
                    for (j, tap) in row.chunks_exact_mut(per_group).enumerate() {
                        let frame = t as isize + j as isize - left;
                        if (0..len as isize).contains(&frame) {
                            let start = (b * len + frame as usize) * channels + g * per_group;
                            tap.copy_from_slice(&input[start..start + per_group]);
                        }
                    }
                }
            });
        tensor(out, Shape::new([groups, batch * len, width]))
    }

    fn permute4(x: FloatTensor<Self>, axes: [usize; 4]) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return <Flex as burn::tensor::ops::FloatTensorOps<Flex>>::float_permute(x, &axes);
        }
        let x = contiguous(x);
        let shape = x.shape();
        let dims = [shape[0], shape[1], shape[2], shape[3]];
        let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
        let out_dims = axes.map(|a| dims[a]);
        let from = axes.map(|a| strides[a]);
        let input = values(&x);
        let row = (out_dims[2] * out_dims[3]).max(1);
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
            let base = (r / out_dims[1]) * from[0] + (r % out_dims[1]) * from[1];
            for (i2, out) in out.chunks_exact_mut(out_dims[3].max(1)).enumerate() {
                let start = base + i2 * from[2];
                if from[3] == 1 {
                    out.copy_from_slice(&input[start..start + out.len()]);
                } else {
                    for (i3, o) in out.iter_mut().enumerate() {
                        *o = input[start + i3 * from[3]];
                    }
                }
            }
        });
        tensor(out, Shape::new(out_dims))
    }

    fn dropout_mask(
        shape: Shape,
        keep: f64,
        dtype: FloatDType,
        device: &FlexDevice,
    ) -> FloatTensor<Self> {
        if dtype != FloatDType::F32 {
            return composed::dropout_mask::<Self>(shape, keep, dtype, device);
        }
        // One draw from the backend's seeded RNG keys a counter-based stream (SplitMix64 of the
        // element index), so masks are reproducible and filled in parallel.
        let key = Tensor::<Flex, 1>::random([1], Distribution::Uniform(0.0, 1.0), device)
            .into_scalar()
            .to_bits() as u64;
        let key = splitmix64(key);
        let threshold = (keep * (1u64 << 32) as f64) as u64;
        let scale = (1.0 / keep) as f32;
        let mut mask = vec![0f32; shape.num_elements()];
        mask.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| {
                let first = (chunk * CHUNK) as u64;
                for (i, v) in values.iter_mut().enumerate() {
                    let draw = splitmix64(key ^ (first + i as u64)) >> 32;
                    *v = if draw < threshold { scale } else { 0.0 };
                }
            });
        tensor(mask, Shape::new([shape.num_elements()]))
    }

    fn same_windows_backward(
        grad: FloatTensor<Self>,
        input: [usize; 3],
        window: SameWindow,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&grad]) {
            return composed::same_windows_backward::<Self>(grad, input, window);
        }
        let grad = contiguous(grad);
        let [batch, len, channels] = input;
        let SameWindow { kernel, groups } = window;
        let per_group = channels / groups;
        let left = window.left() as isize;
        let width = kernel * per_group;
        let grad_values = values(&grad);
        let mut dx = vec![0f32; batch * len * channels];
        // One utterance per task; within it, every window adds into the frames it covered.
        dx.par_chunks_mut(len * channels)
            .enumerate()
            .for_each(|(b, dx)| {
                for g in 0..groups {
                    let rows = &grad_values[(g * batch + b) * len * width..][..len * width];
                    for (t, row) in rows.chunks_exact(width).enumerate() {
                        for (j, tap) in row.chunks_exact(per_group).enumerate() {
                            let frame = t as isize + j as isize - left;
                            if (0..len as isize).contains(&frame) {
                                let start = frame as usize * channels + g * per_group;
                                for (d, &v) in dx[start..start + per_group].iter_mut().zip(tap) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            });
        tensor(dx, Shape::new(input))
    }
}

fn dims3(t: &FlexTensor) -> [usize; 3] {
    let shape = t.shape();
    [shape[0], shape[1], shape[2]]
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::Backend;

    fn mask(seed: u64) -> Vec<f32> {
        let device = FlexDevice;
        Flex::seed(&device, seed);
        let mask = Flex::dropout_mask(Shape::new([200_000]), 0.9, FloatDType::F32, &device);
        mask.into_data().to_vec().unwrap()
    }

    #[test]
    fn dropout_mask_keeps_the_asked_fraction_scaled_and_follows_the_seed() {
        let a = mask(3);
        assert_eq!(a, mask(3), "same seed, same mask");
        assert_ne!(a, mask(4));
        let scale = 1.0 / 0.9f32;
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        // Binomial standard deviation at n = 200,000: 0.00067.
        assert!((kept - 0.9).abs() < 0.003, "kept {kept}");
    }

    #[test]
    fn permute4_equals_burns_permute_and_its_gradient_is_the_inverse_permutation() {
        use burn::backend::Autodiff;
        type AD = Autodiff<Flex>;
        let device = FlexDevice;
        let dims = [2, 3, 4, 5];
        let data: Vec<f32> = (0..120).map(|v| v as f32).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(data.clone(), dims), &device);
        for axes in [
            [0, 2, 1, 3],
            [0, 3, 2, 1],
            [3, 1, 0, 2],
            [1, 0, 3, 2],
            [0, 1, 2, 3],
        ] {
            let want = x.clone().permute(axes).into_data();
            let got = super::super::permute4(x.clone(), axes).into_data();
            assert_eq!(got.shape, want.shape, "{axes:?}");
            assert_eq!(
                got.to_vec::<f32>().unwrap(),
                want.to_vec::<f32>().unwrap(),
                "{axes:?}"
            );

            // d/dx sum(permute(x) * w) = w permuted back.
            let xg = Tensor::<AD, 4>::from_data(TensorData::new(data.clone(), dims), &device)
                .require_grad();
            let w_dims = axes.map(|a| dims[a]);
            let w = Tensor::<AD, 4>::from_data(
                TensorData::new((0..120).map(|v| (v * 7 % 11) as f32).collect(), w_dims),
                &device,
            );
            let y = super::super::permute4(xg.clone(), axes);
            let grads = (y * w.clone()).sum().backward();
            let mut inverse = [0; 4];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a] = i;
            }
            let want = w
                .inner()
                .permute(inverse)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let got = xg
                .grad(&grads)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            assert_eq!(got, want, "{axes:?}");
        }
    }
}
