//! One adapted linear layer: `x W + b` plus the low-rank update `s * B(A(dropout(x)))`, or
//! its weight-decomposed form (DoRA, Liu et al. 2024) with a learned magnitude per output.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use super::ia3::Ia3;
use super::moe::MoeLora;
use crate::ops::{dropout, ModelBackend};
use crate::tokens::{flatten_tokens, linear_2d, unflatten_tokens};

/// [`LoraLinear::merge`] would give a weight with a NaN or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the merged weight would hold a NaN or an infinity")]
pub struct NonFiniteMerge;

/// torch's `kaiming_uniform_(a = sqrt(5))`, `nn.Linear`'s default and PEFT's for `A`:
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub(super) fn kaiming_uniform() -> Initializer {
    Initializer::KaimingUniform {
        gain: 1.0 / 3f64.sqrt(),
        fan_out_only: false,
    }
}

/// `alpha / r`, or `alpha / sqrt(r)` with rank-stabilised scaling.
pub(super) fn scaling(alpha: f64, rank: usize, use_rslora: bool) -> f64 {
    if use_rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    }
}

/// One adapter: `A` `[d_input, rank]` and `B` `[rank, d_output]` (burn's `[in, out]` layout,
/// the transposes of PEFT's `lora_A.weight` `[r, in]` and `lora_B.weight` `[out, r]`).
#[derive(Config, Debug)]
pub struct LoraLinearConfig {
    pub d_input: usize,
    pub d_output: usize,
    pub rank: usize,
    pub alpha: f64,
    #[config(default = 0.0)]
    pub dropout: f64,
    #[config(default = false)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA: a trainable magnitude per output column (PEFT's `use_dora`).
    #[config(default = false)]
    pub use_dora: bool,
}

impl LoraLinearConfig {
    pub fn scaling(&self) -> f64 {
        scaling(self.alpha, self.rank, self.use_rslora)
    }

    pub(super) fn assert_rank(&self) {
        assert!(
            self.rank >= 1,
            "LoRA rank must be at least 1 (the scaling alpha / r is undefined at 0)"
        );
    }

    /// A fresh adapter: `A` as torch's `kaiming_uniform_(a = sqrt(5))` (PEFT's default, i.e.
    /// U(-1/sqrt(d_in), 1/sqrt(d_in))), `B` zero. Lazily initialised and trainable.
    ///
    /// Panics on rank 0 (the scaling `alpha / r` is undefined), as PEFT refuses `r <= 0`; run
    /// configurations are validated before they get here.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Lora<B> {
        self.assert_rank();
        let a = kaiming_uniform().init_with(
            [self.d_input, self.rank],
            Some(self.d_input),
            Some(self.rank),
            device,
        );
        let b = Initializer::Zeros.init([self.rank, self.d_output], device);
        Lora {
            a,
            b,
            dropout: DropoutConfig::new(self.dropout).init(),
            scaling: self.scaling(),
            merged: false,
            magnitude: None,
            merged_norm: None,
        }
    }

    /// An adapter with the given `A` `[d_input, rank]` and `B` `[rank, d_output]` (trainable).
    pub fn init_with<B: Backend>(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Lora<B> {
        self.assert_rank();
        assert_eq!(a.dims(), [self.d_input, self.rank], "shape of A");
        assert_eq!(b.dims(), [self.rank, self.d_output], "shape of B");
        Lora {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            dropout: DropoutConfig::new(self.dropout).init(),
            scaling: self.scaling(),
            merged: false,
            magnitude: None,
            merged_norm: None,
        }
    }

    /// A fresh adapter for the base weight `weight` `[d_input, d_output]`; with DoRA its
    /// magnitude starts at the norm of each output column of `weight`, so that at init the
    /// layer still computes `x W + b` (B is zero). The magnitude is lazy: counting the
    /// parameters of a big model does not read or allocate its weights.
    pub fn init_for<B: Backend>(
        &self,
        weight: &Param<Tensor<B, 2>>,
        device: &B::Device,
    ) -> Lora<B> {
        let mut lora = self.init(device);
        if self.use_dora {
            let weight = weight.clone();
            lora.magnitude = Some(Param::uninitialized(
                burn::module::ParamId::new(),
                move |_, require_grad| {
                    column_norms(weight.val().detach()).set_require_grad(require_grad)
                },
                device.clone(),
                true,
                [self.d_output].into(),
            ));
        }
        lora
    }
}

/// The L2 norm of each column of `w` `[d_in, d_out]` (each output's weight vector: PyTorch's
/// `linalg.norm(W, dim=1)` on its `[out, in]` layout), computed in f32.
pub(crate) fn column_norms<B: Backend>(w: Tensor<B, 2>) -> Tensor<B, 1> {
    let [_, d_out] = w.dims();
    let w = w.cast(burn::tensor::FloatDType::F32);
    (w.clone() * w).sum_dim(0).sqrt().reshape([d_out])
}

