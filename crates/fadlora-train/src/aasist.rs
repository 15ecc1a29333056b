//! The AASIST back end of SSL_Anti-spoofing (Tak et al. 2022, "Automatic speaker verification
//! spoofing and deepfake detection using wav2vec 2.0 and data augmentation"; AASIST itself is
//! Jung et al., ICASSP 2022): a projection of the wav2vec2 output, a 2-D residual encoder,
//! spectral and temporal graph attention, heterogeneous stacking graph attention with master
//! nodes, graph pooling, and a linear layer to 2 logits.
//!
//! Every module carries the name of its counterpart in SSL_Anti-spoofing's `model.py`, in
//! snake case (`GAT_layer_S` is `gat_layer_s`); [`AasistHead::load_pytorch`] maps a state
//! dict saved from that code onto it. Two of that code's quirks are kept, because weights
//! trained with it rely on them: each residual block but the first has a `bn1` whose output
//! is discarded (the first convolution reads the block's input), and the four heterogeneous
//! layers and their pools all use the third temperature and pool ratio.
//!
//! Dropout and BatchNorm follow burn's convention: active (batch statistics, running
//! statistics updated) on an autodiff backend, off (running statistics) otherwise, which is
//! PyTorch's `train()` / `eval()`.

use std::path::Path;

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::{selu, sigmoid, softmax, tanh};
use burn::tensor::module::max_pool2d;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::TrainError;

/// The sizes of the back end; the defaults are SSL_Anti-spoofing's.
#[derive(Config, Debug)]
pub struct AasistConfig {
    /// Width of the features it reads: the wav2vec2 hidden size (1024 for XLS-R 300M).
    pub input_width: usize,
    /// Output width of the input projection `LL` (`filts[0]`). The spectral axis of the
    /// encoder is this width max-pooled by 3, and `pos_S` has one row per spectral node.
    #[config(default = 128)]
    pub proj_width: usize,
    /// Input and output channels of the residual blocks (`filts[1..]`); the encoder repeats
    /// the last pair twice more, as SSL_Anti-spoofing's does.
    #[config(default = "vec![[1, 32], [32, 32], [32, 64], [64, 64]]")]
    pub filts: Vec<[usize; 2]>,
    /// Widths of the graph attention layers and of the heterogeneous ones.
    #[config(default = "[64, 32]")]
    pub gat_dims: [usize; 2],
    /// Kept fractions of nodes: spectral pool, temporal pool, heterogeneous pools (the fourth
    /// is unused, as in SSL_Anti-spoofing).
    #[config(default = "[0.5, 0.5, 0.5, 0.5]")]
    pub pool_ratios: [f64; 4],
    /// Attention temperatures: spectral layer, temporal layer, heterogeneous layers (the
    /// fourth is unused, as in SSL_Anti-spoofing).
    #[config(default = "[2.0, 2.0, 100.0, 100.0]")]
    pub temperatures: [f64; 4],
}

/// A 2-D residual block (`Residual_block`): two `(2, 3)` convolutions that keep the spatial
/// size, and a `(1, 3)` convolution on the shortcut when the channel count changes.
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    /// Present in every block but the first and, as in SSL_Anti-spoofing, without effect on
    /// the output (see the module documentation).
    pub bn1: Option<BatchNorm<B>>,
    pub conv1: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub conv_downsample: Option<Conv2d<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    fn new(filts: [usize; 2], first: bool, device: &B::Device) -> Self {
        let [inp, out] = filts;
        Self {
            bn1: (!first).then(|| BatchNormConfig::new(inp).init(device)),
            conv1: Conv2dConfig::new([inp, out], [2, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn2: BatchNormConfig::new(out).init(device),
            conv2: Conv2dConfig::new([out, out], [2, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1))
                .init(device),
            conv_downsample: (inp != out).then(|| {
                Conv2dConfig::new([inp, out], [1, 3])
                    .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1))
                    .init(device)
            }),
        }
    }

    /// `[batch, in, height, width]` -> `[batch, out, height, width]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self.conv1.forward(x.clone());
        let out = self.conv2.forward(selu(self.bn2.forward(out)));
        let identity = match &self.conv_downsample {
            Some(conv) => conv.forward(x),
            None => x,
        };
        out + identity
    }
}

