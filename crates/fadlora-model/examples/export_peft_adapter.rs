//! Writes LoRA adapters made here, in PEFT's layout, with a `reference.safetensors` of this
//! crate's outputs, for `tools/fixtures/check_peft_adapter.py` to load in Hugging Face PEFT:
//!
//!     cargo run -p fadlora-model --example export_peft_adapter -- OUT_DIR
//!     python tools/fixtures/check_peft_adapter.py OUT_DIR/qv_all_layers_rslora
//!     python tools/fixtures/check_peft_adapter.py OUT_DIR/all_targets_layer1
//!
//! Base model: fixtures/wav2vec2/stable_layer/safetensors_weight_g. Every B is set to seeded
//! random values (B starts at zero, which would make any adapter pass).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use fadlora_model::adapter::write_safetensors;
use fadlora_model::{LoraConfig, LoraTarget, SaveAdapterOptions, TensorSource, Wav2Vec2Model};

type B = Flex;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const BASE: &str = "fixtures/wav2vec2/stable_layer/safetensors_weight_g";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: export_peft_adapter OUT_DIR")?,
    );
    let device = Default::default();
    let root = Path::new(ROOT);
    let mut reference =
        TensorSource::open(&root.join("fixtures/wav2vec2/stable_layer/reference.safetensors"))?;
    let input_shape = reference.shape("input_values").ok_or("no input_values")?;
    let input_values = reference.take("input_values", &input_shape)?;
    let input = Tensor::<B, 2>::from_data(
        TensorData::new(input_values.clone(), [input_shape[0], input_shape[1]]),
        &device,
    );

    let variants = [
        (
            "qv_all_layers_rslora",
            LoraConfig::new(4, 8.0).with_use_rslora(true),
        ),
        (
            "all_targets_layer1",
            LoraConfig::new(3, 6.0)
                .with_targets(LoraTarget::ALL.to_vec())
                .with_layers(Some(vec![1])),
        ),
    ];
    for (seed, (name, config)) in variants.into_iter().enumerate() {
        let mut model = Wav2Vec2Model::<B>::from_pretrained(root.join(BASE), &device)?
            .try_with_lora(&config, &device)?;
        B::seed(&device, seed as u64);
        for layer in &mut model.encoder.layers {
            for target in LoraTarget::ALL {
                if let Some(lora) = layer.projection_mut(target).lora.as_mut() {
                    let [r, d_out] = lora.b.lazy_shape().dims();
                    lora.b = Param::from_tensor(Tensor::random(
                        [r, d_out],
                        Distribution::Normal(0.0, 0.25),
                        &device,
                    ));
                }
            }
        }
        let dir = out.join(name);
        model.save_adapter(
            &dir,
            &SaveAdapterOptions {
                base_model_name_or_path: Some(BASE.into()),
                ..Default::default()
            },
        )?;
        let result = model.forward(input.clone(), true);
        let mut tensors = vec![(
            "input_values".to_string(),
            input_shape.clone(),
            input_values.clone(),
        )];
        let states = result.hidden_states.expect("requested");
        let named = states
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("hidden_states.{i}"), t))
            .chain([("last_hidden_state".to_string(), result.last_hidden_state)]);
        for (key, t) in named {
            let shape = t.dims().to_vec();
            let data = t.into_data().convert::<f32>().into_vec::<f32>().unwrap();
            tensors.push((key, shape, data));
        }
        write_safetensors(&dir.join("reference.safetensors"), &tensors)?;
        println!("{}", dir.display());
    }
    Ok(())
}