/// The low-rank update `s * B(A(dropout(x)))` of one linear layer.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// `[d_input, rank]`.
    pub a: Param<Tensor<B, 2>>,
    /// `[rank, d_output]`.
    pub b: Param<Tensor<B, 2>>,
    pub dropout: Dropout,
    pub scaling: f64,
    /// Whether `s * A B` is currently folded into the base weight (then the adapter is skipped
    /// in `forward`).
    pub merged: bool,
    /// DoRA's magnitude `m` `[d_output]` (PEFT's `lora_magnitude_vector`): the adapted weight
    /// is `m * (W + s A B) / ||W + s A B||` per output column. `None` = plain LoRA.
    pub magnitude: Option<Param<Tensor<B, 1>>>,
    /// `||W + s A B||` per output column at the moment a DoRA adapter was merged, which the
    /// merged weight no longer determines; needed to unmerge. Frozen.
    pub merged_norm: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Lora<B> {
    pub fn rank(&self) -> usize {
        self.a.lazy_shape().dims::<2>()[1]
    }

    /// `s * dropout(x) A B` for tokens `x` `[tokens, d_input]`, in `x`'s float type. The
    /// scaling rides on `B` (`[rank, d_output]`), the smallest tensor on the path, rather than
    /// on the output.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>
    where
        B: ModelBackend,
    {
        let dtype = x.dtype();
        let down = dropout(&self.dropout, x).matmul(self.a.val().cast(dtype));
        down.matmul((self.b.val() * self.scaling).cast(dtype))
    }

    /// The update `s * A B` `[d_input, d_output]` this adapter adds to its layer's weight,
    /// outside the autodiff graph (PEFT's `get_delta_weight`, in burn's `[in, out]` layout).
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        (self.a.val().matmul(self.b.val()) * self.scaling).detach()
    }

    /// DoRA's factor `m / ||W + s A B||` `[d_output]` for base weight `weight`. As in PEFT
    /// (and the DoRA paper, section 4.3), the norm is treated as a constant: the gradient
    /// reaches `m` through the factor and `A`, `B` through the low-rank path only.
    fn dora_factor(&self, magnitude: &Param<Tensor<B, 1>>, weight: Tensor<B, 2>) -> Tensor<B, 1> {
        let adapted = weight.detach().cast(burn::tensor::FloatDType::F32) + self.delta_weight();
        magnitude.val() / column_norms(adapted)
    }
}

/// A linear layer `y = x W + b` (`W` `[d_in, d_out]`) that may carry a LoRA adapter. Without
/// one it is exactly burn's `Linear`, with the same parameter names, so checkpoints written
/// before and after adaptation share the paths of the base weights.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora: Option<Lora<B>>,
    /// An (IA)^3 rescaling instead of a low-rank update (a layer carries at most one of them).
    pub ia3: Option<Ia3<B>>,
    /// A mixture of low-rank experts instead of one adapter; it never merges.
    pub moe: Option<MoeLora<B>>,
}

impl<B: Backend> From<Linear<B>> for LoraLinear<B> {
    fn from(linear: Linear<B>) -> Self {
        Self {
            weight: linear.weight,
            bias: linear.bias,
            lora: None,
            ia3: None,
            moe: None,
        }
    }
}

impl LoraLinearConfig {
    /// Wraps `base`: freezes its weight and bias (no gradient is computed or kept for them) and
    /// adds a fresh adapter.
    pub fn wrap<B: Backend>(&self, base: Linear<B>, device: &B::Device) -> LoraLinear<B> {
        let [d_in, d_out] = base.weight.lazy_shape().dims();
        assert_eq!(
            (d_in, d_out),
            (self.d_input, self.d_output),
            "LoRA shape does not match the wrapped linear layer"
        );
        let weight = base.weight.set_require_grad(false);
        let lora = self.init_for(&weight, device);
        LoraLinear {
            weight,
            bias: base.bias.map(|b| b.set_require_grad(false)),
            lora: Some(lora),
            ia3: None,
            moe: None,
        }
    }
}

