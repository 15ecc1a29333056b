//! Helpers shared by the trainer's integration tests.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;

/// Every float parameter's value by its dotted module path.
pub fn snapshot<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, TensorData> {
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
