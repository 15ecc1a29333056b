//! LoRA against Hugging Face PEFT: adapters made by PEFT 0.21.2 on the `stable_layer` fixture
//! (fixtures/peft) reproduce PEFT's hidden states; init, merging, freezing and the trainable
//! counts on XLS-R 300M behave as PEFT's.

mod common;

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::*;
use fadlora_model::adapter::{ExtraTensor, ADAPTER_WEIGHTS_FILE};
use fadlora_model::lora::LoraLinearConfig;
use fadlora_model::lora::LoraTarget::{FfnIn, FfnOut, K, O, Q, V};
use fadlora_model::{
    count_trainable, AdapterError, Ia3Config, LoraConfig, LoraError, LoraTarget, MoeConfig,
    SaveAdapterOptions, Wav2Vec2Config, Wav2Vec2Model,
};

const PEFT_TOL: f32 = 1e-4;
const MERGE_TOL: f32 = 1e-5;

const PEFT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/peft");

fn peft_dir(name: &str) -> PathBuf {
    PathBuf::from(PEFT_FIXTURES).join(name)
}

fn base<Bk: Backend>() -> Wav2Vec2Model<Bk> {
    Wav2Vec2Model::from_pretrained(
        fixture(&["stable_layer", "safetensors_weight_g"]),
        &Default::default(),
    )
    .unwrap()
}

/// Tensors in the base model's `model.safetensors`, as the file lists them, less
/// `masked_spec_embed` (SpecAugment's, which the model does not load).
fn checkpoint_tensor_count() -> usize {
    let path = fixture(&["stable_layer", "safetensors_weight_g", "model.safetensors"]);
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = file.names();
    assert!(names.contains(&"masked_spec_embed"));
    names.len() - 1
}

/// The base model without dropout and LayerDrop, which act on an autodiff backend and would
/// make outputs (and which layers get gradients) random.
fn base_deterministic<Bk: Backend>() -> Wav2Vec2Model<Bk> {
    let dir = fixture(&["stable_layer", "safetensors_weight_g"]);
    let mut arch = Wav2Vec2Config::from_hf_json_file(dir.join("config.json")).unwrap();
    arch.hidden_dropout = 0.0;
    arch.attention_dropout = 0.0;
    arch.activation_dropout = 0.0;
    arch.feat_proj_dropout = 0.0;
    arch.layerdrop = 0.0;
    Wav2Vec2Model::from_file(arch, &dir.join("model.safetensors"), &Default::default()).unwrap()
}

fn reference_input() -> Tensor<TB, 2> {
    let reference = read_reference(&fixture(&["stable_layer", "reference.safetensors"]));
    let input = &reference["input_values"];
    tensor(input, [input.shape[0], input.shape[1]])
}

/// Every hidden state plus the last one, in order.
fn outputs<Bk: fadlora_model::ModelBackend>(
    model: &Wav2Vec2Model<Bk>,
    input: Tensor<Bk, 2>,
) -> Vec<Tensor<Bk, 3>> {
    let out = model.forward(input, true);
    let mut all = out.hidden_states.unwrap();
    all.push(out.last_hidden_state);
    all
}

