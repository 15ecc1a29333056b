//! fairseq wav2vec2 checkpoints (`.pt`, e.g. `xlsr2_300m.pt`, `wav2vec_small.pt`), read
//! without Python.
//!
//! fairseq saves `torch.save({"cfg": ..., "args": ..., "model": state_dict, ...})`. The network
//! settings come from `cfg.model` (an omegaconf `DictConfig` or a plain dict) or, in older
//! checkpoints whose `cfg` is `None`, from the argparse `Namespace` in `args`; fine-tuned
//! checkpoints (`wav2vec_ctc`) hold the pre-training settings in `w2v_args` and the network under
//! `w2v_encoder.w2v_model.`. The tensors are renamed to the Hugging Face names the model loads
//! ([`fairseq_to_hf`]); pre-training and CTC extras (quantizer, `project_q`, `final_proj`,
//! `mask_emb`, `w2v_encoder.proj`, ...) are skipped; any other tensor is an error that names it.
//!
//! The file is read with this module's own small pickle machine: burn-store's turns every
//! `REDUCE` of a class it does not know into an error, and a pickled omegaconf config holds one
//! (`collections.defaultdict`, the resolver cache of omegaconf >= 2.1). Only torch's zip format
//! (torch >= 1.6) is read; a file in the legacy format is reported as such (loading and saving
//! it again with a recent torch converts it).

mod pickle;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::pytorch::lazy_data::LazyDataSource;
use burn_store::TensorSnapshot;

use crate::config::{ConfigError, Wav2Vec2Config};
use crate::load::{LoadError, TensorSource};
use crate::model::Wav2Vec2Model;
use pickle::Node;

/// Why a fairseq checkpoint could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FairseqError {
    #[error("cannot read fairseq checkpoint {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} is not a fairseq checkpoint: {message}")]
    NotFairseq { path: PathBuf, message: String },
    #[error(
        "fairseq checkpoint {path}: unsupported setting `{field}` = {value} (supported: {supported})"
    )]
    Unsupported {
        path: PathBuf,
        field: String,
        value: String,
        supported: &'static str,
    },
    #[error("fairseq checkpoint {path}: setting `{field}` = {value} is invalid: {message}")]
    Setting {
        path: PathBuf,
        field: String,
        value: String,
        message: String,
    },
    #[error("fairseq checkpoint {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    /// A tensor is missing, has the wrong shape or is unknown; the tensor is named with its
    /// fairseq name.
    #[error("fairseq checkpoint {path}: {source}")]
    Tensors {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
}

