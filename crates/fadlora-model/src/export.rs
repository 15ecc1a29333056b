//! Writing a [`Wav2Vec2Model`] as a Hugging Face model folder (`config.json`,
//! `model.safetensors`, `preprocessor_config.json`), which `transformers.Wav2Vec2Model.from_pretrained` and
//! [`Wav2Vec2Model::from_pretrained`] load: what `fadlora pretrain` ships.
//!
//! The module paths already are Hugging Face's keys (that is how loading needs no renaming
//! table), so export only undoes the layouts loading changed: linear weights back to PyTorch's
//! `[out, in]`, the feature encoder's im2col weights back to `[out, in, kernel]`, and the
//! positional convolution's weight-norm factors back to `parametrizations.weight.original0/1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::ModuleSnapshot;

use crate::adapter_layer::AdapterKind;
use crate::feature::conv_specs;
use crate::load::permute;
use crate::model::Wav2Vec2Model;

/// Tensors by Hugging Face key: `(shape, values)` in PyTorch's layout.
pub type HfTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    /// Half the size; loaders widen it to f32 (so outputs differ from the f32 model by f16
    /// rounding of the weights).
    F16,
}

/// Settings recorded in `config.json` beside the architecture.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dtype: ExportDtype,
    /// The masking the model was pretrained with (`mask_time_prob`, `mask_time_length`), so
    /// that transformers builds the `masked_spec_embed` the file holds.
    pub mask_time_prob: f64,
    pub mask_time_length: usize,
    /// Whether inputs are normalised to zero mean and unit variance per utterance
    /// (`preprocessor_config.json`'s `do_normalize`), as the model was trained.
    pub do_normalize: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {message}", path.display())]
    Write { path: PathBuf, message: String },
    #[error("a model with LoRA adapters is not a Hugging Face Wav2Vec2Model: export the adapters (PEFT layout) or merge them first")]
    HasAdapters,
    #[error("transformers' Wav2Vec2Model has no bottleneck adapters (only MMS attention adapters): this model cannot be exported as one")]
    BottleneckAdapters,
    #[error("unexpected parameter `{0}`: this exporter does not know its Hugging Face layout")]
    UnknownParameter(String),
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Writes `dir/config.json` and `dir/model.safetensors`.
    pub fn save_pretrained(&self, dir: &Path, options: &ExportOptions) -> Result<(), ExportError> {
        if self.lora.is_some() {
            return Err(ExportError::HasAdapters);
        }
        let adapters = self.adapter_layers();
        if adapters
            .iter()
            .any(|(_, a)| a.kind == AdapterKind::Bottleneck)
        {
            return Err(ExportError::BottleneckAdapters);
        }
        let write_err = |path: &Path, message: String| ExportError::Write {
            path: path.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string()))?;
        let tensors = self.hf_tensors()?;
        let weights = dir.join("model.safetensors");
        write_safetensors(&weights, &tensors, options.dtype).map_err(|m| write_err(&weights, m))?;

        let mut arch = self.config.clone();
        // MMS adapters (loaded or trained) are transformers' own: `adapter_attn_dim` builds them.
        arch.adapter_attn_dim = adapters.first().map(|(_, a)| a.size());
        let mut config = serde_json::to_value(&arch).expect("a config serialises");
        let fields = config.as_object_mut().expect("a config is an object");
        fields.insert("model_type".into(), "wav2vec2".into());
        fields.insert("architectures".into(), serde_json::json!(["Wav2Vec2Model"]));
        let with_embed = self.masked_spec_embed.is_some();
        // Without masked_spec_embed, transformers must not create (and warn about) one.
        fields.insert(
            "mask_time_prob".into(),
            if with_embed {
                options.mask_time_prob
            } else {
                0.0
            }
            .into(),
        );
        fields.insert("mask_time_length".into(), options.mask_time_length.into());
        fields.insert(
            "torch_dtype".into(),
            match options.dtype {
                ExportDtype::F32 => "float32",
                ExportDtype::F16 => "float16",
            }
            .into(),
        );
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&config).expect("json");
        std::fs::write(&path, text + "\n").map_err(|e| write_err(&path, e.to_string()))?;
        let preprocessor = serde_json::json!({
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": 1,
            "sampling_rate": 16000,
            "padding_side": "right",
            "padding_value": 0.0,
            "do_normalize": options.do_normalize,
            "return_attention_mask": false,
        });
        let path = dir.join("preprocessor_config.json");
        let text = serde_json::to_string_pretty(&preprocessor).expect("json");
        std::fs::write(&path, text + "\n").map_err(|e| write_err(&path, e.to_string()))?;
        Ok(())
    }

    /// Every tensor under its Hugging Face key, in PyTorch's layout: `key -> (shape, values)`.
    pub fn hf_tensors(&self) -> Result<HfTensors, ExportError> {
        // burn-store gives every parameter with its module path, which is the HF key.
        let snapshots = self
            .collect(None, None, false)
            .into_iter()
            .map(|snapshot| (snapshot.full_path(), snapshot));
        let specs = conv_specs(&self.config);
        let pos = &self.encoder.pos_conv_embed.conv;
        let mut out = BTreeMap::new();
        for (path, snapshot) in snapshots {
            let shape = snapshot.shape.to_vec();
            let values = snapshot
                .to_data()
                .map_err(|e| ExportError::UnknownParameter(format!("{path}: {e}")))?
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| ExportError::UnknownParameter(format!("{path}: {e:?}")))?;
            let parts: Vec<&str> = path.split('.').collect();
            let (key, shape, values) = match parts.as_slice() {
                ["feature_extractor", "conv_layers", i, "conv", "weight"] => {
                    let spec = &specs[i.parse::<usize>().expect("a layer index")];
                    let (k, c_in, c_out) = (spec.kernel, spec.in_channels, spec.out_channels);
                    let values = permute(&values, &[k, c_in, c_out], &[2, 1, 0]);
                    (path.clone(), vec![c_out, c_in, k], values)
                }
                [.., "pos_conv_embed", "conv", "weight_g"] => (
                    path.replace("weight_g", "parametrizations.weight.original0"),
                    vec![1, 1, pos.kernel],
                    values,
                ),
                [.., "pos_conv_embed", "conv", "weight_v"] => {
                    let (groups, k) = (pos.groups, pos.kernel);
                    let per_group = shape[2];
                    let values =
                        permute(&values, &[groups, k, per_group, per_group], &[0, 3, 2, 1]);
                    (
                        path.replace("weight_v", "parametrizations.weight.original1"),
                        vec![groups * per_group, per_group, k],
                        values,
                    )
                }
                [.., "weight"] if shape.len() == 2 => {
                    let values = permute(&values, &shape, &[1, 0]);
                    (path.clone(), vec![shape[1], shape[0]], values)
                }
                [.., "weight" | "bias"] | ["masked_spec_embed"] if shape.len() == 1 => {
                    (path.clone(), shape, values)
                }
                _ => return Err(ExportError::UnknownParameter(path)),
            };
            out.insert(key, (shape, values));
        }
        Ok(out)
    }
}

fn write_safetensors(path: &Path, tensors: &HfTensors, dtype: ExportDtype) -> Result<(), String> {
    let (st_dtype, bytes): (safetensors::Dtype, Vec<Vec<u8>>) = match dtype {
        ExportDtype::F32 => (
            safetensors::Dtype::F32,
            tensors
                .values()
                .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
                .collect(),
        ),
        ExportDtype::F16 => (
            safetensors::Dtype::F16,
            tensors
                .values()
                .map(|(_, v)| {
                    v.iter()
                        .flat_map(|x| burn::tensor::f16::from_f32(*x).to_le_bytes())
                        .collect()
                })
                .collect(),
        ),
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, (shape, _)), bytes)| {
            safetensors::tensor::TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("tensor `{name}`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    safetensors::tensor::serialize_to_file(views, metadata, path).map_err(|e| e.to_string())
}
