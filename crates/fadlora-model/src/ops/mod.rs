//! The operations that dominate wav2vec2 besides matmuls, as backend operations with their own
//! backward: exact GELU, LayerNorm and softmax over the last axis, the two convolutions' im2col
//! windows, 4-D permutations copied to rows (attention heads), and dropout masks.
//!
//! burn 0.21 runs them poorly for training. Under `Autodiff`, LayerNorm and softmax are
//! decomposed into five to seven primitive ops, each saving its input and running its own
//! backward kernel; GELU's backward on the cubecl backends is the derivative of the *tanh*
//! approximation, while its forward (and Hugging Face) is the exact erf GELU, so GPU gradients
//! did not match the reference; burn-flex copies strided windows and permuted views element by
//! element and draws dropout masks on one thread. [`ModelBackend`] gives each operation one forward and one
//! backward: composed from burn tensor ops by default (which kernel fusion merges on the GPU),
//! with rayon-parallel kernels on the CPU backend (see `flex.rs`), and wired into `Autodiff` as
//! single graph nodes.
//!
//! The row operations work on `[rows, cols]`: the tensor-level functions ([`gelu`],
//! [`layer_norm`], [`softmax`]) flatten all leading axes into one before calling the backend.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, IndexingUpdateOp, Shape, TensorMetadata, TensorPrimitive};

#[cfg(feature = "flex")]
pub mod fast_math;
#[cfg(feature = "flex")]
mod flex;

/// A backend the wav2vec2 model runs on: burn's [`Backend`] plus the row operations of this
/// module. Implemented for `Flex`, `Cuda` and `Wgpu` (as compiled in) and for `Autodiff` of any
/// of them. All tensors are `[rows, cols]`; the operation acts along `cols`.
pub trait ModelBackend: Backend {
    /// Whether inference runs attention as the backend's fused operation
    /// (`burn::tensor::module::attention`) rather than matmul, softmax, matmul. Under autodiff
    /// burn decomposes the fused operation anyway, so training always takes the latter.
    const FUSED_INFERENCE_ATTENTION: bool = false;

    /// `x * Phi(x)` with the exact normal CDF (PyTorch's `gelu(approximate="none")`).
    fn gelu_rows(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad * (Phi(x) + x * phi(x))`.
    fn gelu_rows_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::gelu_backward::<Self>(x, grad)
    }

    /// `(x - mean) / sqrt(var + eps) * gamma + beta` per row (biased variance).
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), eps)
    }

    /// Gradients `[d x, d gamma, d beta]` of [`ModelBackend::layer_norm_rows`].
    fn layer_norm_rows_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> [FloatTensor<Self>; 3] {
        composed::layer_norm_backward::<Self>(x, gamma, grad, eps)
    }

    fn softmax_rows(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::softmax(x, 1)
    }

    /// `y * (grad - sum(grad * y))` from the softmax output `y`.
    fn softmax_rows_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_backward::<Self>(y, grad)
    }

    /// im2col of a valid strided convolution over time: `x` `[batch, time, channels]` to one
    /// row per output frame, `[batch * out_len, kernel * channels]` (plus a column of ones with
    /// `ones`, which turns the bias into a weight row). Row `t` is frames `t * stride ..
    /// t * stride + kernel`, which lie contiguously in `x`.
    fn conv_windows(x: FloatTensor<Self>, window: ConvWindow) -> FloatTensor<Self> {
        composed::conv_windows::<Self>(x, window)
    }

    /// The gradient of `x` `[batch, time, channels]` from that of its windows: overlapping
    /// windows add up.
    fn conv_windows_backward(
        grad: FloatTensor<Self>,
        input: [usize; 3],
        window: ConvWindow,
    ) -> FloatTensor<Self> {
        composed::conv_windows_backward::<Self>(grad, input, window)
    }

    /// im2col of the positional embedding's grouped "same" convolution: `x` `[batch, time,
    /// groups * per_group]` to `[groups, batch * time, kernel * per_group]`, row `(g, b, t)`
    /// holding frames `t - kernel / 2 .. t - kernel / 2 + kernel` of group `g` (zeros outside
    /// the input), tap-major.
    fn same_windows(x: FloatTensor<Self>, window: SameWindow) -> FloatTensor<Self> {
        composed::same_windows::<Self>(x, window)
    }

    fn same_windows_backward(
        grad: FloatTensor<Self>,
        input: [usize; 3],
        window: SameWindow,
    ) -> FloatTensor<Self> {
        composed::same_windows_backward::<Self>(grad, input, window)
    }

    /// `x` `[d0, d1, d2, d3]` with its axes reordered (`out.dims[i] = x.dims[axes[i]]`).
    /// burn's default keeps a strided view, which the next operation that needs rows copies;
    /// flex copies element by element on one thread there, so its kernel copies in parallel.
    fn permute4(x: FloatTensor<Self>, axes: [usize; 4]) -> FloatTensor<Self> {
        Self::float_permute(x, &axes)
    }

    /// Dropout's mask for a tensor of `shape`, flat (`[elements]`): `1 / keep` with
    /// probability `keep`, else 0, drawn from the backend's seeded RNG; never part of the
    /// autodiff graph.
    fn dropout_mask(
        shape: Shape,
        keep: f64,
        dtype: FloatDType,
        device: &Self::Device,
    ) -> FloatTensor<Self> {
        composed::dropout_mask::<Self>(shape, keep, dtype, device)
    }
}

/// A valid strided convolution's windows (see [`ModelBackend::conv_windows`]); the
/// feature encoder's have `stride <= kernel <= 2 * stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvWindow {
    pub kernel: usize,
    pub stride: usize,
    /// Append a column of ones (the bias row of the weight).
    pub ones: bool,
}

