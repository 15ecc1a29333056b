//! The run TOML ([`fadlora_run::config`] documents every key) meets the model crate: which
//! architecture a `[model]` table builds, which adapters a `[lora]` table adds, and the rules
//! only the model can judge (a preset's name and receptive field, valid LoRA settings). Load
//! run TOMLs with [`load_run_config`] / [`parse_run_config`], which apply those rules too.

use std::path::Path;

use fadlora_model::Wav2Vec2Config;
pub use fadlora_run::config::*;
use fadlora_run::RunError;

use crate::TrainError;

/// Reads a run TOML, checked by the schema and by [`check_model`] (see [`RunConfig::load`]).
pub fn load_run_config(path: impl AsRef<Path>) -> Result<RunConfig, TrainError> {
    Ok(RunConfig::load(path, check_model)?)
}

/// Parses run TOML text, checked by the schema and by [`check_model`]; `path` only names the
/// source in errors.
pub fn parse_run_config(text: &str, path: &Path) -> Result<RunConfig, RunError> {
    RunConfig::parse(text, path, check_model)
}

/// The rules of a run configuration that need the model crate: a preset must exist and see at
/// least one frame of a crop, the `[lora]` table must be one the model accepts, and a probe's
/// layer must exist. Files (checkpoints, configs) are not opened: their architecture is
/// checked when the run starts.
pub fn check_model(config: &RunConfig) -> Result<(), Invalid> {
    let m = &config.model;
    let mut num_layers = usize::MAX;
    if let Some(p) = &m.preset {
        if Wav2Vec2Config::preset(p).is_none() {
            return Err(invalid(
                "model.preset",
                format!(
                    "unknown preset `{p}` ({})",
                    Wav2Vec2Config::PRESETS.join(", ")
                ),
            ));
        }
        let arch = wav2vec2_config(m).map_err(|e| invalid("model", e.to_string()))?;
        if arch.num_frames(config.data.crop_samples).is_none() {
            return Err(invalid(
                "data.crop_samples",
                format!(
                    "{} samples is shorter than the receptive field of the feature encoder ({})",
                    config.data.crop_samples,
                    arch.receptive_field()
                ),
            ));
        }
        num_layers = arch.num_hidden_layers;
        check_probe_layer(config, num_layers)?;
        check_partial_count(config, num_layers)?;
    }
    if let Some(lora) = &config.lora {
        // A checkpoint's layer count is known only once its config is read, at injection.
        if let Err(err) = lora_config(lora).check(num_layers) {
            return Err(match err {
                fadlora_model::LoraError::Invalid { field, message } => {
                    let key = match field {
                        "rank" => "lora.rank",
                        "alpha" => "lora.alpha",
                        "dropout" => "lora.dropout",
                        "targets" => "lora.targets",
                        "layers" => "lora.layers",
                        "moe.experts" => "lora.moe.experts",
                        "moe.balance_loss" => "lora.moe.balance_loss",
                        _ => "lora",
                    };
                    invalid(key, message)
                }
                err @ fadlora_model::LoraError::LayerOutOfRange { .. } => {
                    invalid("lora.layers", err.to_string())
                }
                other => invalid("lora", other.to_string()),
            });
        }
    }
    Ok(())
}

/// What a sweep checks on each run: [`check_model`] when it parses the experiment,
/// [`check_inputs`] once the files exist.
pub const MODEL_RULES: RunRules = RunRules {
    config: check_model,
    inputs: check_inputs,
};

/// The rules that need a checkpoint's or config file's architecture (read from its
/// `config.json`, weights are not opened): the crop must give a frame and adapted layers must
/// exist. Preset runs were checked by [`check_model`] already.
pub fn check_inputs(config: &RunConfig) -> Result<(), Invalid> {
    if config.model.preset.is_some() {
        return Ok(());
    }
    let arch = wav2vec2_config(&config.model).map_err(|e| invalid("model", e.to_string()))?;
    if arch.num_frames(config.data.crop_samples).is_none() {
        return Err(invalid(
            "data.crop_samples",
            format!(
                "{} samples is shorter than the receptive field of the feature encoder ({})",
                config.data.crop_samples,
                arch.receptive_field()
            ),
        ));
    }
    if let Some(lora) = &config.lora {
        lora_config(lora)
            .check(arch.num_hidden_layers)
            .map_err(|e| invalid("lora.layers", e.to_string()))?;
    }
    check_partial_count(config, arch.num_hidden_layers)?;
    check_probe_layer(config, arch.num_hidden_layers)
}