/// The 1x1 convolutions that weigh the encoder output along each axis (`attention`, a
/// `Sequential` of `Conv2d`, `SELU`, `BatchNorm2d`, `Conv2d`: indices 0, 2, 3 there).
#[derive(Module, Debug)]
pub struct AxisAttention<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn: BatchNorm<B>,
    pub conv2: Conv2d<B>,
}

impl<B: Backend> AxisAttention<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv2
            .forward(self.bn.forward(selu(self.conv1.forward(x))))
    }
}

fn xavier_normal_column<B: Backend>(rows: usize, device: &B::Device) -> Param<Tensor<B, 2>> {
    // PyTorch's xavier_normal_ of a `[rows, 1]` tensor: fan_in 1, fan_out rows.
    Initializer::Normal {
        mean: 0.0,
        std: (2.0 / (rows as f64 + 1.0)).sqrt(),
    }
    .init([rows, 1], device)
}

/// `[.., in]` times a `[in, 1]` column -> `[..]` with the last axis summed away.
fn dot_column<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    column: &Param<Tensor<B, 2>>,
) -> Tensor<B, D> {
    let width = column.dims()[0];
    let mut shape = [1usize; D];
    shape[D - 1] = width;
    (x * column.val().reshape(shape)).sum_dim(D - 1)
}

/// All pairwise elementwise products of nodes: `[b, n, d]` -> `[b, n, n, d]`.
fn pairwise_products<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 4> {
    x.clone().unsqueeze_dim::<4>(2) * x.unsqueeze_dim::<4>(1)
}

/// BatchNorm1d over the feature axis of `[b, n, d]`, every node a sample.
fn node_batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    bn.forward(x.reshape([b * n, d])).reshape([b, n, d])
}

/// Graph attention over one node type (`GraphAttentionLayer`).
#[derive(Module, Debug)]
pub struct GraphAttentionLayer<B: Backend> {
    pub att_proj: Linear<B>,
    pub att_weight: Param<Tensor<B, 2>>,
    pub proj_with_att: Linear<B>,
    pub proj_without_att: Linear<B>,
    pub bn: BatchNorm<B>,
    pub input_drop: Dropout,
    pub temp: f64,
}

impl<B: Backend> GraphAttentionLayer<B> {
    fn new(in_dim: usize, out_dim: usize, temp: f64, device: &B::Device) -> Self {
        Self {
            att_proj: LinearConfig::new(in_dim, out_dim).init(device),
            att_weight: xavier_normal_column(out_dim, device),
            proj_with_att: LinearConfig::new(in_dim, out_dim).init(device),
            proj_without_att: LinearConfig::new(in_dim, out_dim).init(device),
            bn: BatchNormConfig::new(out_dim).init(device),
            input_drop: DropoutConfig::new(0.2).init(),
            temp,
        }
    }

    /// `[batch, nodes, in]` -> `[batch, nodes, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.input_drop.forward(x);
        let att = tanh(self.att_proj.forward(pairwise_products(x.clone())));
        let [b, n, _, _] = att.dims();
        let att = dot_column(att, &self.att_weight).reshape([b, n, n]);
        let att = softmax(att / self.temp, 2);
        let x =
            self.proj_with_att.forward(att.matmul(x.clone())) + self.proj_without_att.forward(x);
        selu(node_batch_norm(&self.bn, x))
    }
}

/// Heterogeneous stacking graph attention over two node types and a master node
/// (`HtrgGraphAttentionLayer`).
#[derive(Module, Debug)]
pub struct HtrgGraphAttentionLayer<B: Backend> {
    pub proj_type1: Linear<B>,
    pub proj_type2: Linear<B>,
    pub att_proj: Linear<B>,
    pub att_proj_m: Linear<B>,
    pub att_weight11: Param<Tensor<B, 2>>,
    pub att_weight22: Param<Tensor<B, 2>>,
    pub att_weight12: Param<Tensor<B, 2>>,
    pub att_weight_m: Param<Tensor<B, 2>>,
    pub proj_with_att: Linear<B>,
    pub proj_without_att: Linear<B>,
    pub proj_with_att_m: Linear<B>,
    pub proj_without_att_m: Linear<B>,
    pub bn: BatchNorm<B>,
    pub input_drop: Dropout,
    pub temp: f64,
}