fn max_diff<const D: usize>(a: &Tensor<TB, D>, b: &Tensor<TB, D>) -> f32 {
    let (sa, va) = values(a);
    let (sb, vb) = values(b);
    assert_eq!(sa, sb);
    va.iter()
        .zip(&vb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn all_targets(rank: usize) -> LoraConfig {
    LoraConfig::new(rank, 2.0 * rank as f64).with_targets(LoraTarget::ALL.to_vec())
}

/// Replaces every B (zero at init) with random values (seeded; the scale of PEFT's fixtures)
/// so the adapters change the output.
fn randomise_b<Bk: Backend>(mut model: Wav2Vec2Model<Bk>) -> Wav2Vec2Model<Bk> {
    let device = Default::default();
    Bk::seed(&device, 11);
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
    model
}

/// How many parameters received a gradient and how many did not, asserting that exactly those
/// requiring one got one.
struct GradientCensus {
    with: usize,
    without: usize,
}

fn gradient_census(
    model: &Wav2Vec2Model<Autodiff<TB>>,
    grads: &<Autodiff<TB> as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> GradientCensus {
    type AB = Autodiff<TB>;
    struct Check<'a> {
        grads: &'a <AB as burn::tensor::backend::AutodiffBackend>::Gradients,
        census: GradientCensus,
    }
    impl burn::module::ModuleVisitor<AB> for Check<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            let has = param.grad(self.grads).is_some();
            assert_eq!(has, param.is_require_grad(), "param {}", param.id);
            if has {
                self.census.with += 1;
            } else {
                self.census.without += 1;
            }
        }
    }
    let mut check = Check {
        grads,
        census: GradientCensus {
            with: 0,
            without: 0,
        },
    };
    burn::module::Module::visit(model, &mut check);
    check.census
}

#[test]
fn at_init_the_adapted_model_equals_the_base_exactly() {
    let input = reference_input();
    let base_model = base::<TB>();
    let want: Vec<_> = outputs(&base_model, input.clone());
    for config in [
        all_targets(4),
        LoraConfig::new(8, 16.0).with_use_rslora(true),
        LoraConfig::new(2, 1.0)
            .with_targets(vec![K, FfnOut])
            .with_layers(Some(vec![1])),
        // DoRA: the magnitude starts at the base weight's column norms, so its factor is 1.
        all_targets(4).with_use_dora(true),
        // Mixtures of experts: every expert's B is zero, whatever the router says.
        all_targets(2).with_moe(Some(MoeConfig::new().with_experts(3))),
        all_targets(2).with_moe(Some(
            MoeConfig::new().with_routing(fadlora_model::MoeRouting::Top1),
        )),
    ] {
        let adapted = base_model.clone().with_lora(&config, &Default::default());
        for (got, want) in outputs(&adapted, input.clone()).iter().zip(&want) {
            assert_eq!(got.to_data(), want.to_data(), "{config:?}");
        }
    }
    // The same on the autodiff backend used for training (where dropout and LayerDrop act,
    // so they are switched off to compare).
    type AB = Autodiff<TB>;
    let input_ad = Tensor::<AB, 2>::from_data(input.to_data(), &Default::default());
    let dir = fixture(&["stable_layer", "safetensors_weight_g"]);
    let mut arch = Wav2Vec2Config::from_hf_json_file(dir.join("config.json")).unwrap();
    arch.hidden_dropout = 0.0;
    arch.attention_dropout = 0.0;
    arch.activation_dropout = 0.0;
    arch.feat_proj_dropout = 0.0;
    arch.layerdrop = 0.0;
    let plain =
        Wav2Vec2Model::<AB>::from_file(arch, &dir.join("model.safetensors"), &Default::default())
            .unwrap();
    for config in [
        all_targets(4),
        all_targets(4).with_use_dora(true),
        all_targets(2).with_moe(Some(MoeConfig::new())),
    ] {
        let adapted = plain.clone().with_lora(&config, &Default::default());
        assert_eq!(
            adapted
                .forward(input_ad.clone(), false)
                .last_hidden_state
                .into_data(),
            plain
                .forward(input_ad.clone(), false)
                .last_hidden_state
                .into_data(),
            "{config:?}"
        );
    }
}

#[test]
fn only_adapters_require_and_receive_gradients() {
    type AB = Autodiff<TB>;
    let device = Default::default();
    let config = LoraConfig::new(4, 8.0)
        .with_targets(vec![Q, V, FfnIn])
        .with_layers(Some(vec![0]));
    let model = base_deterministic::<AB>().with_lora(&config, &device);
    let counts = count_trainable(&model);
    // Layer 0 only: q, v (32 -> 32) and ffn_in (32 -> 64), r = 4.
    assert_eq!(counts.trainable, 4 * (32 + 32) * 2 + 4 * (32 + 64));
    assert_eq!(
        counts.total,
        fadlora_model::count_params(&base::<TB>()) + counts.trainable
    );
    let model = randomise_b(model);
    let input = Tensor::<AB, 2>::from_data(reference_input().to_data(), &device);
    let grads = model
        .forward(input, false)
        .last_hidden_state
        .sum()
        .backward();
    let check = gradient_census(&model, &grads);
    assert_eq!(check.with, 6, "A and B of three adapters");
    // Every tensor of the checkpoint is a frozen parameter, and nothing else is.
    assert_eq!(check.without, checkpoint_tensor_count());
}

