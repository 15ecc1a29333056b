//! A mixture of LoRA experts on one projection: `K` low-rank adapters and a router that weighs
//! them per token, `y = x W + b + s * sum_k g_k(x) B_k(A_k(dropout(x)))` with
//! `g(x) = softmax(x R)` (soft routing) or that softmax kept at its largest entry only (top-1,
//! Switch Transformer routing). Every `B_k` starts at zero, so an adapted model starts exactly
//! at the pretrained one, as with one adapter.
//!
//! The experts sit side by side in two matrices (`A` `[d_in, K r]`, `B` `[K r, d_out]`), so the
//! whole mixture costs two matmuls: the gates, repeated over each expert's `r` columns, scale
//! the down-projection between them. A router depends on its input, so the mixture never folds
//! into the base weight; it stays a separate path at inference.
//!
//! During a training forward pass each mixture leaves its load-balancing term in a
//! [`BalanceSink`] shared by every mixture of the model; the trainer takes their weighted mean
//! after each forward pass ([`crate::Wav2Vec2Model::take_balance_loss`]).

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::FloatDType;

use super::layer::{kaiming_uniform, LoraLinearConfig};
use crate::ops::{dropout, ModelBackend};
pub use fadlora_run::MoeRouting;

/// The experts, router and loss of every mixture (`[lora.moe]`); the rank, scaling, dropout
/// and placement are the surrounding [`super::LoraConfig`]'s.
#[derive(Config, Debug, PartialEq)]
pub struct MoeConfig {
    /// `K`: adapters per projection (at least 2).
    #[config(default = 4)]
    pub experts: usize,
    #[config(default = "MoeRouting::Soft")]
    pub routing: MoeRouting,
    /// Weight of the load-balancing loss in the training loss (0 = off).
    #[config(default = 0.01)]
    pub balance_loss: f64,
}

/// Where the mixtures of one model leave their load-balancing terms during a training forward
/// pass. Clones share the terms: every mixture of a model holds a clone of the same sink.
/// Terms are kept type-erased because the sink is not a module (it holds no parameters) and
/// so cannot be generic over the backend.
#[derive(Clone, Default)]
pub struct BalanceSink(Arc<Mutex<Vec<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for BalanceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BalanceSink")
    }
}

impl BalanceSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Any + Send>>> {
        // The terms are valid whatever a panicking holder was doing.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push<B: Backend>(&self, term: Tensor<B, 1>) {
        self.lock().push(Box::new(term));
    }

    /// The mean of the terms left since the last call, and forgets them; `None` if there
    /// were none (an inference pass, or a model without mixtures).
    pub fn take_mean<B: Backend>(&self) -> Option<Tensor<B, 1>> {
        let terms: Vec<Tensor<B, 1>> = self
            .lock()
            .drain(..)
            .filter_map(|t| t.downcast::<Tensor<B, 1>>().ok().map(|t| *t))
            .collect();
        let count = terms.len();
        let sum = terms.into_iter().reduce(|a, b| a + b)?;
        Some(sum / count as f64)
    }
}

impl MoeConfig {
    /// Fresh experts for the projection `lora` describes (its shape, rank, scaling and
    /// dropout): each `A_k` as one LoRA `A` (U(-1/sqrt(d_in), 1/sqrt(d_in))), every `B_k` zero,
    /// and the router as a bias-free `nn.Linear(d_in, K)` (the same uniform), so that the
    /// experts' gates differ from the start. Lazily initialised and trainable.
    pub fn init<B: Backend>(
        &self,
        lora: &LoraLinearConfig,
        sink: BalanceSink,
        device: &B::Device,
    ) -> MoeLora<B> {
        lora.assert_rank();
        let (d_input, width) = (lora.d_input, self.experts * lora.rank);
        let uniform = kaiming_uniform();
        MoeLora {
            router: uniform.init_with(
                [d_input, self.experts],
                Some(d_input),
                Some(self.experts),
                device,
            ),
            a: uniform.init_with([d_input, width], Some(d_input), Some(width), device),
            b: Initializer::Zeros.init([width, lora.d_output], device),
            dropout: DropoutConfig::new(lora.dropout).init(),
            scaling: lora.scaling(),
            experts: self.experts,
            routing: self.routing,
            sink,
        }
    }
}

