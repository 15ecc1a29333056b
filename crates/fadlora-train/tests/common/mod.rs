//! Helpers shared by the trainer's integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::collections::BTreeMap;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use fadlora_train::detector::{weighted_cross_entropy, Detector};

pub type AB = Autodiff<Flex>;
pub type Snapshot = BTreeMap<String, TensorData>;

/// Every float parameter's value by its dotted module path.
pub fn snapshot<B: Backend, M: Module<B>>(module: &M) -> Snapshot {
    struct Walk {
        stack: Vec<String>,
        out: BTreeMap<String, TensorData>,
    }
    impl<B: Backend> ModuleVisitor<B> for Walk {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out
                .insert(self.stack.join("."), param.val().into_data());
        }
    }
    let mut walk = Walk {
        stack: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut walk);
    walk.out
}

/// Every parameter before and after one AdamW step on a fixed random batch of two 0.5 s
/// waveforms. Weight decay is on, so a parameter the optimizer sees moves even without a
/// gradient: a frozen one that stays bit-identical was kept from the optimizer.
pub fn around_one_adamw_step(model: Detector<AB>) -> (Snapshot, Snapshot) {
    let device = Default::default();
    let before = snapshot(&model);
    Flex::seed(&device, 9);
    let waves = Tensor::<AB, 2>::random([2, 8000], Distribution::Uniform(-0.5, 0.5), &device);
    let labels = Tensor::<AB, 1, Int>::from_ints([0, 1], &device);
    let loss = weighted_cross_entropy(model.forward(waves), labels, [0.5, 0.5]);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(1e-2)
        .init::<AB, Detector<AB>>();
    let model = optim.step(1e-2, model, grads);
    (before, snapshot(&model))
}