impl<B: Backend> HtrgGraphAttentionLayer<B> {
    fn new(in_dim: usize, out_dim: usize, temp: f64, device: &B::Device) -> Self {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Self {
            proj_type1: linear(in_dim, in_dim),
            proj_type2: linear(in_dim, in_dim),
            att_proj: linear(in_dim, out_dim),
            att_proj_m: linear(in_dim, out_dim),
            att_weight11: xavier_normal_column(out_dim, device),
            att_weight22: xavier_normal_column(out_dim, device),
            att_weight12: xavier_normal_column(out_dim, device),
            att_weight_m: xavier_normal_column(out_dim, device),
            proj_with_att: linear(in_dim, out_dim),
            proj_without_att: linear(in_dim, out_dim),
            proj_with_att_m: linear(in_dim, out_dim),
            proj_without_att_m: linear(in_dim, out_dim),
            bn: BatchNormConfig::new(out_dim).init(device),
            input_drop: DropoutConfig::new(0.2).init(),
            temp,
        }
    }

    /// `x1` `[b, n1, in]`, `x2` `[b, n2, in]`, `master` `[b, 1, in]` -> the same with width
    /// `out`.
    pub fn forward(
        &self,
        x1: Tensor<B, 3>,
        x2: Tensor<B, 3>,
        master: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let n1 = x1.dims()[1];
        let n2 = x2.dims()[1];
        let x = Tensor::cat(
            vec![self.proj_type1.forward(x1), self.proj_type2.forward(x2)],
            1,
        );
        let x = self.input_drop.forward(x);
        let [b, n, _] = x.dims();

        // Node-to-node attention: one weight vector per pair of node types, the mixed pairs
        // sharing `att_weight12` both ways.
        let att = tanh(self.att_proj.forward(pairwise_products(x.clone())));
        let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, w| {
            let (r, c) = (rows.len(), cols.len());
            let width = att.dims()[3];
            dot_column(att.clone().slice([0..b, rows, cols, 0..width]), w).reshape([b, r, c])
        };
        let top = Tensor::cat(
            vec![
                block(0..n1, 0..n1, &self.att_weight11),
                block(0..n1, n1..n, &self.att_weight12),
            ],
            2,
        );
        let bottom = Tensor::cat(
            vec![
                block(n1..n, 0..n1, &self.att_weight12),
                block(n1..n, n1..n, &self.att_weight22),
            ],
            2,
        );
        let att = softmax(Tensor::cat(vec![top, bottom], 1) / self.temp, 2);

        // The master node attends to every node.
        let att_m = tanh(self.att_proj_m.forward(x.clone() * master.clone()));
        let att_m = softmax(dot_column(att_m, &self.att_weight_m) / self.temp, 1);
        let master = self
            .proj_with_att_m
            .forward(att_m.swap_dims(1, 2).matmul(x.clone()))
            + self.proj_without_att_m.forward(master);

        let x =
            self.proj_with_att.forward(att.matmul(x.clone())) + self.proj_without_att.forward(x);
        let x = selu(node_batch_norm(&self.bn, x));
        let width = x.dims()[2];
        let x1 = x.clone().slice([0..b, 0..n1, 0..width]);
        let x2 = x.slice([0..b, n1..n1 + n2, 0..width]);
        (x1, x2, master)
    }
}

/// Keeps the highest-scoring fraction of nodes, scaled by their scores (`GraphPool`).
#[derive(Module, Debug)]
pub struct GraphPool<B: Backend> {
    pub proj: Linear<B>,
    pub drop: Dropout,
    pub k: f64,
}

impl<B: Backend> GraphPool<B> {
    fn new(k: f64, in_dim: usize, p: f64, device: &B::Device) -> Self {
        Self {
            proj: LinearConfig::new(in_dim, 1).init(device),
            drop: DropoutConfig::new(p).init(),
            k,
        }
    }