#[test]
fn xls_r_300m_trainable_counts_equal_peft() {
    type AB = Autodiff<TB>;
    let device = Default::default();
    let full = 315_437_696;
    let xls_r = Wav2Vec2Config::xls_r_300m().init::<AB>(&device);
    let base_counts = count_trainable(&xls_r);
    assert_eq!((base_counts.trainable, base_counts.total), (full, full));
    let cases: Vec<(Vec<LoraTarget>, usize, usize)> = vec![
        (vec![Q, V], 1, 98_304),
        (vec![Q, V], 4, 393_216),
        (vec![Q, V], 16, 1_572_864),
        (vec![Q, K, V, O], 8, 1_572_864),
        (vec![Q, K, V, O, FfnIn, FfnOut], 8, 3_538_944),
    ];
    for (targets, rank, want) in cases {
        let config = LoraConfig::new(rank, 2.0 * rank as f64).with_targets(targets.clone());
        let model = xls_r.clone().with_lora(&config, &device);
        let counts = count_trainable(&model);
        println!(
            "XLS-R 300M LoRA {targets:?} r={rank}: trainable {} of {} ({:.1}x fewer than {full})",
            counts.trainable,
            counts.total,
            counts.reduction_vs(full)
        );
        assert_eq!(counts.trainable, want, "{targets:?} r={rank}");
        assert_eq!(counts.total, full + want);
        // Freezing and counting left the 315M pretrained weights (and the adapters) lazy.
        let lazy = model.encoder.layers.iter().all(|l| {
            let q = &l.attention.q_proj;
            !q.weight.is_initialized() && !q.lora.as_ref().unwrap().a.is_initialized()
        });
        assert!(lazy, "counting materialised parameters");
    }
}