impl ConvWindow {
    pub fn out_len(&self, len: usize) -> usize {
        (len - self.kernel) / self.stride + 1
    }

    fn width(&self, channels: usize) -> usize {
        self.kernel * channels + usize::from(self.ones)
    }
}

/// The positional convolution's windows (see [`ModelBackend::same_windows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SameWindow {
    pub kernel: usize,
    /// Groups in the input tensor (each of `channels / groups` channels).
    pub groups: usize,
}

impl SameWindow {
    /// Frames of zero padding before the input (`kernel / 2`; after it, `kernel - 1 -` that).
    pub fn left(&self) -> usize {
        self.kernel / 2
    }
}

/// A backend that trains the model: `Autodiff` over a [`ModelBackend`], whose inner backend
/// (what `valid()` modules run on) is one too.
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: ModelBackend> + ModelBackend
{
}

impl<B> TrainBackend for B where
    B: burn::tensor::backend::AutodiffBackend<InnerBackend: ModelBackend> + ModelBackend
{
}

// cubecl's flash-attention kernel never materialises the `[batch, heads, frames, frames]`
// scores; not yet measured against the matmul path on a GPU (tools/bench/gpu_checks.sh).
#[cfg(feature = "cuda")]
impl ModelBackend for burn::backend::Cuda {
    const FUSED_INFERENCE_ATTENTION: bool = true;
}
#[cfg(feature = "wgpu")]
impl ModelBackend for burn::backend::Wgpu {
    const FUSED_INFERENCE_ATTENTION: bool = true;
}

/// Each operation is one node of the graph, holding what its backward reads.
impl<B: ModelBackend, C: CheckpointStrategy> ModelBackend for Autodiff<B, C> {
    const FUSED_INFERENCE_ATTENTION: bool = B::FUSED_INFERENCE_ATTENTION;