    /// `[b, n, d]` -> `[b, max(floor(n k), 1), d]`, nodes in descending score order (as
    /// `torch.topk` returns them: the element-wise maximum of two pooled graphs depends on it).
    pub fn forward(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, d] = h.dims();
        let scores = sigmoid(self.proj.forward(self.drop.forward(h.clone())));
        let keep = ((n as f64 * self.k) as usize).max(1);
        let idx = scores
            .clone()
            .detach()
            .reshape([b, n])
            .argsort_descending(1)
            .slice([0..b, 0..keep])
            .reshape([b, keep, 1])
            .repeat_dim(2, d);
        (h * scores).gather(1, idx)
    }
}

/// The AASIST back end: `[batch, frames, input_width]` -> logits `[batch, 2]`.
#[derive(Module, Debug)]
pub struct AasistHead<B: Backend> {
    /// `LL`.
    pub ll: Linear<B>,
    pub first_bn: BatchNorm<B>,
    pub first_bn1: BatchNorm<B>,
    pub drop: Dropout,
    pub drop_way: Dropout,
    pub encoder: Vec<ResidualBlock<B>>,
    pub attention: AxisAttention<B>,
    /// `pos_S` `[1, spectral nodes, channels]`.
    pub pos_s: Param<Tensor<B, 3>>,
    pub master1: Param<Tensor<B, 3>>,
    pub master2: Param<Tensor<B, 3>>,
    pub gat_layer_s: GraphAttentionLayer<B>,
    pub gat_layer_t: GraphAttentionLayer<B>,
    pub htrg_gat_layer_st11: HtrgGraphAttentionLayer<B>,
    pub htrg_gat_layer_st12: HtrgGraphAttentionLayer<B>,
    pub htrg_gat_layer_st21: HtrgGraphAttentionLayer<B>,
    pub htrg_gat_layer_st22: HtrgGraphAttentionLayer<B>,
    pub pool_s: GraphPool<B>,
    pub pool_t: GraphPool<B>,
    pub pool_hs1: GraphPool<B>,
    pub pool_ht1: GraphPool<B>,
    pub pool_hs2: GraphPool<B>,
    pub pool_ht2: GraphPool<B>,
    pub out_layer: Linear<B>,
}

/// Frames the max-pool by 3 needs to leave one temporal node.
pub const AASIST_MIN_FRAMES: usize = 3;

impl AasistConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> AasistHead<B> {
        let filts = &self.filts;
        assert!(
            !filts.is_empty(),
            "AASIST needs at least one residual block"
        );
        let last = *filts.last().expect("checked");
        let mut encoder = Vec::with_capacity(filts.len() + 2);
        for (i, &f) in filts.iter().chain([last, last].iter()).enumerate() {
            encoder.push(ResidualBlock::new(f, i == 0, device));
        }
        let channels = last[1];
        let [g0, g1] = self.gat_dims;
        let [k_s, k_t, k_h, _] = self.pool_ratios;
        let [t_s, t_t, t_h, _] = self.temperatures;
        let normal = |shape: [usize; 3]| {
            Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            }
            .init(shape, device)
        };
        let conv1x1 = |i, o| Conv2dConfig::new([i, o], [1, 1]).init(device);
        AasistHead {
            ll: LinearConfig::new(self.input_width, self.proj_width).init(device),
            first_bn: BatchNormConfig::new(1).init(device),
            first_bn1: BatchNormConfig::new(channels).init(device),
            drop: DropoutConfig::new(0.5).init(),
            drop_way: DropoutConfig::new(0.2).init(),
            encoder,
            attention: AxisAttention {
                conv1: conv1x1(channels, 2 * channels),
                bn: BatchNormConfig::new(2 * channels).init(device),
                conv2: conv1x1(2 * channels, channels),
            },
            pos_s: normal([1, self.proj_width / 3, channels]),
            master1: normal([1, 1, g0]),
            master2: normal([1, 1, g0]),
            gat_layer_s: GraphAttentionLayer::new(channels, g0, t_s, device),
            gat_layer_t: GraphAttentionLayer::new(channels, g0, t_t, device),
            htrg_gat_layer_st11: HtrgGraphAttentionLayer::new(g0, g1, t_h, device),
            htrg_gat_layer_st12: HtrgGraphAttentionLayer::new(g1, g1, t_h, device),
            htrg_gat_layer_st21: HtrgGraphAttentionLayer::new(g0, g1, t_h, device),
            htrg_gat_layer_st22: HtrgGraphAttentionLayer::new(g1, g1, t_h, device),
            pool_s: GraphPool::new(k_s, g0, 0.3, device),
            pool_t: GraphPool::new(k_t, g0, 0.3, device),
            pool_hs1: GraphPool::new(k_h, g1, 0.3, device),
            pool_ht1: GraphPool::new(k_h, g1, 0.3, device),
            pool_hs2: GraphPool::new(k_h, g1, 0.3, device),
            pool_ht2: GraphPool::new(k_h, g1, 0.3, device),
            out_layer: LinearConfig::new(5 * g1, 2).init(device),
        }
    }
}