#[test]
fn peft_fixtures_reproduce_peft_hidden_states() {
    let device = Default::default();
    let input = reference_input();
    for name in ["qv_r4", "all_r2", "qv_r4_rslora", "dora_r4", "ia3"] {
        let dir = peft_dir(name);
        let reference = read_reference(&dir.join("reference.safetensors"));
        let model = base::<TB>()
            .load_adapter(&dir, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(peft_dir("fixture_info.json")).unwrap())
                .unwrap();
        let peft_trainable = info["variants"][name]["trainable_params_peft"]
            .as_u64()
            .unwrap() as usize;
        // The unmerged model; trainable counts need gradients, so count on autodiff.
        let ad_model = base::<Autodiff<TB>>().load_adapter(&dir, &device).unwrap();
        assert_eq!(
            count_trainable(&ad_model).trainable,
            peft_trainable,
            "{name}"
        );

        let merged = model.clone().merge_lora().unwrap();
        let got = outputs(&model, input.clone());
        let got_merged = outputs(&merged, input.clone());
        let names: Vec<String> = (0..got.len() - 1)
            .map(|i| format!("hidden_states.{i}"))
            .chain(["last_hidden_state".to_string()])
            .collect();
        for ((key, out), out_merged) in names.iter().zip(&got).zip(&got_merged) {
            let diff = max_abs_diff(out, &reference[key], key);
            let diff_merged = max_abs_diff(out_merged, &reference[key], key);
            println!(
                "peft/{name} {key}: max |diff| vs PEFT = {diff:.3e} (merged {diff_merged:.3e})"
            );
            assert!(diff <= PEFT_TOL, "{name} {key}: {diff}");
            assert!(
                diff_merged <= PEFT_TOL,
                "{name} {key} merged: {diff_merged}"
            );
        }
        // The adapter really acts: the output differs from the base model's.
        let base_out = outputs(&base::<TB>(), input.clone());
        assert!(max_diff(&got[2], &base_out[2]) > 0.1, "{name}");
    }
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores_the_weights() {
    merged_equals_unmerged(all_targets(4).with_layers(Some(vec![0, 1])));
}

/// (IA)^3 starts at the base model (all ones), merges into the weights (and biases of the
/// output-scaled projections) without changing the outputs, and saves and loads back.
#[test]
fn ia3_starts_at_the_base_merges_and_round_trips() {
    let device = Default::default();
    let input = reference_input();
    let base_model = base::<TB>();
    let config = Ia3Config::new().with_targets(LoraTarget::ALL.to_vec());
    let adapted = base_model.clone().try_with_ia3(&config, &device).unwrap();
    for (got, want) in outputs(&adapted, input.clone())
        .iter()
        .zip(&outputs(&base_model, input.clone()))
    {
        assert_eq!(got.to_data(), want.to_data());
    }
    // Move every vector, as training would.
    TB::seed(&device, 21);
    let mut model = adapted;
    for layer in &mut model.encoder.layers {
        for target in LoraTarget::ALL {
            let ia3 = layer.projection_mut(target).ia3.as_mut().unwrap();
            let [len] = ia3.scale.lazy_shape().dims();
            ia3.scale = Param::from_tensor(Tensor::random(
                [len],
                Distribution::Uniform(0.5, 1.5),
                &device,
            ));
        }
    }
    let unmerged = outputs(&model, input.clone());
    assert!(max_diff(&unmerged[2], &outputs(&base_model, input.clone())[2]) > 0.1);
    let merged = model.clone().merge_lora().unwrap();
    let w = |m: &Wav2Vec2Model<TB>| {
        m.encoder.layers[0]
            .attention
            .v_proj
            .bias
            .as_ref()
            .unwrap()
            .val()
    };
    assert!(
        max_diff(&w(&model), &w(&merged)) > 1e-3,
        "the output scaling reaches the bias"
    );
    for (a, b) in unmerged.iter().zip(&outputs(&merged, input.clone())) {
        assert!(max_diff(a, b) <= MERGE_TOL);
    }
    let restored = merged.unmerge_lora();
    for (a, b) in unmerged.iter().zip(&outputs(&restored, input.clone())) {
        assert!(max_diff(a, b) <= MERGE_TOL);
    }
    let dir = tempfile::tempdir().unwrap();
    model.save_adapter(dir.path(), &Default::default()).unwrap();
    let loaded = base::<TB>().load_adapter(dir.path(), &device).unwrap();
    assert_eq!(loaded.ia3.as_ref(), Some(&config));
    for (a, b) in unmerged.iter().zip(&outputs(&loaded, input)) {
        assert_eq!(a.to_data(), b.to_data());
    }
}

#[test]
fn dora_merged_equals_unmerged_and_unmerge_restores_the_weights() {
    merged_equals_unmerged(all_targets(4).with_use_dora(true));
}

fn merged_equals_unmerged(config: LoraConfig) {
    let device = Default::default();
    let input = reference_input();
    let model = randomise_b(base::<TB>().with_lora(&config, &device));
    let unmerged = outputs(&model, input.clone());
    let merged_model = model.clone().merge_lora().unwrap();
    let merged = outputs(&merged_model, input.clone());
    let mut worst = 0f32;
    for (a, b) in unmerged.iter().zip(&merged) {
        worst = worst.max(max_diff(a, b));
    }
    println!("merged vs unmerged: max |diff| = {worst:.3e}");
    assert!(worst <= MERGE_TOL, "{worst}");
    // Merging changed the weights, and merging twice is a no-op.
    let w = |m: &Wav2Vec2Model<TB>| m.encoder.layers[1].attention.q_proj.weight.val();
    assert!(max_diff(&w(&model), &w(&merged_model)) > 1e-3);
    let twice = merged_model.clone().merge_lora().unwrap();
    assert_eq!(w(&twice).into_data(), w(&merged_model).into_data());
    let restored = merged_model.unmerge_lora();
    assert!(max_diff(&w(&model), &w(&restored)) < 1e-6);
    let again = outputs(&restored, input);
    assert!(max_diff(&again[3], &unmerged[3]) <= MERGE_TOL);
}

#[test]
fn a_merge_to_non_finite_weights_is_refused_naming_the_projection() {
    let device = Default::default();
    let config = all_targets(4).with_layers(Some(vec![0, 1]));
    let mut model = randomise_b(base::<TB>().with_lora(&config, &device));
    let lora = model.encoder.layers[1]
        .feed_forward
        .output_dense
        .lora
        .as_mut()
        .unwrap();
    let [r, d_out] = lora.b.lazy_shape().dims();
    let mut values = vec![0f32; r * d_out];
    values[d_out + 3] = f32::INFINITY;
    lora.b = Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [r, d_out]),
        &device,
    ));
    let err = model.merge_lora().unwrap_err();
    println!("{err}");
    assert_eq!(
        err,
        LoraError::NonFiniteMerge {
            layer: 1,
            target: FfnOut
        }
    );
    assert!(err.to_string().contains("layer 1 ffn_out"), "{err}");
}