    fn gelu_rows(x: FloatTensor<Self>) -> FloatTensor<Self> {
        row_node::<B, C>(x, Saved::Input, B::gelu_rows, B::gelu_rows_backward)
    }

    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;
        impl<B: ModelBackend> Backward<B, 3> for LayerNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, f64);
            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, gamma, eps) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let [dx, dgamma, dbeta] = B::layer_norm_rows_backward(x, gamma, grad, eps);
                for (parent, g) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::layer_norm_rows(
                    x.primitive.clone(),
                    gamma.primitive.clone(),
                    beta.primitive,
                    eps,
                );
                prep.finish((x.primitive, gamma.primitive, eps), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_rows(
                x.primitive,
                gamma.primitive,
                beta.primitive,
                eps,
            )),
        }
    }

    fn conv_windows(x: FloatTensor<Self>, window: ConvWindow) -> FloatTensor<Self> {
        windows_node::<B, C, _>(x, window, B::conv_windows, B::conv_windows_backward)
    }

    fn same_windows(x: FloatTensor<Self>, window: SameWindow) -> FloatTensor<Self> {
        windows_node::<B, C, _>(x, window, B::same_windows, B::same_windows_backward)
    }

    fn permute4(x: FloatTensor<Self>, axes: [usize; 4]) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PermuteBackward;
        impl<B: ModelBackend> Backward<B, 1> for PermuteBackward {
            type State = [usize; 4];
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let mut inverse = [0; 4];
                for (i, &axis) in ops.state.iter().enumerate() {
                    inverse[axis] = i;
                }
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::permute4(grad, inverse)
                });
            }
        }
        match PermuteBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(axes, B::permute4(x.primitive, axes)),
            OpsKind::UnTracked(prep) => prep.finish(B::permute4(x.primitive, axes)),
        }
    }

    fn dropout_mask(
        shape: Shape,
        keep: f64,
        dtype: FloatDType,
        device: &Self::Device,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::dropout_mask(shape, keep, dtype, device))
    }

    fn softmax_rows(x: FloatTensor<Self>) -> FloatTensor<Self> {
        row_node::<B, C>(x, Saved::Output, B::softmax_rows, B::softmax_rows_backward)
    }
}

/// The backward passes written with burn tensor ops: what every backend without its own
/// kernels runs (fused into few kernels where burn's fusion is on).
pub mod composed {
    use super::*;

    /// Dropout's mask drawn with burn's Bernoulli sampler (see [`ModelBackend::dropout_mask`]).
    pub fn dropout_mask<B: Backend>(
        shape: Shape,
        keep: f64,
        dtype: FloatDType,
        device: &B::Device,
    ) -> FloatTensor<B> {
        let mask = Tensor::<B, 1>::random(
            [shape.num_elements()],
            burn::tensor::Distribution::Bernoulli(keep),
            device,
        );
        (mask * (1.0 / keep)).cast(dtype).into_primitive().tensor()
    }

    fn rows<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 2> {
        Tensor::from_primitive(TensorPrimitive::Float(x))
    }