/// Partial fine-tuning trains at most every encoder layer.
fn check_partial_count(config: &RunConfig, num_layers: usize) -> Result<(), Invalid> {
    match &config.partial {
        Some(partial) if partial.count > num_layers => Err(invalid(
            "partial.count",
            format!(
                "is {}, but the model has {num_layers} encoder layers: train 1 to {num_layers}                  of them",
                partial.count
            ),
        )),
        _ => Ok(()),
    }
}

/// A probe pools one of the `num_layers + 1` hidden states: the encoder's input and the output
/// of each layer.
fn check_probe_layer(config: &RunConfig, num_layers: usize) -> Result<(), Invalid> {
    match &config.probe {
        Some(probe) if probe.layer > num_layers => Err(invalid(
            "probe.layer",
            format!(
                "is {}, but the model has {num_layers} encoder layers: use 0 (the encoder's \
                 input) to {num_layers} (its final output)",
                probe.layer
            ),
        )),
        _ => Ok(()),
    }
}

/// The architecture a `[model]` table describes (without opening any weights).
pub fn wav2vec2_config(model: &ModelSection) -> Result<Wav2Vec2Config, TrainError> {
    let mut config = if let Some(preset) = &model.preset {
        Wav2Vec2Config::preset(preset).ok_or_else(|| {
            TrainError::Invalid(format!(
                "unknown preset `{preset}` ({})",
                Wav2Vec2Config::PRESETS.join(", ")
            ))
        })?
    } else if let Some(path) = &model.checkpoint {
        // A Hugging Face directory's config.json, or a fairseq .pt file's settings.
        fadlora_model::load::checkpoint_config(path)?
    } else if let Some(file) = &model.config {
        Wav2Vec2Config::from_hf_json_file(file)?
    } else {
        return Err(TrainError::Invalid(
            "one of model.preset, model.checkpoint, model.config is required".into(),
        ));
    };
    apply_overrides(&mut config, &model.overrides);
    config.validate()?;
    Ok(config)
}

fn apply_overrides(config: &mut Wav2Vec2Config, o: &ArchOverrides) {
    if let Some(v) = o.hidden_size {
        config.hidden_size = v;
    }
    if let Some(v) = o.num_hidden_layers {
        config.num_hidden_layers = v;
    }
    if let Some(v) = o.num_attention_heads {
        config.num_attention_heads = v;
    }
    if let Some(v) = o.intermediate_size {
        config.intermediate_size = v;
    }
    if let Some(v) = o.conv_channels {
        config.conv_dim = vec![v; config.conv_dim.len()];
    }
    if let Some(v) = o.num_conv_pos_embeddings {
        config.num_conv_pos_embeddings = v;
    }
    if let Some(v) = o.num_conv_pos_embedding_groups {
        config.num_conv_pos_embedding_groups = v;
    }
    if let Some(p) = o.dropout {
        config.hidden_dropout = p;
        config.attention_dropout = p;
        config.activation_dropout = p;
        config.feat_proj_dropout = p;
    }
    if let Some(p) = o.layerdrop {
        config.layerdrop = p;
    }
}

/// The model crate's configuration of the (IA)^3 vectors an `[ia3]` table asks for.
pub fn ia3_config(ia3: &fadlora_run::Ia3Section) -> fadlora_model::Ia3Config {
    fadlora_model::Ia3Config {
        targets: ia3.targets.clone(),
        feedforward: ia3.feedforward.clone(),
    }
}