impl<B: Backend> LoraLinear<B> {
    /// Applies the layer to the last axis of `x`, in `x`'s float type, on tokens flattened
    /// as [`crate::tokens::linear_on_tokens`] does.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D>
    where
        B: ModelBackend,
    {
        let dims = x.dims();
        let x = flatten_tokens(x);
        if let Some(ia3) = self.ia3.as_ref().filter(|i| !i.merged) {
            return unflatten_tokens(self.ia3_forward(ia3, x), dims);
        }
        let base = linear_2d(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        if let Some(moe) = &self.moe {
            return unflatten_tokens(base + moe.forward(x), dims);
        }
        let y = match &self.lora {
            Some(lora) if !lora.merged => match &lora.magnitude {
                None => base + lora.forward(x),
                Some(magnitude) => self.dora_forward(lora, magnitude, x, base),
            },
            _ => base,
        };
        unflatten_tokens(y, dims)
    }

    /// `(x W + b) * l`, or `(x * l) W + b` for a feed-forward target.
    fn ia3_forward(&self, ia3: &Ia3<B>, x: Tensor<B, 2>) -> Tensor<B, 2>
    where
        B: ModelBackend,
    {
        let scale = ia3.scale.val().cast(x.dtype()).unsqueeze::<2>();
        let bias = self.bias.as_ref().map(|b| b.val());
        if ia3.feedforward {
            linear_2d(x * scale, self.weight.val(), bias)
        } else {
            linear_2d(x, self.weight.val(), bias) * scale
        }
    }

    /// Folds an (IA)^3 vector into `W` (columns for an output scaling, with the bias; rows
    /// for a feed-forward input scaling), as PEFT's `merge`.
    fn merge_ia3(&mut self) -> Result<(), NonFiniteMerge> {
        let Some(ia3) = self.ia3.as_mut().filter(|i| !i.merged) else {
            return Ok(());
        };
        let weight = self.weight.val();
        let scale = ia3.scale.val().detach().cast(weight.dtype());
        let merged = if ia3.feedforward {
            weight * scale.clone().unsqueeze_dim::<2>(1)
        } else {
            weight * scale.clone().unsqueeze_dim::<2>(0)
        };
        let merged_bias = match (&self.bias, ia3.feedforward) {
            (Some(bias), false) => Some(bias.val() * scale.cast(bias.val().dtype())),
            _ => None,
        };
        let finite = |t: Tensor<B, 2>| {
            !t.clone()
                .is_nan()
                .bool_or(t.is_inf())
                .any()
                .into_scalar()
                .to_bool()
        };
        if !finite(merged.clone())
            || merged_bias
                .as_ref()
                .is_some_and(|b| !finite(b.clone().unsqueeze()))
        {
            return Err(NonFiniteMerge);
        }
        self.weight = self.weight.clone().map(|w| {
            let require_grad = w.is_require_grad();
            merged.set_require_grad(require_grad)
        });
        if let (Some(bias), Some(new)) = (self.bias.as_mut(), merged_bias) {
            *bias = bias.clone().map(|b| {
                let require_grad = b.is_require_grad();
                new.set_require_grad(require_grad)
            });
        }
        ia3.merged = true;
        Ok(())
    }

    /// PEFT's DoRA forward: `base + (f - 1) * dropout(x) W + f * s * dropout(x) A B` with
    /// `f = m / ||W + s A B||`; without dropout, `dropout(x) W` is the base output less its bias.
    fn dora_forward(
        &self,
        lora: &Lora<B>,
        magnitude: &Param<Tensor<B, 1>>,
        x: Tensor<B, 2>,
        base: Tensor<B, 2>,
    ) -> Tensor<B, 2>
    where
        B: ModelBackend,
    {
        let dtype = x.dtype();
        let factor = lora
            .dora_factor(magnitude, self.weight.val())
            .cast(dtype)
            .unsqueeze::<2>();
        let dropped = dropout(&lora.dropout, x.clone());
        let without_bias = if lora.dropout.prob == 0.0 || !B::ad_enabled(&x.device()) {
            match &self.bias {
                Some(bias) => base.clone() - bias.val().cast(dtype).unsqueeze(),
                None => base.clone(),
            }
        } else {
            linear_2d(dropped.clone(), self.weight.val(), None)
        };
        let low_rank = dropped
            .matmul(lora.a.val().cast(dtype))
            .matmul((lora.b.val() * lora.scaling).cast(dtype));
        base + without_bias * (factor.clone() - 1.0) + low_rank * factor
    }

    /// Folds the adapter into `W` (`W + s A B`) so inference costs one matmul; the adapter is
    /// kept (inactive) so [`Self::unmerge`] can restore `W`. No-op without an adapter or when
    /// already merged. As PEFT's `safe_merge`, merged weights with a NaN or an infinity are
    /// refused and the layer is left as it was.
    pub fn merge(&mut self) -> Result<(), NonFiniteMerge> {
        self.merge_ia3()?;
        let Some(lora) = self.lora.as_mut().filter(|l| !l.merged) else {
            return Ok(());
        };
        let weight = self.weight.val();
        let adapted = weight.clone() + lora.delta_weight().cast(weight.dtype());
        let (merged, norm) = match &lora.magnitude {
            None => (adapted, None),
            Some(magnitude) => {
                let norm = column_norms(adapted.clone());
                let factor = (magnitude.val().detach() / norm.clone()).cast(weight.dtype());
                (adapted * factor.unsqueeze(), Some(norm))
            }
        };
        let non_finite = merged
            .clone()
            .is_nan()
            .bool_or(merged.clone().is_inf())
            .any()
            .into_scalar()
            .to_bool();
        if non_finite {
            return Err(NonFiniteMerge);
        }
        self.weight = self.weight.clone().map(|w| {
            let require_grad = w.is_require_grad();
            merged.set_require_grad(require_grad)
        });
        lora.merged_norm = norm.map(|n| Param::from_tensor(n).set_require_grad(false));
        lora.merged = true;
        Ok(())
    }

    /// Takes a merged adapter back out of `W`.
    pub fn unmerge(mut self) -> Self {
        if let Some(ia3) = self.ia3.as_mut().filter(|i| i.merged) {
            let scale = ia3.scale.val().detach();
            let feedforward = ia3.feedforward;
            self.weight = self.weight.map(|w| {
                let require_grad = w.is_require_grad();
                let scale = scale.clone().cast(w.dtype());
                let scale = if feedforward {
                    scale.unsqueeze_dim::<2>(1)
                } else {
                    scale.unsqueeze_dim::<2>(0)
                };
                (w / scale).set_require_grad(require_grad)
            });
            if !feedforward {
                self.bias = self.bias.map(|b| {
                    b.map(|b| {
                        let require_grad = b.is_require_grad();
                        (b.clone() / scale.clone().cast(b.dtype())).set_require_grad(require_grad)
                    })
                });
            }
            ia3.merged = false;
        }
        if let Some(lora) = self.lora.as_mut().filter(|l| l.merged) {
            let delta = lora.delta_weight();
            // DoRA merged `f * (W + s A B)`: divide the factor back out first.
            let factor = match (&lora.magnitude, lora.merged_norm.take()) {
                (Some(magnitude), Some(norm)) => Some(magnitude.val().detach() / norm.val()),
                _ => None,
            };
            self.weight = self.weight.map(|w| {
                let require_grad = w.is_require_grad();
                let delta = delta.cast(w.dtype());
                let w = match &factor {
                    Some(f) => w / f.clone().cast(delta.dtype()).unsqueeze(),
                    None => w,
                };
                (w - delta).set_require_grad(require_grad)
            });
            lora.merged = false;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::module::linear;

    type B = Flex;

    #[test]
    fn a_is_kaiming_uniform_and_b_is_zero() {
        let device = Default::default();
        let lora: Lora<B> = LoraLinearConfig::new(64, 32, 8, 16.0).init(&device);
        let a: Vec<f32> = lora.a.val().into_data().to_vec().unwrap();
        let bound = 1.0 / 64f32.sqrt();
        assert_eq!(a.len(), 64 * 8);
        assert!(
            a.iter().all(|x| x.abs() <= bound),
            "A outside the Kaiming bound"
        );
        // Uniform on [-bound, bound] has standard deviation bound / sqrt(3).
        let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        assert!((std / (bound / 3f32.sqrt()) - 1.0).abs() < 0.1, "std {std}");
        let b: Vec<f32> = lora.b.val().into_data().to_vec().unwrap();
        assert!(b.iter().all(|&x| x == 0.0));
        assert_eq!(lora.scaling, 2.0);
        let rs = LoraLinearConfig::new(64, 32, 4, 8.0).with_use_rslora(true);
        assert_eq!(rs.scaling(), 4.0);
    }

    #[test]
    fn wrapped_linear_freezes_the_base_and_matches_the_formula() {
        type AB = Autodiff<B>;
        let device = Default::default();
        let base = burn::nn::LinearConfig::new(6, 5).init::<AB>(&device);
        let config = LoraLinearConfig::new(6, 5, 2, 3.0);
        let mut layer = config.wrap(base, &device);
        let x = Tensor::<AB, 3>::random([2, 4, 6], burn::tensor::Distribution::Default, &device);
        // At init the adapted layer is the base layer, bit for bit.
        let plain = linear(
            x.clone(),
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
        );
        assert_eq!(
            layer.forward(x.clone()).into_data(),
            plain.clone().into_data()
        );
        // With a non-zero B: x W + b + (alpha / r) x A B.
        let lora = layer.lora.as_mut().unwrap();
        lora.b = Param::from_tensor(Tensor::random(
            [2, 5],
            burn::tensor::Distribution::Default,
            &device,
        ));
        let expected = plain
            + x.clone()
                .matmul(lora.a.val().unsqueeze())
                .matmul(lora.b.val().unsqueeze())
                * 1.5;
        let out = layer.forward(x);
        out.clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
        let grads = out.sum().backward();
        assert!(layer.weight.grad(&grads).is_none());
        assert!(layer.bias.as_ref().unwrap().grad(&grads).is_none());
        let lora = layer.lora.as_ref().unwrap();
        assert!(lora.a.grad(&grads).is_some() && lora.b.grad(&grads).is_some());
    }
}