impl<B: Backend> AasistHead<B> {
    /// `hidden` `[batch, frames, input_width]` (frames >= [`AASIST_MIN_FRAMES`]) -> logits
    /// `[batch, 2]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, _] = hidden.dims();
        let x = self
            .ll
            .forward(hidden)
            .swap_dims(1, 2)
            .unsqueeze_dim::<4>(1);
        let x = max_pool2d(x, [3, 3], [3, 3], [0, 0], [1, 1], false);
        let mut x = selu(self.first_bn.forward(x));
        for block in &self.encoder {
            x = block.forward(x);
        }
        let x = selu(self.first_bn1.forward(x));
        let [_, channels, spectral, temporal] = x.dims();
        let w = self.attention.forward(x.clone());

        // Spectral nodes: the encoder output weighed over time.
        let m = (x.clone() * softmax(w.clone(), 3))
            .sum_dim(3)
            .reshape([batch, channels, spectral]);
        let e_s = m.swap_dims(1, 2) + self.pos_s.val();
        let out_s = self.pool_s.forward(self.gat_layer_s.forward(e_s));

        // Temporal nodes: weighed over the spectral axis.
        let m = (x * softmax(w, 2))
            .sum_dim(2)
            .reshape([batch, channels, temporal]);
        let out_t = self
            .pool_t
            .forward(self.gat_layer_t.forward(m.swap_dims(1, 2)));

        let branch = |master: &Param<Tensor<B, 3>>,
                      first: &HtrgGraphAttentionLayer<B>,
                      second: &HtrgGraphAttentionLayer<B>,
                      pool_s: &GraphPool<B>,
                      pool_t: &GraphPool<B>| {
            let width = master.dims()[2];
            let master = master.val().expand([batch, 1, width]);
            let (t, s, master) = first.forward(out_t.clone(), out_s.clone(), master);
            let (s, t) = (pool_s.forward(s), pool_t.forward(t));
            let (t_aug, s_aug, master_aug) = second.forward(t.clone(), s.clone(), master.clone());
            (
                self.drop_way.forward(t + t_aug),
                self.drop_way.forward(s + s_aug),
                self.drop_way.forward(master + master_aug),
            )
        };
        let (t1, s1, m1) = branch(
            &self.master1,
            &self.htrg_gat_layer_st11,
            &self.htrg_gat_layer_st12,
            &self.pool_hs1,
            &self.pool_ht1,
        );
        let (t2, s2, m2) = branch(
            &self.master2,
            &self.htrg_gat_layer_st21,
            &self.htrg_gat_layer_st22,
            &self.pool_hs2,
            &self.pool_ht2,
        );
        let (out_t, out_s, master) = (t1.max_pair(t2), s1.max_pair(s2), m1.max_pair(m2));