/// The model crate's configuration of the adapters a `[lora]` table asks for.
pub fn lora_config(lora: &LoraSection) -> fadlora_model::LoraConfig {
    fadlora_model::LoraConfig {
        rank: lora.rank,
        alpha: lora.alpha(),
        dropout: lora.dropout,
        targets: lora.targets.clone(),
        layers: lora.layers.clone(),
        use_rslora: lora.use_rslora,
        use_dora: lora.use_dora,
        moe: lora.moe.as_ref().map(|moe| fadlora_model::MoeConfig {
            experts: moe.experts,
            routing: moe.routing,
            balance_loss: moe.balance_loss,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
output_dir = "out"
[data]
dataset = "csv:list.csv"
[model]
preset = "tiny"
[train]
epochs = 1
"#;

    fn config_error(text: &str) -> (Option<usize>, String, String) {
        match parse_run_config(text, Path::new("run.toml")) {
            Err(RunError::Config {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn model_rules_are_located_in_the_toml() {
        // Written inline at the top: after [train] it would be `train.lora`.
        let (line, key, _) = config_error(&format!("lora = {{ rank = 0 }}\n{MINIMAL}"));
        assert_eq!((key.as_str(), line), ("lora.rank", Some(1)));

        let (line, key, message) = config_error(&MINIMAL.replace("\"tiny\"", "\"huge\""));
        assert_eq!((key.as_str(), line), ("model.preset", Some(6)));
        assert!(
            message.contains("huge") && message.contains("tiny"),
            "{message}"
        );

        let short = MINIMAL.replace("[model]", "crop_samples = 399\n[model]");
        let (_, key, message) = config_error(&short);
        assert_eq!(key, "data.crop_samples");
        assert!(message.contains("400"), "{message}");
    }

    #[test]
    fn a_probe_layer_beyond_the_encoder_is_located() {
        let layers = Wav2Vec2Config::preset("tiny").unwrap().num_hidden_layers;
        let probe = |layer: usize| format!("{MINIMAL}\n[probe]\nlayer = {layer}\n");
        // The final output (`layer = num_hidden_layers`) is a valid probe.
        let config = parse_run_config(&probe(layers), Path::new("run.toml")).unwrap();
        assert_eq!(config.mode(), fadlora_run::Mode::Probe);
        let (line, key, message) = config_error(&probe(layers + 1));
        assert_eq!((key.as_str(), line), ("probe.layer", Some(11)));
        assert!(
            message.contains(&format!("{layers} encoder layers")),
            "{message}"
        );
        // Checkpoint and config runs are checked once the architecture can be read.
        let dir = tempfile::tempdir().unwrap();
        let arch = dir.path().join("config.json");
        let micro = Wav2Vec2Config::micro();
        std::fs::write(&arch, serde_json::to_string(&micro).unwrap()).unwrap();
        let text = probe(micro.num_hidden_layers + 1).replace(
            "preset = \"tiny\"",
            &format!("config = {:?}", arch.display().to_string()),
        );
        let config = parse_run_config(&text, Path::new("run.toml")).unwrap();
        let Invalid { key, .. } = check_inputs(&config).unwrap_err();
        assert_eq!(key, "probe.layer");
        let mut config = config;
        config.probe = Some(ProbeSection {
            layer: micro.num_hidden_layers,
        });
        assert!(check_inputs(&config).is_ok());
    }

    #[test]
    fn a_partial_count_beyond_the_encoder_is_located() {
        let layers = Wav2Vec2Config::preset("tiny").unwrap().num_hidden_layers;
        let partial = |count: usize| format!("{MINIMAL}\n[partial]\ncount = {count}\n");
        let config = parse_run_config(&partial(layers), Path::new("run.toml")).unwrap();
        assert_eq!(config.mode(), fadlora_run::Mode::Partial);
        let (line, key, message) = config_error(&partial(layers + 1));
        assert_eq!((key.as_str(), line), ("partial.count", Some(11)));
        assert!(
            message.contains(&format!("{layers} encoder layers")),
            "{message}"
        );
    }

    #[test]
    fn shipped_run_tomls_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/runs");
        let mut modes = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = load_run_config(&path).unwrap_or_else(|e| panic!("{e}"));
                modes.push(config.mode());
            }
        }
        for mode in fadlora_run::Mode::ALL {
            assert!(modes.contains(&mode), "no example of {mode} in {modes:?}");
        }
    }

    #[test]
    fn the_schema_alone_accepts_what_only_the_model_rejects() {
        let text = MINIMAL.replace("\"tiny\"", "\"huge\"");
        assert!(RunConfig::parse(
            &text,
            Path::new("run.toml"),
            fadlora_run::config::schema_only
        )
        .is_ok());
    }

    #[test]
    fn overrides_replace_the_preset() {
        let text = MINIMAL.replace(
            "preset = \"tiny\"",
            "preset = \"tiny\"\nhidden_size = 48\nconv_channels = 24\ndropout = 0.25",
        );
        let config = parse_run_config(&text, Path::new("run.toml")).unwrap();
        let arch = wav2vec2_config(&config.model).unwrap();
        let tiny = Wav2Vec2Config::preset("tiny").unwrap();
        assert_eq!(arch.hidden_size, 48);
        assert_eq!(arch.conv_dim, vec![24; tiny.conv_dim.len()]);
        assert_eq!(
            [
                arch.hidden_dropout,
                arch.attention_dropout,
                arch.activation_dropout,
                arch.feat_proj_dropout
            ],
            [0.25; 4]
        );
        assert_eq!(arch.num_hidden_layers, tiny.num_hidden_layers);
    }
}