/// The experts and router of one projection.
#[derive(Module, Debug)]
pub struct MoeLora<B: Backend> {
    /// `R` `[d_input, experts]`: the router's logits are `x R`.
    pub router: Param<Tensor<B, 2>>,
    /// Every expert's `A`, side by side: `[d_input, experts * rank]` (expert `k` owns columns
    /// `k r .. (k + 1) r`).
    pub a: Param<Tensor<B, 2>>,
    /// Every expert's `B`, stacked: `[experts * rank, d_output]` (expert `k` owns rows
    /// `k r .. (k + 1) r`).
    pub b: Param<Tensor<B, 2>>,
    pub dropout: Dropout,
    pub scaling: f64,
    pub experts: usize,
    #[module(skip)]
    pub routing: MoeRouting,
    #[module(skip)]
    pub sink: BalanceSink,
}

impl<B: Backend> MoeLora<B> {
    pub fn rank(&self) -> usize {
        self.a.lazy_shape().dims::<2>()[1] / self.experts
    }

    /// The router's probabilities `[tokens, experts]` (f32) for tokens `x` `[tokens, d_input]`.
    pub fn probabilities(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let logits = x.clone().matmul(self.router.val().cast(x.dtype()));
        softmax(logits.cast(FloatDType::F32), 1)
    }

    /// Each token's gates `[tokens, experts]` from its probabilities: all of them (soft), or
    /// the largest alone (top-1), as `(gates, one-hot choice of the top expert)`.
    fn gates(&self, probs: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let dims = probs.dims();
        let top = probs.clone().max_dim(1).expand(dims);
        let chosen = probs.clone().greater_equal(top);
        let one_hot = chosen.clone().float().detach();
        let gates = match self.routing {
            MoeRouting::Soft => probs,
            MoeRouting::Top1 => probs.mask_fill(chosen.bool_not(), 0.0),
        };
        (gates, one_hot)
    }
}

/// The Switch Transformer's load-balancing loss `K * sum_k f_k P_k`: `f_k` the share of tokens
/// whose top expert is `k` (no gradient), `P_k` the mean router probability of `k`. It is 1 when
/// both are uniform and grows as the router favours a few experts.
pub fn balance_loss<B: Backend>(probs: Tensor<B, 2>, one_hot: Tensor<B, 2>) -> Tensor<B, 1> {
    let [tokens, experts] = probs.dims();
    let share = one_hot.sum_dim(0) / tokens as f64;
    let mean_prob = probs.sum_dim(0) / tokens as f64;
    (share * mean_prob).sum() * experts as f64
}