    fn prim<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
        x.into_primitive().tensor()
    }

    pub fn gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let x = rows::<B>(x);
        let cdf = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
            .erf()
            .add_scalar(1.0)
            .mul_scalar(0.5);
        let pdf = (x.clone().powi_scalar(2) * -0.5)
            .exp()
            .mul_scalar(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
        prim(rows::<B>(grad) * (cdf + x * pdf))
    }

    pub fn layer_norm_backward<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        grad: FloatTensor<B>,
        eps: f64,
    ) -> [FloatTensor<B>; 3] {
        let x = rows::<B>(x);
        let grad = rows::<B>(grad);
        let cols = x.dims()[1];
        let gamma = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(gamma));
        let (var, mean) = x.clone().var_mean_bias(1);
        let rstd = var.add_scalar(eps).sqrt().recip();
        let xhat = (x - mean) * rstd.clone();
        let g = grad.clone() * gamma.unsqueeze::<2>();
        let mean_g = g.clone().mean_dim(1);
        let mean_g_xhat = (g.clone() * xhat.clone()).mean_dim(1);
        let dx = (g - mean_g - xhat.clone() * mean_g_xhat) * rstd;
        let dgamma = (grad.clone() * xhat).sum_dim(0).reshape([cols]);
        let dbeta = grad.sum_dim(0).reshape([cols]);
        [prim(dx), prim(dgamma), prim(dbeta)]
    }

    /// Zero padding in the tensor's own float type: burn's `pad` fills with a tensor of the
    /// default type (f32), which fails on bf16 and f16 activations.
    trait ZeroPad {
        fn zero_pad(self, pads: Self::Pads) -> Self;
        type Pads;
    }

    impl<B: Backend, const D: usize> ZeroPad for Tensor<B, D> {
        type Pads = [(usize, usize); D];

        fn zero_pad(self, pads: [(usize, usize); D]) -> Self {
            let mut x = self;
            for (dim, (before, after)) in pads.into_iter().enumerate() {
                if before + after == 0 {
                    continue;
                }
                let (dtype, device) = (x.dtype(), x.device());
                let zeros = |frames: usize| {
                    let mut shape = x.dims();
                    shape[dim] = frames;
                    Tensor::<B, D>::zeros(shape, &device).cast(dtype)
                };
                let mut parts = Vec::with_capacity(3);
                if before > 0 {
                    parts.push(zeros(before));
                }
                let after_part = (after > 0).then(|| zeros(after));
                parts.push(x);
                parts.extend(after_part);
                x = Tensor::cat(parts, dim);
            }
            x
        }
    }

    fn prim3<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 3> {
        Tensor::from_primitive(TensorPrimitive::Float(x))
    }

    /// Reshape/slice/cat: a window `t` starts block `t` of `stride` frames and spills into the
    /// first `kernel - stride` frames of block `t + 1` (kernel <= 2 * stride).
    pub fn conv_windows<B: Backend>(x: FloatTensor<B>, window: ConvWindow) -> FloatTensor<B> {
        let x = prim3::<B>(x);
        let [batch, len, channels] = x.dims();
        let ConvWindow {
            kernel: k,
            stride: s,
            ones,
        } = window;
        assert!(k <= 2 * s, "windows need kernel <= 2 * stride");
        let out_len = window.out_len(len);
        let blocks = if k > s { out_len + 1 } else { out_len };
        let need = blocks * s;
        let x = if len >= need {
            x.slice(s![.., 0..need, ..])
        } else {
            // The padded frames lie past the last window's end: they are never read.
            x.zero_pad([(0, 0), (0, need - len), (0, 0)])
        };
        let x = x.reshape([batch, blocks, s * channels]);
        let mut parts = if k > s {
            vec![
                x.clone().slice(s![.., 0..out_len, ..]),
                x.slice(s![.., 1..blocks, 0..(k - s) * channels]),
            ]
        } else if k < s {
            vec![x.slice(s![.., .., 0..k * channels])]
        } else {
            vec![x]
        };
        if ones {
            let device = parts[0].device();
            let dtype = parts[0].dtype();
            parts.push(Tensor::<B, 3>::ones([batch, out_len, 1], &device).cast(dtype));
        }
        let windows = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(parts, 2)
        };
        prim(windows.reshape([batch * out_len, window.width(channels)]))
    }

    pub fn conv_windows_backward<B: Backend>(
        grad: FloatTensor<B>,
        [batch, len, channels]: [usize; 3],
        window: ConvWindow,
    ) -> FloatTensor<B> {
        let ConvWindow {
            kernel: k,
            stride: s,
            ..
        } = window;
        let out_len = window.out_len(len);
        let grad =
            rows::<B>(grad)
                .slice(s![.., 0..k * channels])
                .reshape([batch, out_len, k * channels]);
        let blocks = if k > s { out_len + 1 } else { out_len };
        let blocks_grad = if k > s {
            let per_block = grad.clone().slice(s![.., .., 0..s * channels]);
            let spill = grad.slice(s![.., .., s * channels..k * channels]);
            per_block.zero_pad([(0, 0), (0, 1), (0, 0)])
                + spill.zero_pad([(0, 0), (1, 0), (0, (2 * s - k) * channels)])
        } else {
            grad.zero_pad([(0, 0), (0, 0), (0, (s - k) * channels)])
        };
        let frames = blocks_grad.reshape([batch, blocks * s, channels]);
        let frames = if blocks * s >= len {
            frames.slice(s![.., 0..len, ..])
        } else {
            frames.zero_pad([(0, 0), (0, len - blocks * s), (0, 0)])
        };
        prim(frames)
    }

    /// The time indices `t + j` of every output frame `t` and tap `j`, in the padded input.
    fn taps<B: Backend>(len: usize, kernel: usize, device: &B::Device) -> Tensor<B, 1, Int> {
        let taps: Vec<i64> = (0..len as i64)
            .flat_map(|t| (0..kernel as i64).map(move |j| t + j))
            .collect();
        Tensor::from_data(TensorData::new(taps, [len * kernel]), device)
    }

    /// A group-major padded copy of the input, then one `select` of time indices.
    pub fn same_windows<B: Backend>(x: FloatTensor<B>, window: SameWindow) -> FloatTensor<B> {
        let x = prim3::<B>(x);
        let [batch, len, channels] = x.dims();
        let SameWindow { kernel: k, groups } = window;
        let per_group = channels / groups;
        let left = window.left();
        let device = x.device();
        // [batch, time, channels] -> [groups, batch, time + k - 1, per_group]
        let x = x
            .reshape([batch, len, groups, per_group])
            .permute([2, 0, 1, 3])
            .zero_pad([(0, 0), (0, 0), (left, k - 1 - left), (0, 0)]);
        let windows = x.select(2, taps::<B>(len, k, &device));
        prim(windows.reshape([groups, batch * len, k * per_group]))
    }

    pub fn same_windows_backward<B: Backend>(
        grad: FloatTensor<B>,
        [batch, len, channels]: [usize; 3],
        window: SameWindow,
    ) -> FloatTensor<B> {
        let SameWindow { kernel: k, groups } = window;
        let per_group = channels / groups;
        let left = window.left();
        let grad = prim3::<B>(grad).reshape([groups, batch, len * k, per_group]);
        let device = grad.device();
        let padded = Tensor::<B, 4>::zeros([groups, batch, len + k - 1, per_group], &device)
            .cast(grad.dtype())
            .select_assign(2, taps::<B>(len, k, &device), grad, IndexingUpdateOp::Add);
        prim(
            padded
                .slice(s![.., .., left..left + len, ..])
                .permute([1, 2, 0, 3])
                .reshape([batch, len, channels]),
        )
    }

    pub fn softmax_backward<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let y = rows::<B>(y);
        let grad = rows::<B>(grad);
        let dot = (grad.clone() * y.clone()).sum_dim(1);
        prim(y * (grad - dot))
    }
}

