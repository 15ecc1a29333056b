//! Reading Hugging Face checkpoints (`model.safetensors`, `pytorch_model.bin`) into the model.
//!
//! Tensors are read through burn-store's lazy readers (safetensors are memory-mapped; a
//! PyTorch zip is read entry by entry), converted to f32 one at a time and rearranged on the
//! host into the layouts the model computes with. Every tensor the model needs must be present
//! with its exact shape, and every tensor in the file must be used or be one of the known
//! extras of pre-training and task heads; anything else is an error that names the tensor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleStore, SafetensorsStore, TensorSnapshot};

use crate::config::ConfigError;
use crate::norm::Norm;

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no weights in {dir}: expected model.safetensors or pytorch_model.bin")]
    NoWeights { dir: PathBuf },
    #[error("cannot read checkpoint {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("checkpoint is missing tensor `{name}` (the model expects shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    #[error(
        "tensor `{name}` has shape {found:?} in the checkpoint but the model expects {expected:?}"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("unexpected tensor `{name}` with shape {shape:?} in the checkpoint{}", others_note(*.others))]
    UnexpectedTensor {
        name: String,
        shape: Vec<usize>,
        /// How many further unexpected tensors there are.
        others: usize,
    },
    #[error("tensor `{name}` has dtype {dtype:?}; only floating-point weights are supported")]
    DType { name: String, dtype: DType },
    #[error("cannot read data of tensor `{name}`: {message}")]
    Data { name: String, message: String },
    /// A fairseq `.pt` checkpoint could not be used ([`crate::fairseq`]).
    #[error(transparent)]
    Fairseq(Box<crate::fairseq::FairseqError>),
}

impl From<crate::fairseq::FairseqError> for LoadError {
    fn from(err: crate::fairseq::FairseqError) -> Self {
        Self::Fairseq(Box::new(err))
    }
}

/// The architecture of a pretrained checkpoint: the `config.json` of a Hugging Face model
/// directory, or the settings inside a fairseq `.pt` file
/// ([`crate::fairseq::is_fairseq_checkpoint`]).
pub fn checkpoint_config(path: &Path) -> Result<crate::Wav2Vec2Config, LoadError> {
    if crate::fairseq::is_fairseq_checkpoint(path) {
        Ok(crate::fairseq::fairseq_config(path)?)
    } else {
        Ok(crate::Wav2Vec2Config::from_hf_json_file(
            path.join("config.json"),
        )?)
    }
}

fn others_note(others: usize) -> String {
    match others {
        0 => String::new(),
        n => format!(" (and {n} more unexpected tensors)"),
    }
}

/// Top-level submodules (ending in `.`) and parameters that belong to `Wav2Vec2ForPreTraining`, `ForCTC` or
/// `ForSequenceClassification` rather than to `Wav2Vec2Model`, and are skipped on load.
/// `masked_spec_embed` only serves SpecAugment masking, which this model does not do.
pub const IGNORED_PREFIXES: &[&str] = &[
    "quantizer.",
    "project_q.",
    "project_hid.",
    "masked_spec_embed",
    "lm_head.",
    "projector.",
    "classifier.",
    "layer_weights",
];

fn is_ignored(key: &str) -> bool {
    // Entries ending in '.' name a submodule; the others name a single parameter.
    IGNORED_PREFIXES.iter().any(|p| {
        if p.ends_with('.') {
            key.starts_with(p)
        } else {
            key == *p
        }
    })
}

/// The weight file of a Hugging Face model directory, safetensors first.
pub fn find_weights(dir: &Path) -> Result<PathBuf, LoadError> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LoadError::NoWeights {
            dir: dir.to_path_buf(),
        })
}

/// The tensors of one checkpoint file, handed out by model key and checked off as used.
pub struct TensorSource {
    path: PathBuf,
    tensors: BTreeMap<String, TensorSnapshot>,
    /// `"wav2vec2."` for checkpoints of models with a head, `""` for a bare `Wav2Vec2Model`.
    prefix: String,
    used: BTreeSet<String>,
    /// Stored key -> the name messages give (a fairseq checkpoint's own names).
    aliases: BTreeMap<String, String>,
}

