//! LoRA adapters on disk in Hugging Face PEFT's layout, so they move both ways between this
//! crate and `peft.PeftModel`:
//!
//! - `adapter_config.json`: PEFT's `LoraConfig` (`peft_type: "LORA"`, `r`, `lora_alpha`,
//!   `lora_dropout`, `target_modules` with Hugging Face names, `layers_to_transform`,
//!   `use_rslora`, `bias: "none"`, ...).
//! - `adapter_model.safetensors`: f32 tensors
//!   `base_model.model.encoder.layers.{N}.{attention.q_proj|...}.lora_A.weight` `[r, in]` and
//!   `.lora_B.weight` `[out, r]` (PyTorch layout; `base_model.model.wav2vec2.` is also read, as
//!   PEFT writes it for a model with a head). Tensors that are not adapters — a classifier head
//!   trained with them — are stored under [`EXTRA_PREFIX`] (`fadlora.head.linear.weight`, ...);
//!   PEFT reports them as unexpected keys and ignores them.
//!
//! (IA)^3 adapters (`peft_type: "IA3"`, `target_modules`, `feedforward_modules`) hold one
//! `...{projection}.ia3_l` per adapted projection, `[out, 1]` or, for a feed-forward module,
//! `[1, in]`; [`Wav2Vec2Model::load_adapter`] reads either kind.
//!
//! Reading is strict where PEFT is lenient: every target must name a projection of wav2vec2,
//! every adapter tensor must be present with the shape `r` implies, and the file must hold
//! nothing else; each failure names the file and the setting or tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
use serde_json::{json, Value};

use crate::load::{permute, LoadError, TensorSource};
use crate::lora::{Ia3Config, LoraConfig, LoraError, LoraTarget};
use crate::model::Wav2Vec2Model;

pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Key prefix of the tensors saved beside the adapters that are not part of wav2vec2 (e.g.
/// `fadlora.head.linear.weight` for a detector's head).
pub const EXTRA_PREFIX: &str = "fadlora.";
/// Where PEFT puts a bare `Wav2Vec2Model`'s modules.
const PEFT_PREFIX: &str = "base_model.model.";
/// Where PEFT puts them for `Wav2Vec2For*` models (the encoder sits under `wav2vec2`).
const PEFT_PREFIX_WITH_HEAD: &str = "base_model.model.wav2vec2.";

/// Why an adapter directory cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: `{field}`: {message}", path.display())]
    Config {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Lora {
        path: PathBuf,
        #[source]
        source: LoraError,
    },
    #[error(
        "{}: tensor `{name}` has shape {found:?}, but r = {rank} in {ADAPTER_CONFIG_FILE} and the \
         base model's projection give {expected:?}",
        path.display()
    )]
    Shape {
        path: PathBuf,
        name: String,
        rank: usize,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: {source}", path.display())]
    Tensors {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    #[error("cannot save adapters: {0}")]
    Save(#[from] LoraError),
    #[error("cannot write {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// A tensor stored beside the adapters (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What `adapter_config.json` says besides the [`LoraConfig`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterInfo {
    pub base_model_name_or_path: Option<String>,
    pub task_type: Option<String>,
}

/// Options of [`Wav2Vec2Model::save_adapter`].
#[derive(Debug, Clone, Default)]
pub struct SaveAdapterOptions {
    /// Written to `base_model_name_or_path` (PEFT loads the base from there when asked).
    pub base_model_name_or_path: Option<String>,
    /// Saved under [`EXTRA_PREFIX`] + name.
    pub extras: BTreeMap<String, ExtraTensor>,
}

/// Reads `dir/adapter_config.json` as a [`LoraConfig`], rejecting PEFT options this model does
/// not implement (DoRA, trained biases, per-module ranks, `modules_to_save`, regex targets, ...).
pub fn read_adapter_config(dir: &Path) -> Result<(LoraConfig, AdapterInfo), AdapterError> {
    let (json, path) = read_config_json(dir)?;
    parse_adapter_config(&json).map_err(|e| e.at(&path))
}

/// Reads `dir/adapter_config.json` of an (IA)^3 adapter as an [`Ia3Config`].
pub fn read_ia3_config(dir: &Path) -> Result<(Ia3Config, AdapterInfo), AdapterError> {
    let (json, path) = read_config_json(dir)?;
    parse_ia3_config(&json).map_err(|e| e.at(&path))
}

fn read_config_json(dir: &Path) -> Result<(Value, PathBuf), AdapterError> {
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| AdapterError::Io {
        path: path.clone(),
        source,
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|source| AdapterError::Json {
        path: path.clone(),
        source,
    })?;
    Ok((json, path))
}

/// PEFT's name of the method an adapter directory holds (`LORA`, `IA3`, ...).
fn peft_type(json: &Value) -> &str {
    get(json, "peft_type").and_then(Value::as_str).unwrap_or("")
}

impl ConfigIssue {
    fn at(self, path: &Path) -> AdapterError {
        match self {
            ConfigIssue::Field(field, message) => AdapterError::Config {
                path: path.to_path_buf(),
                field,
                message,
            },
            ConfigIssue::Lora(source) => AdapterError::Lora {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

fn parse_ia3_config(json: &Value) -> Result<(Ia3Config, AdapterInfo), ConfigIssue> {
    let kind = peft_type(json);
    if kind != "IA3" {
        return Err(field("peft_type", format!("is `{kind}`, not IA3")));
    }
    let targets = module_list(json, "target_modules")?;
    let feedforward = match get(json, "feedforward_modules") {
        None => Vec::new(),
        Some(_) => module_list(json, "feedforward_modules")?,
    };
    if get(json, "fan_in_fan_out")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(field(
            "fan_in_fan_out",
            "is true, which is not supported".into(),
        ));
    }
    for name in ["modules_to_save", "exclude_modules"] {
        if let Some(value) = get(json, name).filter(|v| v.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(field(name, format!("{value} is not supported")));
        }
    }
    let config = Ia3Config {
        targets,
        feedforward,
    };
    config.check().map_err(ConfigIssue::Lora)?;
    Ok((config, adapter_info(json)))
}

enum ConfigIssue {
    Field(&'static str, String),
    Lora(LoraError),
}

fn field(name: &'static str, message: String) -> ConfigIssue {
    ConfigIssue::Field(name, message)
}

/// `name`'s value, if set: PEFT writes `null` for options left at their default.
fn get<'a>(json: &'a Value, name: &str) -> Option<&'a Value> {
    json.get(name).filter(|v| !v.is_null())
}

/// The first step that fails names the error, so their order is part of what a caller sees:
/// an adapter of another kind is reported as such, not by one of its options.
fn parse_adapter_config(json: &Value) -> Result<(LoraConfig, AdapterInfo), ConfigIssue> {
    require_lora(json)?;
    let (rank, alpha) = rank_and_alpha(json)?;
    let targets = target_modules(json)?;
    let layers = layers_to_transform(json)?;
    check_layers_pattern(json)?;
    reject_unsupported_options(json)?;
    let config = LoraConfig {
        rank,
        alpha,
        dropout: get(json, "lora_dropout")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        targets,
        layers,
        use_rslora: get(json, "use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        use_dora: get(json, "use_dora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        moe: None,
    };
    Ok((config, adapter_info(json)))
}

fn require_lora(json: &Value) -> Result<(), ConfigIssue> {
    let peft_type = get(json, "peft_type").and_then(Value::as_str).unwrap_or("");
    if peft_type != "LORA" {
        return Err(field(
            "peft_type",
            format!("is `{peft_type}`; only LORA adapters are supported"),
        ));
    }
    Ok(())
}

/// `r` and `lora_alpha`, both required.
fn rank_and_alpha(json: &Value) -> Result<(usize, f64), ConfigIssue> {
    let rank = get(json, "r")
        .and_then(Value::as_u64)
        .ok_or_else(|| field("r", "missing or not a positive integer".into()))?
        as usize;
    let alpha = get(json, "lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| field("lora_alpha", "missing or not a number".into()))?;
    Ok((rank, alpha))
}

/// `target_modules` as projections, without duplicates, in [`LoraTarget`] order. A string is
/// PEFT's regular-expression form, which is refused rather than interpreted.
fn target_modules(json: &Value) -> Result<Vec<LoraTarget>, ConfigIssue> {
    module_list(json, "target_modules")
}

/// A list of module names (`target_modules`, `feedforward_modules`) as projections.
fn module_list(json: &Value, key: &'static str) -> Result<Vec<LoraTarget>, ConfigIssue> {
    let names: Vec<&str> = match get(json, key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| field(key, format!("entry {v} is not a string")))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => {
            return Err(field(
                key,
                format!("`{s}` is a regular expression; list module names instead"),
            ))
        }
        _ => return Err(field(key, "missing".into())),
    };
    let mut targets = Vec::new();
    for name in names {
        let target = LoraTarget::from_hf_name(name).map_err(|e| ConfigIssue::Lora(e.into()))?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    targets.sort();
    Ok(targets)
}

/// `layers_to_transform`: one index or a list of them; all layers when absent.
fn layers_to_transform(json: &Value) -> Result<Option<Vec<usize>>, ConfigIssue> {
    let not_an_index = |v: &dyn std::fmt::Display| {
        field("layers_to_transform", format!("{v} is not a layer index"))
    };
    match get(json, "layers_to_transform") {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(vec![
            n.as_u64().ok_or_else(|| not_an_index(n))? as usize
        ])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .map(|i| i as usize)
                    .ok_or_else(|| not_an_index(v))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(field(
            "layers_to_transform",
            format!("{other} is not a list of layer indices"),
        )),
    }
}

/// `layers_pattern` may only name the encoder's `layers`, the one list `layers_to_transform`
/// indexes here.
fn check_layers_pattern(json: &Value) -> Result<(), ConfigIssue> {
    match get(json, "layers_pattern") {
        None => Ok(()),
        Some(Value::String(s)) if s == "layers" => Ok(()),
        Some(Value::Array(a)) if a.iter().all(|v| v.as_str() == Some("layers")) => Ok(()),
        Some(other) => Err(field(
            "layers_pattern",
            format!("{other}: the encoder's layers are `layers`"),
        )),
    }
}

/// Options that change the computation in ways this implementation does not follow.
fn reject_unsupported_options(json: &Value) -> Result<(), ConfigIssue> {
    let bias = get(json, "bias").and_then(Value::as_str).unwrap_or("none");
    if bias != "none" {
        return Err(field(
            "bias",
            format!("is `{bias}`; only \"none\" (frozen biases) is supported"),
        ));
    }
    for flag in ["fan_in_fan_out", "lora_bias", "use_qalora", "use_bdlora"] {
        if get(json, flag).and_then(Value::as_bool).unwrap_or(false) {
            return Err(field(flag, "is true, which is not supported".into()));
        }
    }
    for name in [
        "rank_pattern",
        "alpha_pattern",
        "modules_to_save",
        "layer_replication",
        "target_parameters",
        "exclude_modules",
        "trainable_token_indices",
    ] {
        let set = get(json, name).filter(|value| match value {
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        });
        if let Some(value) = set {
            return Err(field(name, format!("{value} is not supported")));
        }
    }
    Ok(())
}

fn adapter_info(json: &Value) -> AdapterInfo {
    let text = |name| get(json, name).and_then(Value::as_str).map(str::to_string);
    AdapterInfo {
        base_model_name_or_path: text("base_model_name_or_path"),
        task_type: text("task_type"),
    }
}

/// PEFT's `adapter_config.json` for `config`.
pub fn adapter_config_json(config: &LoraConfig, info: &AdapterInfo) -> Value {
    json!({
        "auto_mapping": {
            "base_model_class": "Wav2Vec2Model",
            "parent_library": "transformers.models.wav2vec2.modeling_wav2vec2"
        },
        "base_model_name_or_path": info.base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": config.layers,
        "lora_alpha": config.alpha,
        "lora_bias": false,
        "lora_dropout": config.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
        "target_modules": config.targets.iter().map(|t| t.hf_name()).collect::<Vec<_>>(),
        "task_type": info.task_type,
        "use_dora": config.use_dora,
        "use_rslora": config.use_rslora,
    })
}

/// PEFT's `adapter_config.json` for an (IA)^3 `config`.
pub fn ia3_config_json(config: &Ia3Config, info: &AdapterInfo) -> Value {
    let names = |targets: &[LoraTarget]| targets.iter().map(|t| t.hf_name()).collect::<Vec<_>>();
    json!({
        "auto_mapping": {
            "base_model_class": "Wav2Vec2Model",
            "parent_library": "transformers.models.wav2vec2.modeling_wav2vec2"
        },
        "base_model_name_or_path": info.base_model_name_or_path,
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "feedforward_modules": names(&config.feedforward),
        "inference_mode": true,
        "init_ia3_weights": true,
        "modules_to_save": null,
        "peft_type": "IA3",
        "revision": null,
        "target_modules": names(&config.targets),
        "task_type": info.task_type,
    })
}

fn ia3_key(prefix: &str, layer: usize, target: LoraTarget) -> String {
    format!("{prefix}encoder.layers.{layer}.{}.ia3_l", target.hf_path())
}

/// PEFT's `ia3_l` shape: a column for an output scaling, a row for a feed-forward input one.
fn ia3_shape(feedforward: bool, len: usize) -> [usize; 2] {
    if feedforward {
        [1, len]
    } else {
        [len, 1]
    }
}

fn adapter_key(prefix: &str, layer: usize, target: LoraTarget, matrix: &str) -> String {
    format!(
        "{prefix}encoder.layers.{layer}.{}.lora_{matrix}.weight",
        target.hf_path()
    )
}

/// DoRA's magnitude `[out]`, which PEFT saves without a `.weight` suffix.
fn magnitude_key(prefix: &str, layer: usize, target: LoraTarget) -> String {
    format!(
        "{prefix}encoder.layers.{layer}.{}.lora_magnitude_vector",
        target.hf_path()
    )
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Adds the adapters of a PEFT adapter directory to this (base) model: the pretrained
    /// weights are frozen and the adapters trainable, as after [`Self::with_lora`]. Fails on
    /// any tensor that is not an adapter; see [`Self::load_adapter_with_extras`] for a head.
    pub fn load_adapter(self, dir: &Path, device: &B::Device) -> Result<Self, AdapterError> {
        let (model, extras) = self.load_adapter_with_extras(dir, device)?;
        match extras.keys().next() {
            None => Ok(model),
            Some(name) => Err(AdapterError::Tensors {
                path: dir.join(ADAPTER_WEIGHTS_FILE),
                source: LoadError::UnexpectedTensor {
                    name: format!("{EXTRA_PREFIX}{name}"),
                    shape: extras[name].shape.clone(),
                    others: extras.len() - 1,
                },
            }),
        }
    }

    /// [`Self::load_adapter`], also returning the tensors stored under [`EXTRA_PREFIX`] (keyed
    /// without it).
    pub fn load_adapter_with_extras(
        self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Self, BTreeMap<String, ExtraTensor>), AdapterError> {
        if peft_type(&read_config_json(dir)?.0) == "IA3" {
            return self.load_ia3_with_extras(dir, device);
        }
        let (config, _) = read_adapter_config(dir)?;
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let mut model =
            self.try_with_lora(&config, device)
                .map_err(|source| AdapterError::Lora {
                    path: config_path,
                    source,
                })?;
        let path = dir.join(ADAPTER_WEIGHTS_FILE);
        let tensors_err = |source| AdapterError::Tensors {
            path: path.clone(),
            source,
        };
        let mut src = TensorSource::open(&path).map_err(tensors_err)?;
        let prefix = peft_prefix(&src);
        let rank = config.rank;
        let arch = model.config.clone();
        let mut take = |name: String, shape: &[usize]| -> Result<Vec<f32>, AdapterError> {
            src.take(&name, shape).map_err(|e| match e {
                LoadError::ShapeMismatch {
                    name,
                    expected,
                    found,
                } => AdapterError::Shape {
                    path: path.clone(),
                    name,
                    rank,
                    expected,
                    found,
                },
                other => tensors_err(other),
            })
        };
        for (index, layer) in model.encoder.layers.iter_mut().enumerate() {
            if !config.adapts_layer(index) {
                continue;
            }
            for &target in &config.targets {
                let (d_in, d_out) = arch.projection_dims(target);
                let a = take(adapter_key(prefix, index, target, "A"), &[rank, d_in])?;
                let b = take(adapter_key(prefix, index, target, "B"), &[d_out, rank])?;
                let magnitude = if config.use_dora {
                    Some(take(magnitude_key(prefix, index, target), &[d_out])?)
                } else {
                    None
                };
                let lora = layer
                    .projection_mut(target)
                    .lora
                    .as_mut()
                    .expect("with_lora adapted this projection");
                let a = permute(&a, &[rank, d_in], &[1, 0]);
                let b = permute(&b, &[d_out, rank], &[1, 0]);
                lora.a = trainable(lora.a.id, TensorData::new(a, [d_in, rank]), device);
                lora.b = trainable(lora.b.id, TensorData::new(b, [rank, d_out]), device);
                if let (Some(values), Some(param)) = (magnitude, lora.magnitude.as_mut()) {
                    *param = Param::initialized(
                        param.id,
                        Tensor::from_data(TensorData::new(values, [d_out]), device).require_grad(),
                    );
                }
            }
        }
        let extras = take_extras(&mut src).map_err(tensors_err)?;
        Ok((model, extras))
    }

    fn load_ia3_with_extras(
        self,
        dir: &Path,
        device: &B::Device,
    ) -> Result<(Self, BTreeMap<String, ExtraTensor>), AdapterError> {
        let (config, _) = read_ia3_config(dir)?;
        let mut model =
            self.try_with_ia3(&config, device)
                .map_err(|source| AdapterError::Lora {
                    path: dir.join(ADAPTER_CONFIG_FILE),
                    source,
                })?;
        let path = dir.join(ADAPTER_WEIGHTS_FILE);
        let tensors_err = |source| AdapterError::Tensors {
            path: path.clone(),
            source,
        };
        let mut src = TensorSource::open(&path).map_err(tensors_err)?;
        let prefix = peft_prefix(&src);
        for (index, layer) in model.encoder.layers.iter_mut().enumerate() {
            for &target in &config.targets {
                let ia3 = layer
                    .projection_mut(target)
                    .ia3
                    .as_mut()
                    .expect("with_ia3 adapted this projection");
                let [len] = ia3.scale.lazy_shape().dims();
                let values = src
                    .take(
                        &ia3_key(prefix, index, target),
                        &ia3_shape(ia3.feedforward, len),
                    )
                    .map_err(tensors_err)?;
                ia3.scale = Param::initialized(
                    ia3.scale.id,
                    Tensor::from_data(TensorData::new(values, [len]), device).require_grad(),
                );
            }
        }
        let extras = take_extras(&mut src).map_err(tensors_err)?;
        Ok((model, extras))
    }

    /// Writes the adapters (and `options.extras`) in PEFT's layout into `dir` (created if
    /// needed): `adapter_config.json` and `adapter_model.safetensors`.
    pub fn save_adapter(
        &self,
        dir: &Path,
        options: &SaveAdapterOptions,
    ) -> Result<(), AdapterError> {
        if self.lora.is_none() && self.ia3.is_none() {
            return Err(LoraError::NotAdapted.into());
        }
        if self.lora.as_ref().is_some_and(|l| l.moe.is_some()) {
            return Err(LoraError::NoPeftLayout.into());
        }
        std::fs::create_dir_all(dir).map_err(|source| AdapterError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (index, target, lora) in self.adapters() {
            let (d_in, d_out) = self.config.projection_dims(target);
            let rank = lora.rank();
            let a = permute(&param_values(&lora.a), &[d_in, rank], &[1, 0]);
            let b = permute(&param_values(&lora.b), &[rank, d_out], &[1, 0]);
            tensors.push((
                adapter_key(PEFT_PREFIX, index, target, "A"),
                vec![rank, d_in],
                a,
            ));
            tensors.push((
                adapter_key(PEFT_PREFIX, index, target, "B"),
                vec![d_out, rank],
                b,
            ));
            if let Some(magnitude) = &lora.magnitude {
                let values = magnitude
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32");
                tensors.push((
                    magnitude_key(PEFT_PREFIX, index, target),
                    vec![d_out],
                    values,
                ));
            }
        }
        for (index, target, ia3) in self.ia3_vectors() {
            let values = ia3
                .scale
                .val()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("converted to f32");
            let shape = ia3_shape(ia3.feedforward, values.len());
            tensors.push((ia3_key(PEFT_PREFIX, index, target), shape.to_vec(), values));
        }
        for (name, extra) in &options.extras {
            tensors.push((
                format!("{EXTRA_PREFIX}{name}"),
                extra.shape.clone(),
                extra.data.clone(),
            ));
        }
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        write_safetensors(&weights, &tensors)?;
        let info = AdapterInfo {
            base_model_name_or_path: options.base_model_name_or_path.clone(),
            task_type: None,
        };
        let json = match (&self.lora, &self.ia3) {
            (Some(lora), _) => adapter_config_json(lora, &info),
            (None, Some(ia3)) => ia3_config_json(ia3, &info),
            (None, None) => unreachable!("checked above"),
        };
        let json = serde_json::to_string_pretty(&json).expect("JSON values serialise");
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        std::fs::write(&config_path, json).map_err(|source| AdapterError::Io {
            path: config_path,
            source,
        })
    }
}

/// Where the adapters' keys start: PEFT nests a bare `Wav2Vec2Model` and one with a head
/// differently.
fn peft_prefix(src: &TensorSource) -> &'static str {
    if src.keys().any(|k| k.starts_with(PEFT_PREFIX_WITH_HEAD)) {
        PEFT_PREFIX_WITH_HEAD
    } else {
        PEFT_PREFIX
    }
}

/// The tensors stored under [`EXTRA_PREFIX`] (keyed without it); then the file must hold
/// nothing else.
fn take_extras(src: &mut TensorSource) -> Result<BTreeMap<String, ExtraTensor>, LoadError> {
    let extra_keys: Vec<String> = src
        .keys()
        .filter(|k| k.starts_with(EXTRA_PREFIX))
        .map(str::to_string)
        .collect();
    let mut extras = BTreeMap::new();
    for key in extra_keys {
        let shape = src.shape(&key).expect("listed");
        let data = src.take(&key, &shape)?;
        let name = key[EXTRA_PREFIX.len()..].to_string();
        extras.insert(name, ExtraTensor { shape, data });
    }
    src.finish()?;
    Ok(extras)
}

fn trainable<B: Backend>(
    id: burn::module::ParamId,
    data: TensorData,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    Param::initialized(id, Tensor::from_data(data, device).require_grad())
}

fn param_values<B: Backend>(param: &Param<Tensor<B, 2>>) -> Vec<f32> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

/// Writes f32 tensors as safetensors with PyTorch's `{"format": "pt"}` metadata (as PEFT's
/// `save_pretrained`).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), AdapterError> {
    let write_err = |message: String| AdapterError::Write {
        path: path.to_path_buf(),
        message,
    };
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| write_err(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    safetensors::tensor::serialize_to_file(views, metadata, path)
        .map_err(|e| write_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_json() -> Value {
        json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
               "target_modules": ["v_proj", "q_proj"], "bias": "none", "use_rslora": false,
               "layers_to_transform": null, "rank_pattern": {}, "alpha_pattern": {}})
    }

    fn issue(json: Value) -> String {
        match parse_adapter_config(&json) {
            Ok(_) => panic!("accepted {json}"),
            Err(ConfigIssue::Field(field, message)) => format!("{field}: {message}"),
            Err(ConfigIssue::Lora(e)) => e.to_string(),
        }
    }

    #[test]
    fn peft_config_reads_and_writes_back() {
        let (config, _) = parse_adapter_config(&base_json()).ok().unwrap();
        assert_eq!(config.targets, vec![LoraTarget::Q, LoraTarget::V]);
        assert_eq!(
            (config.rank, config.alpha, config.layers.clone()),
            (4, 8.0, None)
        );
        let mut json = base_json();
        json["layers_to_transform"] = json!(1);
        json["use_rslora"] = json!(true);
        let (config, _) = parse_adapter_config(&json).ok().unwrap();
        assert_eq!(config.layers, Some(vec![1]));
        assert!(config.use_rslora);
        let written = adapter_config_json(&config, &AdapterInfo::default());
        let (again, _) = parse_adapter_config(&written).ok().unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn unsupported_peft_options_are_named() {
        let with = |key: &str, value: Value| {
            let mut json = base_json();
            json[key] = value;
            issue(json)
        };
        assert!(with("fan_in_fan_out", json!(true)).starts_with("fan_in_fan_out"));
        assert!(with("bias", json!("all")).starts_with("bias"));
        assert!(with("rank_pattern", json!({"q_proj": 8})).starts_with("rank_pattern"));
        assert!(with("modules_to_save", json!(["classifier"])).starts_with("modules_to_save"));
        assert!(with("target_modules", json!(".*proj")).contains("regular expression"));
        assert!(with("peft_type", json!("IA3")).starts_with("peft_type"));
        let err = with("target_modules", json!(["q_proj", "fc9"]));
        assert!(
            err.contains("`fc9`") && err.contains("q_proj, k_proj"),
            "{err}"
        );
    }
}