/// What a row operation's backward reads besides the output gradient.
#[derive(Debug, Clone, Copy)]
enum Saved {
    /// GELU: `x`.
    Input,
    /// Softmax: `y`, so `x` can be freed.
    Output,
}

/// A one-input row operation as one graph node whose backward is `backward(saved, grad)`.
fn row_node<B: ModelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    saved: Saved,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    backward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    type BackwardFn<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;
    #[derive(Debug)]
    struct RowBackward;
    impl<B: ModelBackend> Backward<B, 1> for RowBackward {
        type State = (FloatTensor<B>, BackwardFn<B>);
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (saved, backward) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| backward(saved, grad));
        }
    }
    match RowBackward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (state, out) = match saved {
                Saved::Input => (x.primitive.clone(), forward(x.primitive)),
                Saved::Output => {
                    let y = forward(x.primitive);
                    (y.clone(), y)
                }
            };
            prep.finish((state, backward), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    }
}

/// An im2col operation as one graph node: `forward(x, window)`, whose backward
/// `backward(grad, x's dims, window)` needs nothing of `x` but its shape.
fn windows_node<B: ModelBackend, C: CheckpointStrategy, W>(
    x: FloatTensor<Autodiff<B, C>>,
    window: W,
    forward: fn(FloatTensor<B>, W) -> FloatTensor<B>,
    backward: fn(FloatTensor<B>, [usize; 3], W) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    W: Copy + Send + Sync + 'static,
{
    #[derive(Debug)]
    struct WindowsBackward;
    impl<B: ModelBackend> Backward<B, 1> for WindowsBackward {
        type State = BackwardState<B>;
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let backward = ops.state.0;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| backward(grad));
        }
    }
    /// The backward with the input's shape and the window bound in.
    #[derive(Clone)]
    struct BackwardState<B: Backend>(Arc<dyn Fn(FloatTensor<B>) -> FloatTensor<B> + Send + Sync>);
    impl<B: Backend> std::fmt::Debug for BackwardState<B> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("windows backward")
        }
    }
    let input = dims3::<B>(&x.primitive);
    match WindowsBackward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = BackwardState(Arc::new(move |grad| backward(grad, input, window)));
            prep.finish(state, forward(x.primitive, window))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, window)),
    }
}