#[test]
#[should_panic(expected = "LoRA rank must be at least 1")]
fn a_rank_0_layer_is_refused() {
    let _ = LoraLinearConfig::new(8, 8, 0, 8.0).init::<TB>(&Default::default());
}

#[test]
fn broken_peft_adapters_are_clear_errors() {
    let device = Default::default();
    let err = base::<TB>()
        .load_adapter(&peft_dir("broken_wrong_rank"), &device)
        .unwrap_err();
    let message = err.to_string();
    println!("broken_wrong_rank: {message}");
    assert!(
        matches!(&err, AdapterError::Shape { rank: 8, expected, found, .. }
            if expected == &vec![8, 32] && found == &vec![4, 32]),
        "{err:?}"
    );
    assert!(
        message.contains("base_model.model.encoder.layers.0.attention.q_proj.lora_A.weight")
            && message.contains("[4, 32]")
            && message.contains("[8, 32]"),
        "{message}"
    );

    let err = base::<TB>()
        .load_adapter(&peft_dir("broken_unknown_target"), &device)
        .unwrap_err();
    let message = err.to_string();
    println!("broken_unknown_target: {message}");
    assert!(
        matches!(&err, AdapterError::Lora { source: LoraError::UnknownTarget { name, .. }, .. } if name == "fc9"),
        "{err:?}"
    );
    assert!(
        message.contains("`fc9`") && message.contains("q_proj, k_proj, v_proj, out_proj"),
        "{message}"
    );
}

#[test]
fn invalid_lora_configs_are_rejected() {
    let device = Default::default();
    let err = "query".parse::<LoraTarget>().unwrap_err().to_string();
    assert!(err.contains("`query`") && err.contains("q, k, v, o, ffn_in, ffn_out"));
    let err = base::<TB>()
        .try_with_lora(&LoraConfig::new(4, 8.0).with_layers(Some(vec![2])), &device)
        .unwrap_err();
    assert_eq!(
        err,
        LoraError::LayerOutOfRange {
            layer: 2,
            num_layers: 2
        }
    );
    let adapted = base::<TB>().with_lora(&LoraConfig::new(4, 8.0), &device);
    assert_eq!(
        adapted
            .try_with_lora(&LoraConfig::new(4, 8.0), &device)
            .unwrap_err(),
        LoraError::AlreadyAdapted
    );
    let err = base::<TB>()
        .try_with_lora(&LoraConfig::new(0, 8.0), &device)
        .unwrap_err();
    assert!(err.to_string().contains("rank"), "{err}");
}

#[test]
fn saved_adapters_load_back_to_the_same_outputs() {
    let config = LoraConfig::new(3, 5.0)
        .with_targets(vec![Q, O, FfnIn, FfnOut])
        .with_layers(Some(vec![1]))
        .with_use_rslora(true);
    saved_adapters_load_back(config);
}

