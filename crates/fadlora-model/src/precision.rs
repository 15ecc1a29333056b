//! Mixed precision: the float type of the matmuls and activations.
//!
//! The model computes in the float type of its input: every matmul casts its weights to it (a
//! no-op in f32), LayerNorm and softmax cast up to f32 and back, and the detector's head and
//! loss run in f32 (`fadlora-train`). Parameters stay f32, so under `Autodiff` their gradients
//! and the optimizer state are f32 too (master weights); [`cast_frozen`] stores the weights that
//! do not train in the reduced type, which is where LoRA saves memory.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// The run TOML's precision names (defined in fadlora-run, shared with the trainer).
pub use fadlora_run::Precision;

/// The burn float type a [`Precision`] computes in.
pub trait PrecisionDType {
    fn dtype(self) -> FloatDType;
}

impl PrecisionDType for Precision {
    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }
}

/// Casts every weight matrix of `module` that records no gradient to `precision` (all of them
/// on a backend without autodiff). Vectors (biases, norm parameters) and the weight-normed
/// positional convolution stay f32: they are cast where used.
pub fn cast_frozen<B: Backend, M: Module<B>>(module: M, precision: Precision) -> M {
    struct CastFrozen(FloatDType);
    impl<B: Backend> ModuleMapper<B> for CastFrozen {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if D != 2 {
                return param;
            }
            let dtype = self.0;
            param.map(|t| {
                if t.is_require_grad() {
                    t
                } else {
                    t.cast(dtype)
                }
            })
        }
    }
    if precision == Precision::F32 {
        return module;
    }
    module.map(&mut CastFrozen(precision.dtype()))
}