impl FairseqError {
    /// The tensor error inside, if this is one.
    pub fn load_error(&self) -> Option<&LoadError> {
        match self {
            Self::Tensors { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whether `path` names a fairseq checkpoint: a path ending in `.pt` that is not a directory
/// (a directory is a Hugging Face checkpoint), so that a missing `.pt` file is reported as such.
pub fn is_fairseq_checkpoint(path: &Path) -> bool {
    !path.is_dir() && path.extension().is_some_and(|e| e == "pt")
}

/// A parsed fairseq checkpoint: the architecture its settings describe and its tensors under
/// Hugging Face names.
pub struct FairseqCheckpoint {
    path: PathBuf,
    config: Wav2Vec2Config,
    tensors: BTreeMap<String, TensorSnapshot>,
    /// Hugging Face name -> fairseq name, for messages.
    aliases: BTreeMap<String, String>,
    skipped: Vec<String>,
    /// `"w2v_encoder.w2v_model."` in fine-tuned checkpoints, else empty.
    prefix: String,
}

impl FairseqCheckpoint {
    /// Reads the settings and tensor headers of `path` (tensor data is read when loaded).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FairseqError> {
        let path = path.as_ref().to_path_buf();
        let (parsed, source) = read_archive(&path)?;
        let top = Value::of(&parsed, parsed.root, 0);
        let Value::Dict(top_dict) = &top else {
            return Err(FairseqError::NotFairseq {
                path,
                message: "the pickle is not a dict".into(),
            });
        };
        let settings = Settings::find(&path, top_dict)?;
        let config = settings.config()?;
        let prefix = settings.prefix.clone().unwrap_or_default();
        let model =
            dict_entry(&parsed, parsed.root, "model").ok_or_else(|| FairseqError::NotFairseq {
                path: path.clone(),
                message: "no `model` entry (the state dict)".into(),
            })?;
        let Node::Dict(entries) = &parsed.nodes[model] else {
            return Err(FairseqError::NotFairseq {
                path,
                message: "`model` is not a dict of tensors".into(),
            });
        };
        let mut tensors = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut unexpected: Vec<(String, Vec<usize>)> = Vec::new();
        for &(k, v) in entries {
            let Node::Str(name) = &parsed.nodes[k] else {
                continue;
            };
            let snapshot = match &parsed.nodes[v] {
                Node::Tensor {
                    storage_type,
                    key,
                    offset,
                    shape,
                    stride,
                } => snapshot(&source, storage_type, key, *offset, shape, stride).map_err(
                    |message| FairseqError::Read {
                        path: path.clone(),
                        message: format!("tensor `{name}`: {message}"),
                    },
                )?,
                other => {
                    return Err(FairseqError::NotFairseq {
                        path,
                        message: format!("`model.{name}` is not a tensor but {other:?}"),
                    })
                }
            };
            let inner = match &settings.prefix {
                Some(prefix) => match name.strip_prefix(prefix.as_str()) {
                    Some(inner) => inner,
                    None if is_finetuning_extra(name) => {
                        skipped.push(name.clone());
                        continue;
                    }
                    None => {
                        unexpected.push((name.clone(), snapshot.shape.to_vec()));
                        continue;
                    }
                },
                None => name.as_str(),
            };
            if is_pretraining_extra(inner) {
                skipped.push(name.clone());
                continue;
            }
            match fairseq_to_hf(inner) {
                Some(hf) => {
                    aliases.insert(hf.clone(), name.clone());
                    tensors.insert(hf, snapshot);
                }
                None => unexpected.push((name.clone(), snapshot.shape.to_vec())),
            }
        }
        if let Some((name, shape)) = unexpected.first() {
            return Err(FairseqError::Tensors {
                path,
                source: LoadError::UnexpectedTensor {
                    name: name.clone(),
                    shape: shape.clone(),
                    others: unexpected.len() - 1,
                },
            });
        }
        Ok(Self {
            path,
            config,
            tensors,
            aliases,
            skipped,
            prefix,
        })
    }

    /// The architecture the checkpoint's settings describe.
    pub fn config(&self) -> &Wav2Vec2Config {
        &self.config
    }

    /// The fairseq names of the tensors that are skipped (pre-training and CTC extras).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The tensors under Hugging Face names, for [`Wav2Vec2Model::from_source`]; its errors
    /// name tensors by their fairseq names.
    pub fn into_source(self) -> TensorSource {
        let mut aliases = self.aliases;
        // Tensors the file lacks are named as fairseq would name them too.
        for (hf, fairseq) in hf_to_fairseq_names(&self.config) {
            aliases
                .entry(hf)
                .or_insert_with(|| format!("{}{fairseq}", self.prefix));
        }
        TensorSource::from_renamed(self.path, self.tensors, aliases)
    }

    /// Builds the model of `config` (normally [`Self::config`], perhaps with other dropout
    /// settings) from the checkpoint's tensors.
    pub fn into_model<B: Backend>(
        self,
        config: Wav2Vec2Config,
        device: &B::Device,
    ) -> Result<Wav2Vec2Model<B>, FairseqError> {
        let path = self.path.clone();
        let mut src = self.into_source();
        Wav2Vec2Model::from_source(config, &mut src, device)
            .map_err(|source| FairseqError::Tensors { path, source })
    }
}

/// The architecture of a fairseq checkpoint, without reading any tensor data.
pub fn fairseq_config(path: impl AsRef<Path>) -> Result<Wav2Vec2Config, FairseqError> {
    Ok(FairseqCheckpoint::open(path)?.config)
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Loads a fairseq wav2vec2 checkpoint (`.pt`): architecture from its settings, weights
    /// renamed from fairseq's names.
    pub fn from_fairseq(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, FairseqError> {
        let checkpoint = FairseqCheckpoint::open(path)?;
        let config = checkpoint.config.clone();
        checkpoint.into_model(config, device)
    }
}

// ----------------------------------------------------------------------------------- archive

fn read_archive(path: &Path) -> Result<(pickle::Pickle, Arc<LazyDataSource>), FairseqError> {
    let read_err = |message: String| FairseqError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| read_err(e.to_string()))?;
    if magic != *b"PK\x03\x04" {
        return Err(read_err(
            "not a zip archive: only torch's zip serialization (torch >= 1.6) is supported; \
             a checkpoint in the legacy format can be re-saved with `torch.save(torch.load(p), p)`"
                .into(),
        ));
    }
    let source =
        Arc::new(LazyDataSource::from_zip(path).map_err(|e| read_err(format!("zip: {e}")))?);
    // torch.save names the archive's top folder after the file; torch.jit and others use
    // `archive/`; the data files tell the folder when the file was renamed.
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidates = vec![
        format!("{stem}/data.pkl"),
        "archive/data.pkl".to_string(),
        "data.pkl".to_string(),
    ];
    for key in source.keys() {
        if let Some((folder, _)) = key.split_once("/data/") {
            candidates.push(format!("{folder}/data.pkl"));
        }
    }
    let pkl = candidates
        .iter()
        .find(|c| source.contains(c))
        .ok_or_else(|| read_err("no data.pkl in the zip archive".into()))?;
    let folder = pkl.trim_end_matches("data.pkl").to_string();
    let bytes = source.read(pkl).map_err(|e| read_err(e.to_string()))?;
    let mut parsed =
        pickle::parse(&bytes).map_err(|e| read_err(format!("{pkl}: unreadable pickle: {e}")))?;
    // Storage keys become archive paths here.
    for node in &mut parsed.nodes {
        if let Node::Tensor { key, .. } = node {
            *key = format!("{folder}data/{key}");
        }
    }
    Ok((parsed, source))
}

fn storage_dtype(storage_type: &str) -> Option<DType> {
    Some(match storage_type {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        _ => return None,
    })
}

/// A lazily read tensor: `shape` elements of `storage` from `offset` with `stride`.
fn snapshot(
    source: &Arc<LazyDataSource>,
    storage_type: &str,
    key: &str,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<TensorSnapshot, String> {
    let dtype = storage_dtype(storage_type)
        .ok_or_else(|| format!("unsupported storage type {storage_type}"))?;
    if stride.len() != shape.len() {
        return Err(format!("shape {shape:?} with stride {stride:?}"));
    }
    // The last element the view reaches, checked here so that reading cannot overflow.
    let overflow = || format!("shape {shape:?} with stride {stride:?} overflows");
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)?;
    let last = shape.iter().zip(stride).try_fold(offset, |at, (&d, &st)| {
        d.saturating_sub(1)
            .checked_mul(st)
            .and_then(|step| at.checked_add(step))
    });
    let size = dtype.size();
    let needed = last
        .and_then(|l| l.checked_add(1))
        .and_then(|n| n.checked_mul(size))
        .filter(|_| count.checked_mul(size).is_some())
        .ok_or_else(overflow)?;
    let mut row_major = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        row_major[i] = row_major[i + 1] * shape[i + 1];
    }
    let contiguous = shape
        .iter()
        .zip(stride.iter().zip(&row_major))
        .all(|(&d, (s, r))| d <= 1 || s == r);
    let (source, key) = (source.clone(), key.to_string());
    let (shape_v, stride_v) = (shape.to_vec(), stride.to_vec());
    let read = move || -> Result<TensorData, burn_store::TensorSnapshotError> {
        let io = |e: std::io::Error| burn_store::TensorSnapshotError::IoError(e.to_string());
        let storage = source.read(&key).map_err(io)?;
        if count > 0 && storage.len() < needed {
            return Err(burn_store::TensorSnapshotError::DataError(format!(
                "storage {key} has {} bytes, the tensor needs {needed}",
                storage.len()
            )));
        }
        let bytes = if count == 0 {
            Vec::new()
        } else if contiguous {
            storage[offset * size..(offset + count) * size].to_vec()
        } else {
            let mut bytes = Vec::with_capacity(count * size);
            let mut index = vec![0usize; shape_v.len()];
            for _ in 0..count {
                let element: usize = offset
                    + index
                        .iter()
                        .zip(&stride_v)
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                bytes.extend_from_slice(&storage[element * size..(element + 1) * size]);
                for axis in (0..shape_v.len()).rev() {
                    index[axis] += 1;
                    if index[axis] < shape_v[axis] {
                        break;
                    }
                    index[axis] = 0;
                }
            }
            bytes
        };
        Ok(TensorData::from_bytes_vec(bytes, shape_v.clone(), dtype))
    };
    Ok(TensorSnapshot::from_closure(
        Rc::new(read),
        dtype,
        shape.to_vec().into(),
        Vec::new(),
        Vec::new(),
        ParamId::new(),
    ))
}

/// The node of `key` in the dict `dict`.
fn dict_entry(parsed: &pickle::Pickle, dict: usize, key: &str) -> Option<usize> {
    match &parsed.nodes[dict] {
        Node::Dict(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&parsed.nodes[*k], Node::Str(s) if s == key))
            .map(|&(_, v)| v),
        _ => None,
    }
}

// ----------------------------------------------------------------------------------- settings

/// A settings value with omegaconf nodes and `Namespace`s resolved to plain values.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Dict(BTreeMap<String, Value>),
    /// Anything else (tensors, arbitrary objects), described.
    Other(String),
}