        // Readout: max of |nodes| and mean of nodes per type, and the master node.
        let readout = Tensor::cat(
            vec![
                out_t.clone().abs().max_dim(1),
                out_t.mean_dim(1),
                out_s.clone().abs().max_dim(1),
                out_s.mean_dim(1),
                master,
            ],
            2,
        );
        let width = readout.dims()[2];
        let readout = self.drop.forward(readout.reshape([batch, width]));
        self.out_layer.forward(readout)
    }

    /// Makes the running statistics of every BatchNorm current: a training step's update
    /// reaches them only at the next forward pass or `valid()`, and checkpoints read them
    /// directly.
    pub fn sync_running_stats(&self) {
        let _ = self.clone().into_record();
    }

    /// Loads a safetensors state dict with SSL_Anti-spoofing's names (`LL.weight`,
    /// `encoder.0.0.conv1.weight`, `GAT_layer_S.att_weight`, ...; `ssl_model.*` aside), as
    /// PyTorch stores them (Linear weights `[out, in]`, BatchNorm `weight`/`bias`). Every
    /// tensor of the head must be in the file with its shape; an error names each one that
    /// is missing, misshapen or has no place in the head.
    pub fn load_pytorch(mut self, file: &Path) -> Result<Self, TrainError> {
        load_pytorch_head(&mut self, file, PYTORCH_NAMES, "the AASIST head")?;
        Ok(self)
    }
}

/// Loads a classifier head from a safetensors state dict as PyTorch writes it (Linear weights
/// `[out, in]`, BatchNorm `weight`/`bias`), its keys renamed by `names` (regular expressions,
/// applied in order); the file's `ssl_model.*` (the front end) and BatchNorm's
/// `num_batches_tracked` (PyTorch counts updates; burn keeps no such state) are set aside. Every
/// tensor of the head must be in the file with its shape: the error names `what` and each tensor
/// that is missing, misshapen or has no place in the head.
pub(crate) fn load_pytorch_head<B: Backend, M: ModuleSnapshot<B>>(
    head: &mut M,
    file: &Path,
    names: &[(&str, &str)],
    what: &str,
) -> Result<(), TrainError> {
    let mut store = SafetensorsStore::from_file(file)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    for (from, to) in names {
        store = store.with_key_remapping(*from, *to);
    }
    let result = head
        .load_from(&mut store)
        .map_err(|e| TrainError::Checkpoint {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
    let unused: Vec<_> = result
        .unused
        .iter()
        .filter(|p| !p.ends_with("num_batches_tracked") && !p.starts_with("ssl_model."))
        .collect();
    let missing: Vec<_> = result.missing.iter().map(|(p, _)| p).collect();
    if !result.errors.is_empty() || !unused.is_empty() || !missing.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(TrainError::Checkpoint {
            path: file.to_path_buf(),
            message: format!(
                "does not fit {what}: errors {errors:?}, missing {missing:?}, tensors with no \
                 place in the head {unused:?}"
            ),
        });
    }
    Ok(())
}

/// SSL_Anti-spoofing's module names -> this module's (regular expressions, applied in order).
const PYTORCH_NAMES: &[(&str, &str)] = &[
    (r"^LL\.", "ll."),
    // `encoder` nests each block in a one-element Sequential.
    (r"^encoder\.(\d+)\.0\.", "encoder.$1."),
    (r"^attention\.0\.", "attention.conv1."),
    (r"^attention\.2\.", "attention.bn."),
    (r"^attention\.3\.", "attention.conv2."),
    (r"^pos_S$", "pos_s"),
    (r"^GAT_layer_S\.", "gat_layer_s."),
    (r"^GAT_layer_T\.", "gat_layer_t."),
    (r"^HtrgGAT_layer_ST(\d+)\.", "htrg_gat_layer_st$1."),
    (r"^pool_S\.", "pool_s."),
    (r"^pool_T\.", "pool_t."),
    (r"^pool_hS(\d+)\.", "pool_hs$1."),
    (r"^pool_hT(\d+)\.", "pool_ht$1."),
    (r"\.att_projM\.", ".att_proj_m."),
    (r"\.att_weightM$", ".att_weight_m"),
    (r"\.proj_with_attM\.", ".proj_with_att_m."),
    (r"\.proj_without_attM\.", ".proj_without_att_m."),
    // BatchNorm's affine parameters by burn's names: the adapter finds them under PyTorch's
    // too, but burn-store 0.21 then still lists the file's names as unused.
    (r"^((?:.*\.)?(?:bn\d?|first_bn1?))\.weight$", "$1.gamma"),
    (r"^((?:.*\.)?(?:bn\d?|first_bn1?))\.bias$", "$1.beta"),
];