impl TensorSource {
    /// Opens `.safetensors` (memory-mapped) or a PyTorch `.bin`/`.pt`/`.pth` file.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let read_err = |message: String| LoadError::Read {
            path: path.to_path_buf(),
            message,
        };
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let tensors: BTreeMap<String, TensorSnapshot> = if is_safetensors {
            let mut store = SafetensorsStore::from_file(path);
            store
                .get_all_snapshots()
                .map_err(|e| read_err(e.to_string()))?
                .clone()
        } else {
            burn_store::pytorch::PytorchReader::new(path)
                .map_err(|e| read_err(e.to_string()))?
                .into_tensors()
                .into_iter()
                .collect()
        };
        Ok(Self::from_snapshots(path.to_path_buf(), tensors))
    }

    /// Wraps tensors already read (the path is only used in messages).
    pub fn from_snapshots(path: PathBuf, tensors: BTreeMap<String, TensorSnapshot>) -> Self {
        let prefix = if tensors.keys().any(|k| k.starts_with("wav2vec2.")) {
            "wav2vec2.".to_string()
        } else {
            String::new()
        };
        Self {
            path,
            tensors,
            prefix,
            used: BTreeSet::new(),
            aliases: BTreeMap::new(),
        }
    }

    /// Wraps tensors renamed to `Wav2Vec2Model` keys; `aliases` maps each key to the name the
    /// file has, which errors give.
    pub fn from_renamed(
        path: PathBuf,
        tensors: BTreeMap<String, TensorSnapshot>,
        aliases: BTreeMap<String, String>,
    ) -> Self {
        Self {
            path,
            tensors,
            prefix: String::new(),
            used: BTreeSet::new(),
            aliases,
        }
    }

    /// The name of stored key `key` in messages.
    pub(crate) fn shown(&self, key: &str) -> String {
        self.aliases
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    /// The file the tensors come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of `name` (a `Wav2Vec2Model` key) as stored, with any `wav2vec2.` prefix.
    pub fn full_key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Every key of the checkpoint, as stored (with any `wav2vec2.` prefix).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Shape of `name` in the checkpoint, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors
            .get(&self.full_key(name))
            .map(|t| t.shape.to_vec())
    }

    /// Takes tensor `name` (a `Wav2Vec2Model` key) as f32, checking it has shape `expected`.
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let key = self.full_key(name);
        let snapshot = self
            .tensors
            .get(&key)
            .ok_or_else(|| LoadError::MissingTensor {
                name: self.shown(&key),
                expected: expected.to_vec(),
            })?;
        let found = snapshot.shape.to_vec();
        if found != expected {
            return Err(LoadError::ShapeMismatch {
                name: self.shown(&key),
                expected: expected.to_vec(),
                found,
            });
        }
        if !snapshot.dtype.is_float() {
            return Err(LoadError::DType {
                name: self.shown(&key),
                dtype: snapshot.dtype,
            });
        }
        let data_err = |message: String| LoadError::Data {
            name: self.shown(&key),
            message,
        };
        let data = snapshot.to_data().map_err(|e| data_err(e.to_string()))?;
        let data = if data.dtype == DType::F32 {
            data
        } else {
            data.convert::<f32>()
        };
        let values = data
            .into_vec::<f32>()
            .map_err(|e| data_err(format!("{e:?}")))?;
        self.used.insert(key);
        Ok(values)
    }

    /// Takes a tensor of shape `shape` as a parameter, unchanged.
    pub fn take_param<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        let values = self.take(name, &shape)?;
        Ok(Param::from_data(TensorData::new(values, shape), device))
    }

    /// A PyTorch `nn.Linear` (`weight` `[d_out, d_in]`) as a burn `Linear` (`[d_in, d_out]`).
    pub fn take_linear<B: Backend>(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Result<Linear<B>, LoadError> {
        let weight = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let weight = permute(&weight, &[d_out, d_in], &[1, 0]);
        Ok(Linear {
            weight: Param::from_data(TensorData::new(weight, [d_in, d_out]), device),
            bias: Some(self.take_param(&format!("{prefix}.bias"), [d_out], device)?),
        })
    }

    /// A PyTorch `nn.LayerNorm` (`weight`, `bias`) over the channel axis.
    pub fn take_norm<B: Backend>(
        &mut self,
        prefix: &str,
        channels: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Norm<B>, LoadError> {
        let mut norm = Norm::layer_norm(channels, eps, device);
        norm.weight = self.take_param(&format!("{prefix}.weight"), [channels], device)?;
        norm.bias = self.take_param(&format!("{prefix}.bias"), [channels], device)?;
        Ok(norm)
    }

    /// Fails on the first tensor that was neither used nor a known extra.
    pub fn finish(&self) -> Result<(), LoadError> {
        let unexpected: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .filter(|k| {
                let stripped = k.strip_prefix(&self.prefix).unwrap_or(k);
                !is_ignored(k) && !is_ignored(stripped)
            })
            .collect();
        match unexpected.first() {
            None => Ok(()),
            Some(name) => Err(LoadError::UnexpectedTensor {
                name: self.shown(name),
                shape: self.tensors[*name].shape.to_vec(),
                others: unexpected.len() - 1,
            }),
        }
    }
}

/// Row-major transpose of `data` (of `shape`) so that output axis `i` is input axis `perm[i]`.
pub fn permute(data: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    assert_eq!(shape.len(), perm.len());
    assert_eq!(data.len(), shape.iter().product::<usize>());
    let rank = shape.len();
    let mut in_strides = vec![1; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; rank];
    for _ in 0..data.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(data[offset]);
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < out_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_matches_index_arithmetic() {
        let shape = [2, 3, 4];
        let data: Vec<f32> = (0..24).map(|x| x as f32).collect();
        let out = permute(&data, &shape, &[2, 1, 0]);
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(out[c * 6 + b * 2 + a], data[a * 12 + b * 4 + c]);
                }
            }
        }
    }

    #[test]
    fn ignored_keys_are_exactly_the_known_extras() {
        for key in [
            "quantizer.codevectors",
            "project_q.weight",
            "project_hid.bias",
            "masked_spec_embed",
            "lm_head.weight",
            "projector.weight",
            "classifier.bias",
            "layer_weights",
        ] {
            assert!(is_ignored(key), "{key}");
        }
        for key in [
            "encoder.extra",
            "masked_spec_embed_x",
            "quantizer",
            "adapter.proj.weight",
        ] {
            assert!(!is_ignored(key), "{key}");
        }
    }
}