impl Value {
    fn of(parsed: &pickle::Pickle, i: usize, depth: usize) -> Value {
        if depth > 64 {
            return Value::Other("nested too deep".into());
        }
        let of = |j: usize| Value::of(parsed, j, depth + 1);
        match &parsed.nodes[i] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(v) => Value::Int(*v),
            Node::Float(v) => Value::Float(*v),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes => Value::Other("bytes".into()),
            Node::Tuple(items) | Node::List(items) => {
                Value::List(items.iter().map(|&j| of(j)).collect())
            }
            Node::Dict(entries) => Value::Dict(
                entries
                    .iter()
                    .filter_map(|&(k, v)| {
                        let key = match &parsed.nodes[k] {
                            Node::Str(s) => s.clone(),
                            Node::Int(n) => n.to_string(),
                            _ => return None,
                        };
                        // omegaconf back-references; never needed and possibly cyclic.
                        if key == "_parent" {
                            return None;
                        }
                        Some((key, of(v)))
                    })
                    .collect(),
            ),
            Node::Global { module, name } => Value::Other(format!("{module}.{name}")),
            Node::Storage { .. } | Node::Tensor { .. } => Value::Other("tensor".into()),
            Node::Object { class, args, state } => {
                let class_name = match &parsed.nodes[*class] {
                    Node::Global { module, name } => format!("{module}.{name}"),
                    _ => "object".into(),
                };
                match state.map(|s| &parsed.nodes[s]) {
                    Some(Node::Dict(_)) => {
                        let state = state.expect("matched");
                        // omegaconf containers keep their entries in `_content`, value nodes
                        // their value in `_val`; other objects (argparse.Namespace) are their
                        // attributes.
                        if class_name.starts_with("omegaconf.") {
                            for field in ["_content", "_val"] {
                                if let Some(v) = dict_entry(parsed, state, field) {
                                    return of(v);
                                }
                            }
                        }
                        of(state)
                    }
                    // An enum member and the like: `Class("value")`.
                    None => match &parsed.nodes[*args] {
                        Node::Tuple(a) if a.len() == 1 => match of(a[0]) {
                            v @ Value::Str(_) => v,
                            _ => Value::Other(class_name),
                        },
                        _ => Value::Other(class_name),
                    },
                    _ => Value::Other(class_name),
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Str(s) => format!("{s:?}"),
            Value::Other(s) => format!("<{s}>"),
            Value::List(_) => "[...]".into(),
            Value::Dict(_) => "{...}".into(),
        }
    }
}

/// The wav2vec2 settings of a checkpoint, and where its network's tensors are.
struct Settings<'a> {
    path: &'a Path,
    /// The settings of the wav2vec2 network (`cfg.model`, `args`, or their `w2v_args`).
    fields: &'a BTreeMap<String, Value>,
    /// `"w2v_encoder.w2v_model."` in fine-tuned checkpoints.
    prefix: Option<String>,
    extractor_mode: String,
}