impl<B: ModelBackend> MoeLora<B> {
    /// `s * sum_k g_k(x) B_k(A_k(dropout(x)))` for tokens `x` `[tokens, d_input]`, in `x`'s
    /// float type; in training it also leaves this call's load-balancing term in the sink.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let dtype = x.dtype();
        let [tokens, _] = x.dims();
        let probs = self.probabilities(x.clone());
        let (gates, one_hot) = self.gates(probs.clone());
        if B::ad_enabled(&x.device()) {
            self.sink.push(balance_loss(probs, one_hot));
        }
        let rank = self.rank();
        let gates = gates
            .cast(dtype)
            .unsqueeze_dim::<3>(2)
            .expand([tokens, self.experts, rank])
            .reshape([tokens, self.experts * rank]);
        let down = dropout(&self.dropout, x).matmul(self.a.val().cast(dtype));
        (down * gates).matmul((self.b.val() * self.scaling).cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = Flex;

    fn mixture(routing: MoeRouting) -> MoeLora<B> {
        let device = Default::default();
        let mut moe = MoeConfig::new()
            .with_experts(3)
            .with_routing(routing)
            .init::<B>(
                &LoraLinearConfig::new(5, 4, 2, 4.0),
                BalanceSink::default(),
                &device,
            );
        moe.b = Param::from_tensor(Tensor::random([6, 4], Distribution::Default, &device));
        moe
    }

    /// The mixture written out expert by expert, with an explicit loop over tokens: the
    /// block-matrix form above must agree with it.
    fn by_hand(moe: &MoeLora<B>, x: Tensor<B, 2>) -> Vec<f32> {
        let probs: Vec<f32> = moe.probabilities(x.clone()).into_data().to_vec().unwrap();
        let [tokens, _] = x.dims();
        let (k, r) = (moe.experts, moe.rank());
        let mut out = vec![0f32; tokens * 4];
        for t in 0..tokens {
            let row = &probs[t * k..(t + 1) * k];
            let top = (0..k).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
            let xt = x.clone().slice([t..t + 1, 0..5]);
            for (e, &prob) in row.iter().enumerate() {
                let gate = match moe.routing {
                    MoeRouting::Soft => prob,
                    MoeRouting::Top1 if e == top => prob,
                    MoeRouting::Top1 => 0.0,
                };
                let a = moe.a.val().slice([0..5, e * r..(e + 1) * r]);
                let b = moe.b.val().slice([e * r..(e + 1) * r, 0..4]);
                let y: Vec<f32> = (xt.clone().matmul(a).matmul(b) * (moe.scaling * gate as f64))
                    .into_data()
                    .to_vec()
                    .unwrap();
                for (o, v) in out[t * 4..(t + 1) * 4].iter_mut().zip(y) {
                    *o += v;
                }
            }
        }
        out
    }

    #[test]
    fn block_form_matches_the_experts_summed_one_by_one() {
        let device = Default::default();
        let x = Tensor::<B, 2>::random([7, 5], Distribution::Default, &device);
        for routing in MoeRouting::ALL {
            let moe = mixture(routing);
            let expected = by_hand(&moe, x.clone());
            moe.forward(x.clone()).into_data().assert_approx_eq::<f32>(
                &TensorData::new(expected, [7, 4]),
                Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn balance_loss_is_one_when_uniform_and_k_when_collapsed() {
        let device = Default::default();
        let uniform = Tensor::<B, 2>::from_floats([[0.5, 0.5], [0.5, 0.5]], &device);
        let alternating = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        let loss = balance_loss(uniform, alternating).into_scalar();
        assert!((loss - 1.0).abs() < 1e-6, "{loss}");
        let collapsed = Tensor::<B, 2>::from_floats([[1.0, 0.0], [1.0, 0.0]], &device);
        let loss = balance_loss(collapsed.clone(), collapsed).into_scalar();
        assert!((loss - 2.0).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn training_passes_leave_their_terms_and_inference_passes_none() {
        type AB = Autodiff<B>;
        let device = Default::default();
        let sink = BalanceSink::default();
        let moe = MoeConfig::new().init::<AB>(
            &LoraLinearConfig::new(5, 4, 2, 4.0),
            sink.clone(),
            &device,
        );
        let x = Tensor::<AB, 2>::random([6, 5], Distribution::Default, &device);
        let out = moe.forward(x.clone());
        let _ = moe.forward(x.clone());
        let term = sink.take_mean::<AB>().expect("two training terms");
        assert!(sink.take_mean::<AB>().is_none(), "taking forgets them");
        // The router learns through the balance term; B through the output (A's gradient is
        // zero while B is).
        let grads = (out.sum() + term).backward();
        assert!(moe.router.grad(&grads).is_some());
        assert!(moe.b.grad(&grads).is_some());
        let inner = burn::module::AutodiffModule::valid(&moe);
        let _ = inner.forward(x.inner());
        assert!(sink.take_mean::<B>().is_none());
    }
}