#[test]
fn saved_dora_adapters_load_back_to_the_same_outputs() {
    saved_adapters_load_back(
        LoraConfig::new(3, 5.0)
            .with_targets(vec![Q, O, FfnIn, FfnOut])
            .with_layers(Some(vec![1]))
            .with_use_dora(true),
    );
}

fn saved_adapters_load_back(config: LoraConfig) {
    let device = Default::default();
    let input = reference_input();
    let model = randomise_b(base::<TB>().with_lora(&config, &device));
    let dir = tempfile::tempdir().unwrap();
    let head = ExtraTensor {
        shape: vec![2, 32],
        data: (0..64).map(|i| i as f32 / 7.0).collect(),
    };
    let options = SaveAdapterOptions {
        base_model_name_or_path: Some("fixtures/wav2vec2/stable_layer/safetensors_weight_g".into()),
        extras: [("head.linear.weight".to_string(), head.clone())].into(),
    };
    model.save_adapter(dir.path(), &options).unwrap();
    // Adapters only: 4 projections x (A + B) of r = 3, plus the head.
    let size = std::fs::metadata(dir.path().join(ADAPTER_WEIGHTS_FILE))
        .unwrap()
        .len();
    assert!(size < 8_000, "{size} bytes");
    let (loaded, extras) = base::<TB>()
        .load_adapter_with_extras(dir.path(), &device)
        .unwrap();
    assert_eq!(loaded.lora.as_ref(), Some(&config));
    assert_eq!(extras["head.linear.weight"], head);
    for (a, b) in outputs(&model, input.clone())
        .iter()
        .zip(&outputs(&loaded, input))
    {
        assert_eq!(a.to_data(), b.to_data());
    }
    // Without asking for extras, a head in the file is an unexpected tensor.
    let err = base::<TB>()
        .load_adapter(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fadlora.head.linear.weight"), "{err}");
}

/// Fresh MMS and bottleneck adapters add exactly nothing until they train (`linear_2` is zero),
/// freeze everything else, and give the hand-computed trainable counts.
#[test]
fn adapter_layers_start_at_the_base_and_train_alone() {
    use fadlora_model::{AdapterKind, AdapterLayerConfig};
    type AB = Autodiff<TB>;
    let device = Default::default();
    let input = reference_input();
    let base_model = base::<TB>();
    let want = outputs(&base_model, input.clone());
    let base_params = fadlora_model::count_params(&base_model);
    for kind in AdapterKind::ALL {
        let config = AdapterLayerConfig::new(kind, 8);
        let adapted = base_model
            .clone()
            .try_with_adapters(&config, &device)
            .unwrap();
        for (got, want) in outputs(&adapted, input.clone()).iter().zip(&want) {
            assert_eq!(got.to_data(), want.to_data(), "{kind}");
        }
        // Per layer (hidden 32, size 8): MMS 2*32 + (32*8 + 8) + (8*32 + 32) = 616; the
        // bottleneck has no LayerNorm: 552. Two layers.
        let per_layer = match kind {
            AdapterKind::Mms => 616,
            AdapterKind::Bottleneck => 552,
        };
        assert_eq!(config.params_per_layer(32), per_layer);
        let counts = count_trainable(
            &base_deterministic::<AB>()
                .try_with_adapters(&config, &device)
                .unwrap(),
        );
        assert_eq!(
            (counts.trainable, counts.total),
            (2 * per_layer, base_params + 2 * per_layer),
            "{kind}"
        );
        assert!(matches!(
            adapted.try_with_adapters(&config, &device),
            Err(LoraError::AlreadyAdapted)
        ));
    }

    // Only the adapters get gradients once linear_2 has moved off zero.
    let config = AdapterLayerConfig::new(AdapterKind::Mms, 4);
    let mut model = base_deterministic::<AB>()
        .try_with_adapters(&config, &device)
        .unwrap();
    AB::seed(&device, 5);
    for layer in &mut model.encoder.layers {
        let adapter = layer.adapter_layer.as_mut().unwrap();
        adapter.linear_2.weight = Param::from_tensor(Tensor::random(
            [4, 32],
            Distribution::Normal(0.0, 0.25),
            &device,
        ));
    }
    let x = Tensor::<AB, 2>::from_data(input.to_data(), &device);
    let grads = model.forward(x, false).last_hidden_state.sum().backward();
    let check = gradient_census(&model, &grads);
    assert_eq!(
        check.with,
        2 * 6,
        "norm, linear_1 and linear_2 (weight, bias) of two layers"
    );
    assert_eq!(check.without, checkpoint_tensor_count());
}

#[test]
fn mms_adapters_are_refused_on_post_ln_models_and_kept_from_an_mms_checkpoint() {
    use fadlora_model::{AdapterKind, AdapterLayerConfig};
    let device = Default::default();
    let post_ln = Wav2Vec2Model::<TB>::from_pretrained(
        fixture(&["base_group", "safetensors_weight_g"]),
        &device,
    )
    .unwrap();
    let err = post_ln
        .clone()
        .try_with_adapters(&AdapterLayerConfig::new(AdapterKind::Mms, 8), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pre-LN"), "{err}");
    post_ln
        .try_with_adapters(
            &AdapterLayerConfig::new(AdapterKind::Bottleneck, 8),
            &device,
        )
        .unwrap();

    // An MMS checkpoint's own adapters train from their pretrained values: same outputs,
    // and they (only they) become trainable.
    type AB = Autodiff<TB>;
    let mms = Wav2Vec2Model::<AB>::from_pretrained(fixture(&["mms_adapter"]), &device).unwrap();
    let input = Tensor::<AB, 2>::from_data(reference_input().to_data(), &device);
    let adapted = mms
        .clone()
        .try_with_adapters(&AdapterLayerConfig::new(AdapterKind::Mms, 8), &device)
        .unwrap();
    let counts = count_trainable(&adapted);
    assert_eq!(counts.trainable, 2 * 616);
    let eval = |m: &Wav2Vec2Model<AB>| {
        burn::module::AutodiffModule::valid(m)
            .forward(input.clone().inner(), false)
            .last_hidden_state
            .into_data()
    };
    assert_eq!(eval(&adapted), eval(&mms));
    let err = mms
        .try_with_adapters(&AdapterLayerConfig::new(AdapterKind::Mms, 4), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("size 8"), "{err}");
}

#[test]
fn xls_r_300m_adapter_layer_counts_equal_hand_computed_values() {
    use fadlora_model::{AdapterKind, AdapterLayerConfig};
    let device = Default::default();
    let full = 315_437_696;
    let xls_r = Wav2Vec2Config::xls_r_300m().init::<Autodiff<TB>>(&device);
    // 24 layers, hidden 1024. MMS, 32 units: LayerNorm 2*1024, linear_1 1024*32 + 32,
    // linear_2 32*1024 + 1024 = 68,640 per layer. Bottleneck, 64 units: 1024*64 + 64 +
    // 64*1024 + 1024 = 132,160 per layer.
    for (kind, size, want) in [
        (AdapterKind::Mms, 32, 24 * 68_640),
        (AdapterKind::Bottleneck, 64, 24 * 132_160),
    ] {
        let adapted = xls_r
            .clone()
            .try_with_adapters(&AdapterLayerConfig::new(kind, size), &device)
            .unwrap();
        let counts = count_trainable(&adapted);
        assert_eq!(
            (counts.trainable, counts.total),
            (want, full + want),
            "{kind} {size}"
        );
    }
}

/// Partial fine-tuning on XLS-R 300M: one encoder layer is q, k, v, o (1024 x 1024 + 1024
/// each), the feed-forward block (1024 x 4096 + 4096, 4096 x 1024 + 1024) and two LayerNorms
/// (2 x 2048) = 12,596,224; the feature projection is a LayerNorm (2 x 512) and a Linear
/// 512 x 1024 + 1024 = 526,336. The total never changes; counts outside 1..=24 are refused.
#[test]
fn xls_r_300m_partial_counts_equal_hand_computed_values() {
    use fadlora_model::partial::PartialLayers;
    let device = Default::default();
    let full = 315_437_696;
    let layer = 4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 2 * 2048;
    assert_eq!(layer, 12_596_224);
    let projection = 2 * 512 + 512 * 1024 + 1024;
    let xls_r = Wav2Vec2Config::xls_r_300m().init::<Autodiff<TB>>(&device);
    for (end, count, fp, want) in [
        (PartialLayers::Top, 4, false, 4 * layer),
        (PartialLayers::Bottom, 2, true, 2 * layer + projection),
        (PartialLayers::Top, 24, false, 24 * layer),
    ] {
        let model = xls_r.clone().try_with_partial(end, count, fp).unwrap();
        let counts = count_trainable(&model);
        assert_eq!(
            (counts.trainable, counts.total),
            (want, full),
            "{end} {count}"
        );
        let trains = |i: usize| {
            model.encoder.layers[i]
                .attention
                .q_proj
                .weight
                .is_require_grad()
        };
        let chosen = end.indices(count, 24);
        for i in 0..24 {
            assert_eq!(trains(i), chosen.contains(&i), "{end} {count}: layer {i}");
        }
    }
    for count in [0, 25] {
        let err = xls_r
            .clone()
            .try_with_partial(PartialLayers::Top, count, false)
            .unwrap_err();
        assert!(matches!(err, LoraError::Partial(_)), "{err}");
    }
}

/// A mixture of LoRA experts: every projection gets K adapters and a router (counted by hand
/// on the fixture), only they receive gradients, merging leaves the mixture as it is (a router
/// depends on its input, so nothing folds into the weights), and PEFT's layout is refused.
#[test]
fn moe_lora_trains_alone_never_merges_and_has_no_peft_layout() {
    type AB = Autodiff<TB>;
    let device = Default::default();
    let config = LoraConfig::new(2, 4.0)
        .with_targets(vec![Q, FfnIn])
        .with_layers(Some(vec![0]))
        .with_moe(Some(MoeConfig::new().with_experts(3)));
    let model = base_deterministic::<AB>().with_lora(&config, &device);
    // Layer 0: q (32 -> 32) and ffn_in (32 -> 64); K = 3 experts of r = 2, and a 32 x 3 router.
    let counts = count_trainable(&model);
    assert_eq!(
        counts.trainable,
        3 * 2 * (32 + 32) + 32 * 3 + 3 * 2 * (32 + 64) + 32 * 3
    );
    let mut model = model;
    for layer in &mut model.encoder.layers {
        for target in LoraTarget::ALL {
            if let Some(moe) = layer.projection_mut(target).moe.as_mut() {
                let dims = moe.b.lazy_shape().dims::<2>();
                moe.b = Param::from_tensor(Tensor::random(dims, Distribution::Default, &device));
            }
        }
    }
    let input = Tensor::<AB, 2>::from_data(reference_input().to_data(), &device);
    let out = model.forward(input.clone(), false).last_hidden_state;
    let balance = model
        .take_balance_loss()
        .expect("a training pass leaves balance terms");
    let grads = (out.clone().sum() + balance).backward();
    let check = gradient_census(&model, &grads);
    assert_eq!(check.with, 6, "router, A and B of two mixtures");
    assert_eq!(check.without, checkpoint_tensor_count());

    let inner = burn::module::AutodiffModule::valid(&model);
    let plain_input = reference_input();
    let before = inner.forward(plain_input.clone(), false).last_hidden_state;
    assert!(
        inner.take_balance_loss().is_none(),
        "inference leaves no terms"
    );
    let merged = inner.clone().merge_lora().unwrap();
    let after = merged.forward(plain_input, false).last_hidden_state;
    assert_eq!(before.to_data(), after.to_data());
    let dir = tempfile::tempdir().unwrap();
    let err = merged
        .save_adapter(dir.path(), &SaveAdapterOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("mixture of LoRA experts"), "{err}");
}