impl<'a> Settings<'a> {
    fn find(path: &'a Path, top: &'a BTreeMap<String, Value>) -> Result<Self, FairseqError> {
        let not_fairseq = |message: &str| FairseqError::NotFairseq {
            path: path.to_path_buf(),
            message: message.into(),
        };
        if !top.contains_key("model") {
            return Err(not_fairseq("no `model` entry (the state dict)"));
        }
        let model_of = |v: &'a Value| match v {
            Value::Dict(d) => match d.get("model") {
                Some(Value::Dict(m)) => Some(m),
                _ => None,
            },
            _ => None,
        };
        let mut fields = match (top.get("cfg"), top.get("args")) {
            (Some(cfg), _) if model_of(cfg).is_some() => model_of(cfg).expect("checked"),
            (_, Some(Value::Dict(args))) => args,
            _ => {
                return Err(not_fairseq(
                    "neither `cfg.model` nor `args` holds the model settings",
                ))
            }
        };
        let mut prefix = None;
        if let Some(w2v) = fields.get("w2v_args") {
            // Fine-tuned: the pre-training settings (a cfg with `model`, or a Namespace).
            fields = match (model_of(w2v), w2v) {
                (Some(m), _) => m,
                (None, Value::Dict(args)) => args,
                _ => {
                    return Err(not_fairseq(
                        "a fine-tuned checkpoint whose `w2v_args` holds no model settings",
                    ))
                }
            };
            prefix = Some("w2v_encoder.w2v_model.".to_string());
        }
        if let Some(Value::Str(name)) = fields.get("_name") {
            if name != "wav2vec2" {
                return Err(FairseqError::Unsupported {
                    path: path.to_path_buf(),
                    field: "model._name".into(),
                    value: format!("{name:?}"),
                    supported: "\"wav2vec2\" (or a wav2vec_ctc fine-tuning of one)",
                });
            }
        }
        let mut settings = Self {
            path,
            fields,
            prefix,
            extractor_mode: String::new(),
        };
        settings.extractor_mode = settings.string("extractor_mode", "default")?;
        Ok(settings)
    }

    fn invalid(&self, field: &str, value: &Value, message: impl Into<String>) -> FairseqError {
        FairseqError::Setting {
            path: self.path.to_path_buf(),
            field: field.into(),
            value: value.describe(),
            message: message.into(),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).filter(|v| **v != Value::None)
    }

    fn usize(&self, field: &str, default: usize) -> Result<usize, FairseqError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Int(v)) if *v >= 0 => Ok(*v as usize),
            Some(v) => Err(self.invalid(field, v, "expected a non-negative integer")),
        }
    }

    fn float(&self, field: &str, default: f64) -> Result<f64, FairseqError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Float(v)) => Ok(*v),
            Some(Value::Int(v)) => Ok(*v as f64),
            Some(v) => Err(self.invalid(field, v, "expected a number")),
        }
    }

    fn bool(&self, field: &str, default: bool) -> Result<bool, FairseqError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(v)) => Ok(*v),
            Some(v) => Err(self.invalid(field, v, "expected a bool")),
        }
    }

    fn string(&self, field: &str, default: &str) -> Result<String, FairseqError> {
        match self.get(field) {
            None => Ok(default.into()),
            Some(Value::Str(v)) => Ok(v.clone()),
            Some(v) => Err(self.invalid(field, v, "expected a string")),
        }
    }

    fn unsupported(&self, field: &str, value: String, supported: &'static str) -> FairseqError {
        FairseqError::Unsupported {
            path: self.path.to_path_buf(),
            field: field.into(),
            value,
            supported,
        }
    }

    /// The architecture, with fairseq's defaults for settings older checkpoints lack.
    fn config(&self) -> Result<Wav2Vec2Config, FairseqError> {
        let activation = self.string("activation_fn", "gelu")?;
        if activation != "gelu" {
            return Err(self.unsupported("activation_fn", format!("{activation:?}"), "\"gelu\""));
        }
        let feat_extract_norm = match self.extractor_mode.as_str() {
            "default" => "group",
            "layer_norm" => "layer",
            other => {
                return Err(self.unsupported(
                    "extractor_mode",
                    format!("{other:?}"),
                    "\"default\" or \"layer_norm\"",
                ))
            }
        };
        let layer_type = self.string("layer_type", "transformer")?;
        if layer_type != "transformer" {
            return Err(self.unsupported(
                "layer_type",
                format!("{layer_type:?}"),
                "\"transformer\" (no conformer layers)",
            ));
        }
        let pos_conv_depth = self.usize("pos_conv_depth", 1)?;
        if pos_conv_depth != 1 {
            return Err(self.unsupported(
                "pos_conv_depth",
                pos_conv_depth.to_string(),
                "1 (one positional convolution, as wav2vec2 and XLS-R)",
            ));
        }
        if self.bool("quantize_input", false)? {
            return Err(self.unsupported(
                "quantize_input",
                "True".into(),
                "False (no quantizer before the encoder)",
            ));
        }
        let spec = self.string(
            "conv_feature_layers",
            "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2",
        )?;
        let layers = parse_conv_layers(&spec).map_err(|message| FairseqError::Setting {
            path: self.path.to_path_buf(),
            field: "conv_feature_layers".into(),
            value: format!("{spec:?}"),
            message,
        })?;
        let dropout = self.float("dropout", 0.1)?;
        let config = Wav2Vec2Config {
            model_type: Some("wav2vec2".into()),
            hidden_size: self.usize("encoder_embed_dim", 768)?,
            num_hidden_layers: self.usize("encoder_layers", 12)?,
            num_attention_heads: self.usize("encoder_attention_heads", 12)?,
            intermediate_size: self.usize("encoder_ffn_embed_dim", 3072)?,
            hidden_act: activation,
            hidden_dropout: dropout,
            activation_dropout: self.float("activation_dropout", 0.0)?,
            attention_dropout: self.float("attention_dropout", 0.1)?,
            feat_proj_dropout: self.float("dropout_input", 0.0)?,
            layerdrop: self.float("encoder_layerdrop", 0.0)?,
            layer_norm_eps: 1e-5,
            feat_extract_norm: feat_extract_norm.into(),
            feat_extract_activation: "gelu".into(),
            conv_dim: layers.iter().map(|l| l.0).collect(),
            conv_kernel: layers.iter().map(|l| l.1).collect(),
            conv_stride: layers.iter().map(|l| l.2).collect(),
            conv_bias: self.bool("conv_bias", false)?,
            num_conv_pos_embeddings: self.usize("conv_pos", 128)?,
            num_conv_pos_embedding_groups: self.usize("conv_pos_groups", 16)?,
            do_stable_layer_norm: self.bool("layer_norm_first", false)?,
            num_feat_extract_layers: Some(layers.len()),
            add_adapter: false,
            adapter_attn_dim: None,
        };
        config.validate().map_err(|source| FairseqError::Config {
            path: self.path.to_path_buf(),
            source,
        })?;
        Ok(config)
    }
}