fn dims3<B: Backend>(x: &FloatTensor<B>) -> [usize; 3] {
    let shape = x.shape();
    [shape[0], shape[1], shape[2]]
}

/// `x` as `[rows, last axis]`, through `op`, and back to `x`'s shape.
fn on_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    op: impl FnOnce(FloatTensor<B>) -> FloatTensor<B>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let cols = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let out = op(x.reshape([rows, cols]).into_primitive().tensor());
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(out)).reshape(dims)
}

/// Exact (erf) GELU, with the exact gradient on every backend.
pub fn gelu<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    on_rows(x, B::gelu_rows)
}

/// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`, computed in
/// f32 and returned in `x`'s float type (as PyTorch's autocast does).
pub fn layer_norm<B: ModelBackend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let gamma = gamma.cast(FloatDType::F32).into_primitive().tensor();
    let beta = beta.cast(FloatDType::F32).into_primitive().tensor();
    on_rows(x.cast(FloatDType::F32), |x| {
        B::layer_norm_rows(x, gamma, beta, eps)
    })
    .cast(dtype)
}

/// Softmax over the last axis, computed in f32 and returned in `x`'s float type.
pub fn softmax<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    on_rows(x.cast(FloatDType::F32), B::softmax_rows).cast(dtype)
}

/// [`ModelBackend::permute4`] on a tensor.
pub fn permute4<B: ModelBackend>(x: Tensor<B, 4>, axes: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::permute4(
        x.into_primitive().tensor(),
        axes,
    )))
}

/// [`ModelBackend::conv_windows`] on a tensor: `[batch * out_len, kernel * channels (+1)]`.
pub fn conv_windows<B: ModelBackend>(x: Tensor<B, 3>, window: ConvWindow) -> Tensor<B, 2> {
    let out = B::conv_windows(x.into_primitive().tensor(), window);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`ModelBackend::same_windows`] on a tensor: `[groups, batch * time, kernel * per_group]`.
pub fn same_windows<B: ModelBackend>(x: Tensor<B, 3>, window: SameWindow) -> Tensor<B, 3> {
    let out = B::same_windows(x.into_primitive().tensor(), window);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Dropout as burn's `Dropout` module does it (only while gradients are recorded), with the
/// mask from [`ModelBackend::dropout_mask`]: burn draws it one element at a time on the CPU.
pub fn dropout<B: ModelBackend, const D: usize>(
    module: &burn::nn::Dropout,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    if module.prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = 1.0 - module.prob;
    let mask = B::dropout_mask(x.shape(), keep, x.dtype().into(), &x.device());
    let mask = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(mask)).reshape(x.shape());
    x * mask
}