/// Parses fairseq's `conv_feature_layers`, a Python expression in the restricted form its
/// configs use: a sum of lists of `(dim, kernel, stride)` tuples, each list optionally
/// multiplied by an integer, e.g. `"[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"`.
pub fn parse_conv_layers(spec: &str) -> Result<Vec<(usize, usize, usize)>, String> {
    let mut p = Expr {
        chars: spec.chars().filter(|c| !c.is_whitespace()).collect(),
        pos: 0,
    };
    let mut layers = Vec::new();
    loop {
        let mut term = p.list()?;
        if p.eat('*') {
            let n = p.int()?;
            let one = term.clone();
            term = (0..n).flat_map(|_| one.clone()).collect();
        }
        layers.extend(term);
        if p.pos == p.chars.len() {
            break;
        }
        if !p.eat('+') {
            return Err(format!(
                "expected `+` or `*` at character {} (only sums of lists of (dim, kernel, \
                 stride) tuples, times integers, are understood)",
                p.pos
            ));
        }
    }
    if layers.is_empty() {
        return Err("no convolution layers".into());
    }
    Ok(layers)
}

struct Expr {
    chars: Vec<char>,
    pos: usize,
}

impl Expr {
    fn eat(&mut self, c: char) -> bool {
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{c}` at character {}", self.pos))
        }
    }

    fn int(&mut self) -> Result<usize, String> {
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(char::is_ascii_digit) {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        digits
            .parse()
            .map_err(|_| format!("expected an integer at character {start}"))
    }

    fn list(&mut self) -> Result<Vec<(usize, usize, usize)>, String> {
        self.expect('[')?;
        let mut items = Vec::new();
        if self.eat(']') {
            return Ok(items);
        }
        loop {
            self.expect('(')?;
            let dim = self.int()?;
            self.expect(',')?;
            let kernel = self.int()?;
            self.expect(',')?;
            let stride = self.int()?;
            self.expect(')')?;
            items.push((dim, kernel, stride));
            if self.eat(']') {
                return Ok(items);
            }
            self.expect(',')?;
            if self.eat(']') {
                return Ok(items);
            }
        }
    }
}

// ----------------------------------------------------------------------------------- names

/// Tensors of fairseq's pre-training model that `Wav2Vec2Model` has no use for.
fn is_pretraining_extra(name: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "quantizer.",
        "input_quantizer.",
        "project_q.",
        "project_inp.",
        "final_proj.",
        "target_glu.",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(name, "mask_emb" | "label_embs_concat" | "_float_tensor")
}

/// Tensors of a fine-tuned checkpoint outside the wav2vec2 network: the CTC projection.
fn is_finetuning_extra(name: &str) -> bool {
    name.starts_with("w2v_encoder.proj.")
}

/// The Hugging Face name (as [`crate::load`] reads) of a fairseq wav2vec2 tensor, or `None`
/// for a name that is not part of the network. Feature-encoder norms are accepted at either
/// position (`conv_layers.N.2.` for the GroupNorm of `extractor_mode = default`,
/// `conv_layers.N.2.1.` for the LayerNorms of `layer_norm`); the loader then rejects a norm
/// the architecture does not have.
pub fn fairseq_to_hf(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("feature_extractor.conv_layers.") {
        let (layer, rest) = rest.split_once('.')?;
        layer.parse::<usize>().ok()?;
        let part = match rest {
            "0.weight" => "conv.weight",
            "0.bias" => "conv.bias",
            "2.weight" | "2.1.weight" => "layer_norm.weight",
            "2.bias" | "2.1.bias" => "layer_norm.bias",
            _ => return None,
        };
        return Some(format!("feature_extractor.conv_layers.{layer}.{part}"));
    }
    if let Some(rest) = name.strip_prefix("encoder.layers.") {
        let (layer, rest) = rest.split_once('.')?;
        layer.parse::<usize>().ok()?;
        let (module, leaf) = rest.rsplit_once('.')?;
        if leaf != "weight" && leaf != "bias" {
            return None;
        }
        let module = match module {
            "self_attn.q_proj" => "attention.q_proj",
            "self_attn.k_proj" => "attention.k_proj",
            "self_attn.v_proj" => "attention.v_proj",
            "self_attn.out_proj" => "attention.out_proj",
            "self_attn_layer_norm" => "layer_norm",
            "fc1" => "feed_forward.intermediate_dense",
            "fc2" => "feed_forward.output_dense",
            "final_layer_norm" => "final_layer_norm",
            _ => return None,
        };
        return Some(format!("encoder.layers.{layer}.{module}.{leaf}"));
    }
    if let Some(leaf) = name.strip_prefix("encoder.pos_conv.0.") {
        return matches!(
            leaf,
            "weight_g"
                | "weight_v"
                | "weight"
                | "bias"
                | "parametrizations.weight.original0"
                | "parametrizations.weight.original1"
        )
        .then(|| format!("encoder.pos_conv_embed.conv.{leaf}"));
    }
    let mapped = match name {
        "encoder.layer_norm.weight" | "encoder.layer_norm.bias" => name.to_string(),
        "layer_norm.weight" => "feature_projection.layer_norm.weight".into(),
        "layer_norm.bias" => "feature_projection.layer_norm.bias".into(),
        "post_extract_proj.weight" => "feature_projection.projection.weight".into(),
        "post_extract_proj.bias" => "feature_projection.projection.bias".into(),
        _ => return None,
    };
    Some(mapped)
}

/// fairseq names of the tensors a `Wav2Vec2Model` of `config` needs, keyed by Hugging Face
/// name (the inverse of [`fairseq_to_hf`] on a network's own tensors; weight norm spelled
/// `weight_g`/`weight_v`).
pub fn hf_to_fairseq_names(config: &Wav2Vec2Config) -> HashMap<String, String> {
    let layer_norm = config.feat_extract_norm == "layer";
    let mut names = HashMap::new();
    let mut add = |fs: String| {
        let hf = fairseq_to_hf(&fs).expect("a network tensor");
        names.insert(hf, fs);
    };
    for i in 0..config.conv_dim.len() {
        add(format!("feature_extractor.conv_layers.{i}.0.weight"));
        if config.conv_bias {
            add(format!("feature_extractor.conv_layers.{i}.0.bias"));
        }
        let norm = if layer_norm {
            Some(format!("feature_extractor.conv_layers.{i}.2.1."))
        } else if i == 0 {
            Some(format!("feature_extractor.conv_layers.{i}.2."))
        } else {
            None
        };
        if let Some(norm) = norm {
            add(format!("{norm}weight"));
            add(format!("{norm}bias"));
        }
    }
    for leaf in ["weight", "bias"] {
        add(format!("layer_norm.{leaf}"));
        add(format!("post_extract_proj.{leaf}"));
        add(format!("encoder.layer_norm.{leaf}"));
        for i in 0..config.num_hidden_layers {
            for m in [
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.out_proj",
                "self_attn_layer_norm",
                "fc1",
                "fc2",
                "final_layer_norm",
            ] {
                add(format!("encoder.layers.{i}.{m}.{leaf}"));
            }
        }
    }
    for leaf in ["weight_g", "weight_v", "bias"] {
        add(format!("encoder.pos_conv.0.{leaf}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_layers_parse_the_forms_fairseq_configs_use() {
        let xlsr = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2";
        let layers = parse_conv_layers(xlsr).unwrap();
        assert_eq!(layers.len(), 7);
        assert_eq!(layers[0], (512, 10, 5));
        assert_eq!(layers[1..5], [(512, 3, 2); 4]);
        assert_eq!(layers[5..], [(512, 2, 2); 2]);
        assert_eq!(
            parse_conv_layers("[(16, 10, 5), (16, 3, 2),]").unwrap(),
            vec![(16, 10, 5), (16, 3, 2)]
        );
        for bad in [
            "",
            "[(512, 10)]",
            "[(512, 10, 5)] - [(1,1,1)]",
            "eval('x')",
            "[]",
        ] {
            assert!(parse_conv_layers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pickle_machine_keeps_unknown_objects_and_shared_references() {
        // pickle.dumps({'a': collections.defaultdict(dict), 'b': -300, 'big': -2**40,
        //               'c': [1.5, None, True], 's': {3}, 'again': <the same list as 'c'>},
        //              protocol=2)
        let bytes: &[u8] = b"\
            \x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x61\x71\x01\x63\x63\x6f\x6c\x6c\x65\x63\
            \x74\x69\x6f\x6e\x73\x0a\x64\x65\x66\x61\x75\x6c\x74\x64\x69\x63\x74\x0a\x71\x02\x63\
            \x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x64\x69\x63\x74\x0a\x71\x03\x85\x71\
            \x04\x52\x71\x05\x58\x01\x00\x00\x00\x62\x71\x06\x4a\xd4\xfe\xff\xff\x58\x03\x00\x00\
            \x00\x62\x69\x67\x71\x07\x8a\x06\x00\x00\x00\x00\x00\xff\x58\x01\x00\x00\x00\x63\x71\
            \x08\x5d\x71\x09\x28\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x4e\x88\x65\x58\x01\x00\x00\
            \x00\x73\x71\x0a\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x73\x65\x74\x0a\
            \x71\x0b\x5d\x71\x0c\x4b\x03\x61\x85\x71\x0d\x52\x71\x0e\x58\x05\x00\x00\x00\x61\x67\
            \x61\x69\x6e\x71\x0f\x68\x09\x75\x2e";
        let parsed = pickle::parse(bytes).unwrap();
        let Value::Dict(d) = Value::of(&parsed, parsed.root, 0) else {
            panic!("not a dict");
        };
        assert_eq!(d["a"], Value::Other("collections.defaultdict".into()));
        assert_eq!(d["b"], Value::Int(-300));
        assert_eq!(d["big"], Value::Int(-(1i64 << 40)));
        let list = Value::List(vec![Value::Float(1.5), Value::None, Value::Bool(true)]);
        assert_eq!(d["c"], list);
        // memoised while empty, filled afterwards: the reference sees the filled list
        assert_eq!(d["again"], list);
        assert_eq!(d["s"], Value::List(vec![Value::Int(3)]));
    }

    #[test]
    fn names_map_one_to_one() {
        for config in [Wav2Vec2Config::micro(), Wav2Vec2Config::base()] {
            let names = hf_to_fairseq_names(&config);
            let fairseq: std::collections::HashSet<_> = names.values().collect();
            assert_eq!(fairseq.len(), names.len());
        }
        assert_eq!(
            fairseq_to_hf("encoder.layers.0.self_attn.bogus.weight"),
            None
        );
        assert_eq!(fairseq_to_hf("encoder.layers.x.fc1.weight"), None);
        assert!(is_pretraining_extra("quantizer.vars"));
        assert!(!is_pretraining_extra("quantizer"));
    }
}
