//! Experiment TOML: grid expansion, stable run IDs, include/exclude rules, and errors that
//! name the key and line.

use std::path::Path;

use fadlora_sweep::{Experiment, Mode, SweepError};
use fadlora_train::config::MODEL_RULES;

const BASE: &str = r#"
name = "demo"

[base]
backend = "flex"
[base.data]
dataset = "asvspoof2019:../datasets/mini"
crop_samples = 16000
[base.model]
preset = "tiny"
[base.train]
epochs = 1
"#;

fn experiment(sweep: &str) -> Result<Experiment, SweepError> {
    Experiment::parse(
        &format!("{BASE}\n{sweep}"),
        Path::new("experiments/demo.toml"),
        MODEL_RULES,
    )
}

fn located(result: Result<Experiment, SweepError>) -> (Option<usize>, String, String) {
    match result {
        Err(SweepError::Run(fadlora_run::RunError::Config {
            line, key, message, ..
        })) => (line, key, message),
        other => panic!("expected a located config error, got {other:?}"),
    }
}

fn ids(e: &Experiment) -> Vec<String> {
    e.plan(Path::new("/tmp/results"))
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn axes_combine_as_a_grid_with_the_baseline_per_seed_and_length() {
    let e = experiment(
        r#"
[sweep]
ranks = [1, 4]
targets = [["q", "v"], ["q", "k", "v", "o"]]
crop_samples = [16000, 32000]
seeds = [0, 1]
full_finetune = true
"#,
    )
    .unwrap();
    let plan = e.plan(Path::new("/tmp/results")).unwrap();
    // (2 ranks x 2 target sets + 1 full) x 2 lengths x 2 seeds
    assert_eq!(plan.runs.len(), 20);
    let full: Vec<_> = plan
        .runs
        .iter()
        .filter(|r| r.axes.mode == Mode::Full)
        .collect();
    assert_eq!(full.len(), 4);
    assert!(full.iter().all(|r| r.config.lora.is_none()));
    // Seed is the outer loop: the first half of the plan is one complete seed.
    assert!(plan.runs[..10].iter().all(|r| r.axes.seed == 0));
    let r = plan
        .runs
        .iter()
        .find(|r| r.id.starts_with("lora-q+k+v+o-r4-len32000-s1-"))
        .expect("every grid point has a readable ID");
    let lora = r.config.lora.as_ref().unwrap();
    assert_eq!(
        (
            lora.rank,
            lora.alpha(),
            r.config.data.crop_samples,
            r.config.seed
        ),
        (4, 8.0, 32000, 1)
    );
    assert_eq!(r.group, "lora-q+k+v+o-r4-len32000");
    // The base length needs no suffix.
    assert!(plan.runs.iter().any(|r| r.group == "lora-q+k+v+o-r4"));
    assert_eq!(
        r.config.output_dir,
        Path::new("/tmp/results/demo").join(&r.id)
    );
    assert_eq!(r.config.name.as_deref(), Some(r.id.as_str()));
    // Paths resolve against the TOML's folder.
    assert!(
        r.config.data.dataset.ends_with("/datasets/mini"),
        "{}",
        r.config.data.dataset
    );
    assert!(
        !r.config.data.dataset.contains("experiments"),
        "{}",
        r.config.data.dataset
    );
    let mut unique = ids(&e);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 20);
}

#[test]
fn ids_are_stable_and_change_only_with_the_run_they_name() {
    let before = ids(&experiment("[sweep]\nranks = [1, 4]\nfull_finetune = true\n").unwrap());
    // Same TOML again: same IDs.
    assert_eq!(
        before,
        ids(&experiment("[sweep]\nranks = [1, 4]\nfull_finetune = true\n").unwrap())
    );
    // Adding a rank keeps every existing ID.
    let grown = ids(&experiment("[sweep]\nranks = [1, 4, 16]\nfull_finetune = true\n").unwrap());
    assert_eq!(grown.len(), 4);
    for id in &before {
        assert!(grown.contains(id), "{id} changed when a rank was added");
    }
    // Adding an input length or a layer selection keeps every existing ID too: a run's name
    // depends on its own configuration only.
    let more = ids(&experiment(
        "[sweep]\nranks = [1, 4]\nfull_finetune = true\ncrop_samples = [16000, 32000]\nlayers = [\"all\", [0]]\n",
    )
    .unwrap());
    assert_eq!(more.len(), 2 * (1 + 2 * 2));
    for id in &before {
        assert!(
            more.contains(id),
            "{id} changed when a length and a layer selection were added"
        );
    }
    // Target order is not a different run.
    assert_eq!(
        ids(&experiment("[sweep]\nranks = [4]\ntargets = [[\"v\", \"q\"]]\n").unwrap()),
        ids(&experiment("[sweep]\nranks = [4]\ntargets = [[\"q\", \"v\"]]\n").unwrap())
    );
    // Changing the epoch budget changes every ID (the runs are different runs).
    let text = format!("{BASE}\n[sweep]\nranks = [1, 4]\nfull_finetune = true\n")
        .replace("epochs = 1", "epochs = 2");
    let changed =
        ids(&Experiment::parse(&text, Path::new("experiments/demo.toml"), MODEL_RULES).unwrap());
    for id in &changed {
        assert!(!before.contains(id));
    }
    // The hash part is 8 hex digits.
    let hash = before[0].rsplit('-').next().unwrap();
    assert_eq!(hash.len(), 8);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
}

/// Run IDs name finished runs in results folders written by earlier builds: if these change,
/// every existing sweep would train its runs again under new names. Only a deliberate change
/// of the ID scheme may update them.
#[test]
fn run_ids_are_pinned_across_builds() {
    let e = experiment("[sweep]\nranks = [4]\nfull_finetune = true\n").unwrap();
    assert_eq!(ids(&e), ["full-s0-a8df037b", "lora-q+v-r4-s0-0e72f21b"]);
}

#[test]
fn exclude_drops_matching_points_and_include_adds_runs_per_seed() {
    let e = experiment(
        r#"
[sweep]
ranks = [1, 4, 16]
targets = [["q", "v"], ["q", "k", "v", "o"]]
seeds = [0, 1]
exclude = [{ rank = 16, targets = ["v", "q", "k", "o"] }, { rank = 1, seed = 1 }]
include = [{ rank = 8, targets = ["o"] }, { mode = "full", seed = 0 }, { rank = 4, targets = ["q", "v"] }]
"#,
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let has = |pred: &dyn Fn(&fadlora_sweep::PlannedRun) -> bool| {
        plan.runs.iter().filter(|r| pred(r)).count()
    };
    // exclude: targets match as a set, in any order
    assert_eq!(
        has(&|r| r.axes.rank == Some(16) && r.axes.targets_label() == "q+k+v+o"),
        0
    );
    assert_eq!(
        has(&|r| r.axes.rank == Some(16) && r.axes.targets_label() == "q+v"),
        2
    );
    assert_eq!(has(&|r| r.axes.rank == Some(1) && r.axes.seed == 1), 0);
    // include without a seed: once per seed; with a seed: once
    assert_eq!(
        has(&|r| r.axes.rank == Some(8) && r.axes.targets_label() == "o"),
        2
    );
    assert_eq!(has(&|r| r.axes.mode == Mode::Full), 1);
    // an include that repeats a grid point adds nothing
    assert_eq!(
        has(&|r| r.axes.rank == Some(4) && r.axes.targets_label() == "q+v"),
        2
    );
    // 12 grid points - 2 - 2 excluded + 2 + 1 included
    assert_eq!(plan.runs.len(), 11);

    // An include without a rank takes the first of `ranks`.
    let e = experiment("[sweep]\nranks = [2, 8]\ninclude = [{ targets = [\"o\"] }]\n").unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    assert!(plan.runs.iter().any(|r| r.group == "lora-o-r2"));

    // A rule that matches nothing is a typo, not a silent no-op.
    let (_, key, message) = located(experiment(
        "[sweep]\nranks = [2, 8]\nexclude = [{ rank = 3 }]\n",
    ));
    assert_eq!(key, "sweep.exclude");
    assert!(message.contains("entry 1 matches no run"), "{message}");
    let (_, key, _) = located(experiment(
        "[sweep]\nranks = [2]\ninclude = [{ mode = \"full\", rank = 4 }]\n",
    ));
    assert_eq!(key, "sweep.include");
}

#[test]
fn plans_spell_paths_one_way_so_runs_resume_from_any_directory() {
    let a = Experiment::parse(
        &format!("{BASE}\n[sweep]\nranks = [4]\n"),
        Path::new("experiments/demo.toml"),
        MODEL_RULES,
    )
    .unwrap();
    let b = Experiment::parse(
        &format!("{BASE}\n[sweep]\nranks = [4]\n"),
        Path::new("./experiments/../experiments/demo.toml"),
        MODEL_RULES,
    )
    .unwrap();
    let pa = a.plan(Path::new("results")).unwrap();
    let pb = b.plan(Path::new("./results/")).unwrap();
    assert_eq!(pa.runs[0].config.to_toml(), pb.runs[0].config.to_toml());
    assert!(
        !pa.runs[0].config.data.dataset.contains(".."),
        "{}",
        pa.runs[0].config.data.dataset
    );
}

#[test]
fn alpha_rules_fixed_scaled_and_default() {
    let alpha_of = |sweep: &str| -> Vec<f64> {
        experiment(sweep)
            .unwrap()
            .plan(Path::new("/r"))
            .unwrap()
            .runs
            .iter()
            .map(|r| r.config.lora.as_ref().unwrap().alpha())
            .collect()
    };
    assert_eq!(
        alpha_of("[sweep]\nranks = [2, 8]\nalpha = 16.0\n"),
        vec![16.0, 16.0]
    );
    assert_eq!(
        alpha_of("[sweep]\nranks = [2, 8]\nalpha_per_rank = 1.0\n"),
        vec![2.0, 8.0]
    );
    assert_eq!(alpha_of("[sweep]\nranks = [2, 8]\n"), vec![4.0, 16.0]);
    // Without a sweep rule, `base.lora.alpha` applies to every rank.
    let text = format!("{BASE}\n[base.lora]\nrank = 1\nalpha = 5.0\n[sweep]\nranks = [2, 8]\n");
    let e = Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES).unwrap();
    let alphas: Vec<f64> = e
        .plan(Path::new("/r"))
        .unwrap()
        .runs
        .iter()
        .map(|r| r.config.lora.as_ref().unwrap().alpha())
        .collect();
    assert_eq!(alphas, vec![5.0, 5.0]);
}

#[test]
fn layer_selections_and_full_lr() {
    let e = experiment(
        "[sweep]\nranks = [4]\nlayers = [\"all\", [0, 1]]\nfull_finetune = true\nfull_lr = 1e-6\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let layers: Vec<_> = plan
        .runs
        .iter()
        .filter_map(|r| r.config.lora.as_ref().map(|l| l.layers.clone()))
        .collect();
    assert_eq!(layers, vec![None, Some(vec![0, 1])]);
    assert!(plan.runs.iter().any(|r| r.group == "lora-q+v-r4-L0.1"));
    let full = plan
        .runs
        .iter()
        .find(|r| r.axes.mode == Mode::Full)
        .unwrap();
    assert_eq!(full.config.optim.lr, 1e-6);
    let lora = plan
        .runs
        .iter()
        .find(|r| r.axes.mode == Mode::Lora)
        .unwrap();
    assert_eq!(lora.config.optim.lr, 1e-4);
}

#[test]
fn malformed_experiments_name_the_key_and_line() {
    // Line numbers count from the start of BASE (which begins with a newline).
    let base_lines = BASE.lines().count();

    let (line, _, message) = located(experiment("[sweep]\nranks = [1, 4]\nrankz = [2]\n"));
    assert_eq!(line, Some(base_lines + 4));
    assert!(message.contains("unknown field `rankz`"), "{message}");

    let (line, key, message) = located(experiment("[sweep]\nranks = [0, 4]\n"));
    assert_eq!((line, key.as_str()), (Some(base_lines + 3), "sweep.ranks"));
    assert!(message.contains("at least 1"), "{message}");

    let (line, key, message) = located(experiment(
        "[sweep]\nranks = [4]\ntargets = [[\"q\", \"x\"]]\n",
    ));
    assert_eq!(line, Some(base_lines + 4), "{key}: {message}");

    let (line, key, _) = located(experiment("[sweep]\nranks = [4]\ncrop_samples = [100]\n"));
    assert_eq!(
        (line, key.as_str()),
        (Some(base_lines + 4), "sweep.crop_samples")
    );

    let (line, key, _) = located(experiment("[sweep]\nranks = [4]\nlayers = [[0, 7]]\n"));
    assert_eq!((line, key.as_str()), (Some(base_lines + 4), "sweep.layers"));

    let (_, key, _) = located(experiment(
        "[sweep]\nranks = [4]\nalpha = 2.0\nalpha_per_rank = 1.0\n",
    ));
    assert_eq!(key, "sweep.alpha_per_rank");

    let (_, key, _) = located(experiment("[sweep]\n"));
    assert_eq!(key, "sweep");

    let text = BASE.replace("epochs = 1", "epochs = 1\nbatch_size = 0") + "[sweep]\nranks = [4]\n";
    let (line, key, _) = located(Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES));
    assert_eq!((line, key.as_str()), (Some(13), "base.train.batch_size"));

    let text = BASE.replace("[base]\n", "[base]\noutput_dir = \"x\"\n") + "[sweep]\nranks = [4]\n";
    let (line, key, _) = located(Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES));
    assert_eq!((line, key.as_str()), (Some(5), "base.output_dir"));

    let (_, key, _) = located(Experiment::parse(
        &BASE.replace("name = \"demo\"", "name = \"../up\""),
        Path::new("e.toml"),
        MODEL_RULES,
    ));
    assert_eq!(key, "name");
}

#[test]
fn a_missing_dataset_or_checkpoint_is_named_with_where_to_get_it() {
    let text = BASE.replace(
        "asvspoof2019:../datasets/mini",
        "asvspoof2019:/nonexistent/LA",
    ) + "[sweep]\nranks = [4]\n";
    let e = Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES).unwrap();
    let plan = e
        .plan(Path::new("/r"))
        .expect("--plan works without the data");
    let err = e.check_inputs(&plan).unwrap_err().to_string();
    assert!(
        err.contains("e.toml:7: `base.data.dataset`: /nonexistent/LA does not exist"),
        "{err}"
    );
    assert!(err.contains("datashare.ed.ac.uk"), "{err}");

    let text = BASE
        .replace(
            "asvspoof2019:../datasets/mini",
            &format!(
                "asvspoof2019:{}/../../datasets/mini",
                env!("CARGO_MANIFEST_DIR")
            ),
        )
        .replace("preset = \"tiny\"", "checkpoint = \"/nonexistent/xls-r\"")
        + "[sweep]\nranks = [4]\n";
    let e = Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES).unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let err = e.check_inputs(&plan).unwrap_err().to_string();
    assert!(
        err.contains("`base.model.checkpoint`: /nonexistent/xls-r does not exist"),
        "{err}"
    );
    assert!(err.contains("facebook/wav2vec2-xls-r-300m"), "{err}");
}

#[test]
fn shipped_experiments_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let e = Experiment::load(&path, MODEL_RULES).unwrap_or_else(|err| panic!("{err}"));
            assert!(!e.plan(Path::new("/r")).unwrap().runs.is_empty());
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "quickstart, rank, target and length ablations ship"
    );
}

#[test]
fn probe_layers_add_one_probe_per_seed_length_and_layer() {
    let e = experiment(
        r#"
[sweep]
ranks = [4]
full_finetune = true
probe_layers = [4, 2]
crop_samples = [16000, 32000]
seeds = [0, 1]
"#,
    )
    .unwrap();
    let plan = e.plan(Path::new("/tmp/results")).unwrap();
    let probes: Vec<_> = plan
        .runs
        .iter()
        .filter(|r| r.axes.mode == Mode::Probe)
        .collect();
    // seeds x lengths x layers
    assert_eq!(probes.len(), 2 * 2 * 2);
    assert_eq!(plan.runs.len(), 2 * 2 * (1 + 1 + 2));
    for r in &probes {
        let layer = r.axes.probe_layer.unwrap();
        assert_eq!(r.config.probe.as_ref().unwrap().layer, layer);
        assert!(r.config.lora.is_none());
        assert_eq!(r.config.mode(), Mode::Probe);
        // The base learning rate applies (no `full_lr` here, but none is taken from elsewhere).
        assert_eq!(r.config.optim.lr, e.base.optim.lr);
        let group = match r.axes.crop_samples {
            16000 => format!("probe-L{layer}"),
            other => format!("probe-L{layer}-len{other}"),
        };
        assert_eq!(r.group, group);
        assert!(
            r.id.starts_with(&format!("{group}-s{}-", r.axes.seed)),
            "{}",
            r.id
        );
        assert_eq!(r.axes.layers_label(), format!("L{layer}"));
    }
    assert!(plan.runs.iter().any(|r| r.id.starts_with("probe-L4-s0-")));
    // An included probe takes the first layer as written, not the smallest.
    let written_order = experiment("[sweep]\nprobe_layers = [4, 2, 4]\ninclude = [{ mode = \"probe\", crop_samples = 32000 }]\n").unwrap();
    let groups: Vec<String> = written_order
        .plan(Path::new("/r"))
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.group)
        .collect();
    assert_eq!(groups, ["probe-L4", "probe-L2", "probe-L4-len32000"]);
    // Probes never leak into the other runs.
    assert!(plan
        .runs
        .iter()
        .filter(|r| r.axes.mode != Mode::Probe)
        .all(|r| r.config.probe.is_none()));
    // Adding probes renames nothing that existed before.
    let before = ids(&experiment(
        "[sweep]\nranks = [4]\nfull_finetune = true\ncrop_samples = [16000, 32000]\nseeds = [0, 1]\n",
    )
    .unwrap());
    let after = ids(&e);
    assert!(before.iter().all(|id| after.contains(id)));
    // Same for the pinned IDs of run_ids_are_pinned_across_builds.
    let pinned = ids(&experiment(
        "[sweep]\nranks = [4]\nfull_finetune = true\nprobe_layers = [4]\n",
    )
    .unwrap());
    assert!(pinned.contains(&"full-s0-a8df037b".to_string()));
    assert!(pinned.contains(&"lora-q+v-r4-s0-0e72f21b".to_string()));

    // Probes alone are an experiment.
    let only = experiment("[sweep]\nprobe_layers = [0]\n").unwrap();
    assert_eq!(ids(&only).len(), 1);
    assert!(ids(&only)[0].starts_with("probe-L0-s0-"));
}

#[test]
fn rules_name_probes_by_mode() {
    let e = experiment(
        r#"
[sweep]
ranks = [4]
probe_layers = [3, 4]
seeds = [0, 1]
exclude = [{ mode = "probe", seed = 1 }]
"#,
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let probes = |plan: &fadlora_sweep::Plan| {
        plan.runs
            .iter()
            .filter(|r| r.axes.mode == Mode::Probe)
            .map(|r| (r.axes.probe_layer.unwrap(), r.axes.seed))
            .collect::<Vec<_>>()
    };
    assert_eq!(probes(&plan), [(3, 0), (4, 0)]);
    assert_eq!(plan.runs.len(), 2 + 2);

    // An include with mode probe probes the first listed layer, per seed unless it names one.
    let e = experiment(
        r#"
[sweep]
ranks = [4]
probe_layers = [2]
seeds = [0, 1]
exclude = [{ mode = "probe" }]
include = [{ mode = "probe", seed = 1, crop_samples = 32000 }]
"#,
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    assert_eq!(probes(&plan), [(2, 1)]);
    let probe = plan
        .runs
        .iter()
        .find(|r| r.axes.mode == Mode::Probe)
        .unwrap();
    assert_eq!(probe.group, "probe-L2-len32000");
    assert_eq!(probe.config.data.crop_samples, 32000);

    // Without `probe_layers` there is no layer to probe.
    let (_, key, message) = located(experiment(
        "[sweep]\nranks = [4]\ninclude = [{ mode = \"probe\" }]\n",
    ));
    assert_eq!(key, "sweep.include");
    assert!(message.contains("probe_layers"), "{message}");
    // A probe has no LoRA axes.
    let (_, key, message) = located(experiment(
        "[sweep]\nprobe_layers = [1]\ninclude = [{ mode = \"probe\", rank = 4 }]\n",
    ));
    assert_eq!(key, "sweep.include");
    assert!(message.contains("a probe has no"), "{message}");
    // Rules that name LoRA axes never match a probe.
    let (_, key, _) = located(experiment(
        "[sweep]\nprobe_layers = [1]\nexclude = [{ rank = 4 }]\n",
    ));
    assert_eq!(key, "sweep.exclude");
}

#[test]
fn malformed_probe_axes_name_the_key_and_line() {
    let base_lines = BASE.lines().count();
    // `tiny` has 4 layers: 5 hidden states, 0 to 4.
    let (line, key, message) = located(experiment("[sweep]\nprobe_layers = [4, 5]\n"));
    assert_eq!(
        (line, key.as_str()),
        (Some(base_lines + 3), "sweep.probe_layers")
    );
    assert!(message.contains("4 encoder layers"), "{message}");
    let (_, key, _) = located(experiment("[sweep]\nprobe_layers = []\n"));
    assert_eq!(key, "sweep.probe_layers");
    // The base is a run TOML: `[probe]` with `[lora]` is refused there too.
    let text = format!("{BASE}[base.lora]\nrank = 4\n[base.probe]\nlayer = 1\n");
    let (_, key, _) = located(Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES));
    assert_eq!(key, "base.probe");
    // A base that is a probe gives its layer to the sweep.
    let text = format!("{BASE}[base.probe]\nlayer = 1\n[sweep]\nfull_finetune = true\n");
    let e = Experiment::parse(&text, Path::new("e.toml"), MODEL_RULES).unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(groups, ["full", "probe-L1"]);
    assert!(plan.runs[0].config.probe.is_none());
    // The message for an empty sweep mentions probes.
    let (_, _, message) = located(experiment("[sweep]\n"));
    assert!(message.contains("probe_layers"), "{message}");
}

const WITH_REFERENCE: &str = r#"
[sweep]
ranks = [4]
full_finetune = true

[[reference.figures]]
group = "lora-q+v-r4"
metric = "eval_eer_percent"
value = 1.30
source = "secondary source: a survey"

[[reference.figures]]
group = "full"
metric = "trainable_params"
value = 317e6
source = "abstract"
note = "counts the back end too"
"#;

#[test]
fn published_figures_reach_the_plan_and_leave_run_ids_alone() {
    let e = experiment(WITH_REFERENCE).unwrap();
    let plan = e.plan(Path::new("/tmp/results")).unwrap();
    assert_eq!(plan.published.len(), 2);
    assert_eq!(plan.published[0].group, "lora-q+v-r4");
    assert_eq!(
        plan.published[0].metric,
        fadlora_run::PublishedMetric::EvalEerPercent
    );
    assert_eq!(
        plan.published[1].note.as_deref(),
        Some("counts the back end too")
    );
    let without = experiment("[sweep]\nranks = [4]\nfull_finetune = true\n").unwrap();
    assert_eq!(ids(&e), ids(&without));
    assert!(without
        .plan(Path::new("/tmp/results"))
        .unwrap()
        .published
        .is_empty());
    // plan.json round-trips them, and a plan written before them still reads.
    let json = serde_json::to_string(&plan).unwrap();
    let back: fadlora_run::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back.published, plan.published);
    let old = serde_json::to_string(&without.plan(Path::new("/tmp/results")).unwrap()).unwrap();
    assert!(!old.contains("published"), "{old}");
}

#[test]
fn a_bad_published_figure_names_its_field_and_line() {
    // Line k of WITH_REFERENCE (its empty first line is 1) is line base_lines + k.
    let base_lines = BASE.lines().count() + 1;
    let case = |from: &str, to: &str| located(experiment(&WITH_REFERENCE.replace(from, to)));

    let (line, key, message) = case("group = \"full\"", "group = \"full-r4\"");
    assert_eq!(key, "reference.figures.group");
    assert_eq!(line, Some(base_lines + 13));
    assert!(
        message.contains("entry 2") && message.contains("full-r4"),
        "{message}"
    );
    assert!(message.contains("full, lora-q+v-r4"), "{message}");

    let (line, key, message) = case("value = 1.30", "value = 130.0");
    assert_eq!(key, "reference.figures.value");
    assert_eq!(line, Some(base_lines + 9));
    assert!(message.contains("[0, 100]"), "{message}");

    let (line, key, _) = case("source = \"abstract\"", "source = \" \"");
    assert_eq!(key, "reference.figures.source");
    assert_eq!(line, Some(base_lines + 16));

    // A metric the report cannot measure, or a key the table does not know: serde names it.
    let (line, _, message) = case("\"trainable_params\"", "\"eer\"");
    assert_eq!(line, Some(base_lines + 14));
    assert!(message.contains("eval_eer_percent"), "{message}");
    let (line, _, message) = case("note =", "comment =");
    assert_eq!(line, Some(base_lines + 17));
    assert!(message.contains("comment"), "{message}");

    let twice = format!(
        "{WITH_REFERENCE}\n[[reference.figures]]\ngroup = \"lora-q+v-r4\"\nmetric = \"eval_eer_percent\"\nvalue = 1.2\nsource = \"secondary source: a survey\"\n"
    );
    let (line, _, message) = located(experiment(&twice));
    assert!(
        message.contains("entry 3") && message.contains("repeats"),
        "{message}"
    );
    assert_eq!(line, Some(base_lines + 23));
}

/// Every shipped experiment says its LayerDrop, and those on the paper's setting (XLS-R 300M on
/// ASVspoof 2019 LA) run three seeds or more with the reference recipe where the paper is
/// silent, and attribute no table to it.
#[test]
fn shipped_paper_experiments_use_the_reference_recipe_and_three_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut paper = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let e = Experiment::load(&path, MODEL_RULES).unwrap();
        let name = path.display();
        assert!(
            e.base.model.overrides.layerdrop.is_some(),
            "{name}: set `layerdrop` in [base.model]"
        );
        let xlsr = e
            .base
            .model
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.to_string_lossy().contains("xls-r-300m"));
        if !(xlsr && e.base.data.dataset.starts_with("asvspoof2019:")) {
            continue;
        }
        paper.push(e.name.clone());
        let plan = e.plan(Path::new("/r")).unwrap();
        let seeds: std::collections::BTreeSet<u64> =
            plan.runs.iter().map(|r| r.axes.seed).collect();
        assert!(seeds.len() >= 3, "{name}: seeds {seeds:?}");
        for run in &plan.runs {
            let c = &run.config;
            assert_eq!(
                c.data.train_crop,
                fadlora_run::config::TrainCrop::First,
                "{name}"
            );
            assert_eq!(c.model.overrides.layerdrop, Some(0.0), "{name}");
            assert_eq!(
                c.head.score,
                fadlora_run::ScoreKind::BonafideLogit,
                "{name}"
            );
            assert_eq!(c.optim.kind, fadlora_run::config::OptimKind::Adam, "{name}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("Table"), "{name} cites a table of the paper");
    }
    paper.sort();
    assert_eq!(
        paper,
        [
            "length_ablation",
            "method_ablation",
            "rank_ablation",
            "target_ablation"
        ]
    );
}

/// `methods` compares parameter-efficient methods on one footing: LoRA and DoRA over the same
/// rank grid, (IA)^3 once per seed, each with its own group; the methods that existed before
/// keep their run IDs.
#[test]
fn methods_plan_lora_dora_and_ia3_side_by_side() {
    let e = experiment(
        "[sweep]\nranks = [4]\nfull_finetune = true\nmethods = [\"lora\", \"dora\", \"ia3\"]\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        groups,
        ["full", "lora-q+v-r4", "dora-q+v-r4", "ia3-k+v+ffn_out"]
    );
    // LoRA and full fine-tuning are the runs a plain rank sweep has.
    assert_eq!(
        &ids(&e)[..2],
        ["full-s0-a8df037b", "lora-q+v-r4-s0-0e72f21b"]
    );
    let dora = &plan.runs[2];
    assert!(dora.axes.dora && dora.config.lora.as_ref().unwrap().use_dora);
    let ia3 = &plan.runs[3];
    assert_eq!(ia3.axes.mode, fadlora_sweep::Mode::Ia3);
    assert!(ia3.config.lora.is_none());
    assert_eq!(ia3.config.ia3, Some(fadlora_run::Ia3Section::default()));
    // An (IA)^3 include needs no rank; a rank on it is refused.
    let err = experiment("[sweep]\nranks = [4]\ninclude = [{ mode = \"ia3\", rank = 4 }]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("(IA)^3") && err.contains("sweep.include"),
        "{err}"
    );
}

/// `moe-lora` in `methods` runs the rank grid once per `experts` entry, with the base's
/// `[lora.moe]` routing and loss weight; LoRA keeps its run IDs (a `[lora.moe]` table in the
/// base does not reach plain LoRA runs); an expert count of 1 names its axis.
#[test]
fn methods_plan_mixtures_of_lora_experts_per_expert_count() {
    let e = experiment(
        "[base.lora]\nrank = 4\n[base.lora.moe]\nrouting = \"top1\"\nbalance_loss = 0.05\n\
         [sweep]\nranks = [4, 2]\nfull_finetune = true\nmethods = [\"lora\", \"moe-lora\"]\n\
         experts = [2, 4, 2]\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        groups,
        [
            "full",
            "lora-q+v-r4",
            "lora-q+v-r2",
            "moe2-q+v-r4",
            "moe2-q+v-r2",
            "moe4-q+v-r4",
            "moe4-q+v-r2"
        ]
    );
    assert_eq!(
        &ids(&e)[..2],
        ["full-s0-a8df037b", "lora-q+v-r4-s0-0e72f21b"]
    );
    assert!(plan.runs[1].config.lora.as_ref().unwrap().moe.is_none());
    let moe = &plan.runs[5];
    assert_eq!(moe.axes.mode, fadlora_sweep::Mode::Lora);
    assert_eq!(moe.axes.experts, Some(4));
    assert_eq!(
        moe.config.lora.as_ref().unwrap().moe,
        Some(fadlora_run::MoeSection {
            experts: 4,
            routing: fadlora_run::MoeRouting::Top1,
            balance_loss: 0.05
        })
    );
    let err = experiment("[sweep]\nranks = [4]\nmethods = [\"moe-lora\"]\nexperts = [1]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("sweep.experts"), "{err}");
}

/// `adapter` in `methods` plans one run per `adapter_sizes` entry, of the base's `[adapter]`
/// kind; the other methods keep their run IDs; a size of 0 names its axis.
#[test]
fn methods_plan_adapter_layers_per_size() {
    let e = experiment(
        "[sweep]\nranks = [4]\nfull_finetune = true\nmethods = [\"lora\", \"adapter\"]\n\
         adapter_sizes = [8, 32, 8]\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        groups,
        ["full", "lora-q+v-r4", "adapter-mms-8", "adapter-mms-32"]
    );
    assert_eq!(
        &ids(&e)[..2],
        ["full-s0-a8df037b", "lora-q+v-r4-s0-0e72f21b"]
    );
    let adapter = &plan.runs[3];
    assert_eq!(adapter.axes.mode, fadlora_sweep::Mode::Adapter);
    assert!(adapter.config.lora.is_none());
    assert_eq!(
        adapter.config.adapter,
        Some(fadlora_run::AdapterSection {
            kind: fadlora_run::AdapterKind::Mms,
            size: 32
        })
    );
    let err = experiment("[sweep]\nmethods = [\"adapter\"]\nadapter_sizes = [0]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("sweep.adapter_sizes"), "{err}");
}

/// `partial` in `methods` plans one run per `partial_counts` entry at the base's `[partial]`
/// end, at `full_lr`; the other methods keep their run IDs; an include adds the first count;
/// a count of 0 or beyond the model's layers names its axis.
#[test]
fn methods_plan_partial_fine_tuning_per_layer_count() {
    let e = experiment(
        "[sweep]\nranks = [4]\nfull_finetune = true\nfull_lr = 1e-6\n\
         methods = [\"lora\", \"partial\"]\npartial_counts = [2, 1, 2]\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        groups,
        ["full", "lora-q+v-r4", "partial-top-2", "partial-top-1"]
    );
    let without =
        experiment("[sweep]\nranks = [4]\nfull_finetune = true\nfull_lr = 1e-6\n").unwrap();
    assert_eq!(ids(&e)[..2], ids(&without)[..]);
    let partial = &plan.runs[3];
    assert_eq!(partial.axes.mode, fadlora_sweep::Mode::Partial);
    assert_eq!(partial.axes.layers_label(), "top 1");
    assert!(partial.config.lora.is_none());
    assert_eq!(partial.config.optim.lr, 1e-6);
    assert_eq!(
        partial.config.partial,
        Some(fadlora_run::PartialSection {
            layers: fadlora_run::PartialLayers::Top,
            count: 1,
            feature_projection: false
        })
    );
    // The base's `[partial]` end and feature projection; an include of the first count.
    let text = "[base.partial]\nlayers = \"bottom\"\nfeature_projection = true\n\
                [sweep]\npartial_counts = [1]\n[[sweep.include]]\nmode = \"partial\"\nseed = 7\n";
    let plan = experiment(text).unwrap().plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(groups, ["partial-bottom-1-fp", "partial-bottom-1-fp"]);
    assert_eq!(
        plan.runs.iter().map(|r| r.config.seed).collect::<Vec<_>>(),
        [0, 7]
    );
    assert!(
        plan.runs[1]
            .config
            .partial
            .as_ref()
            .unwrap()
            .feature_projection
    );
    let err = experiment("[sweep]\nmethods = [\"partial\"]\npartial_counts = [0]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("sweep.partial_counts"), "{err}");
    let err = experiment("[sweep]\nmethods = [\"partial\"]\npartial_counts = [99]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("sweep.partial_counts"), "{err}");
}

/// `sls` in `methods` plans one run per seed and length (group `sls`): the SLS head on a
/// frozen front end (`[frozen]`, head kind `sls`, no `[lora]`), whatever the base's head; a
/// base `[frozen]` table with another head is refused, naming it.
#[test]
fn methods_plan_an_sls_head_on_a_frozen_front_end_per_seed() {
    let e = experiment("[sweep]\nranks = [4]\nseeds = [0, 1]\nmethods = [\"lora\", \"sls\"]\n")
        .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(groups, ["lora-q+v-r4", "sls", "lora-q+v-r4", "sls"]);
    let run = &plan.runs[1];
    assert_eq!(run.axes.mode, fadlora_sweep::Mode::Frozen);
    assert!(run.config.lora.is_none());
    assert_eq!(run.config.frozen, Some(fadlora_run::FrozenSection {}));
    assert_eq!(run.config.head.kind, fadlora_run::HeadKind::Sls);
    assert_eq!(
        plan.runs[0].config.head.kind,
        fadlora_run::HeadKind::MeanLinear
    );
    let (_, key, _) = located(experiment("[base.frozen]\n[sweep]\nseeds = [0]\n"));
    assert_eq!(key, "base.frozen");
    // `sls_lr` sets the SLS runs' learning rate and no other's.
    let e =
        experiment("[sweep]\nranks = [4]\nmethods = [\"lora\", \"sls\"]\nsls_lr = 1e-5\n").unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    assert_eq!(plan.runs[1].config.optim.lr, 1e-5);
    assert_ne!(plan.runs[0].config.optim.lr, 1e-5);
}

/// `layer-sum` in `methods` plans one run per seed and length (group `layer-sum`), with a
/// `[layer_sum]` table and no `[lora]`; an include with `mode = "layer-sum"` adds one more.
#[test]
fn methods_plan_a_layer_sum_per_seed() {
    let e = experiment(
        "[sweep]\nranks = [4]\nseeds = [0, 1]\nmethods = [\"lora\", \"layer-sum\"]\n\
         [[sweep.include]]\nmode = \"layer-sum\"\nseed = 7\n",
    )
    .unwrap();
    let plan = e.plan(Path::new("/r")).unwrap();
    let groups: Vec<&str> = plan.runs.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        groups,
        [
            "lora-q+v-r4",
            "layer-sum",
            "lora-q+v-r4",
            "layer-sum",
            "layer-sum"
        ]
    );
    let run = &plan.runs[1];
    assert_eq!(run.axes.mode, fadlora_sweep::Mode::LayerSum);
    assert!(run.config.lora.is_none());
    assert_eq!(run.config.layer_sum, Some(fadlora_run::LayerSumSection {}));
    assert_eq!(plan.runs[4].config.seed, 7);
    let err = experiment(
        "[sweep]\nmethods = [\"layer-sum\"]\n[[sweep.include]]\nmode = \"layer-sum\"\nrank = 4\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("layer-sum run has no `rank`"), "{err}");
}

#[test]
fn base_eval_sets_reach_every_run_resolved_and_are_checked() {
    let sets = "\n[[base.eval_sets]]\nname = \"itw\"\ndataset = \"itw:../data/itw\"\n\
                split = \"eval\"\n";
    let text = format!("{BASE}{sets}\n[sweep]\nranks = [4]\nseeds = [0, 1]\n");
    let e = Experiment::parse(&text, Path::new("experiments/demo.toml"), MODEL_RULES).unwrap();
    let plan = e.plan(Path::new("/tmp/results")).unwrap();
    assert!(plan.runs.len() >= 2);
    let cwd = std::env::current_dir().unwrap();
    for run in &plan.runs {
        assert_eq!(run.config.eval_sets.len(), 1);
        let set = &run.config.eval_sets[0];
        assert_eq!(set.name, "itw");
        // Relative to the experiment TOML, spelled without `..`.
        assert_eq!(set.dataset, format!("itw:{}/data/itw", cwd.display()));
    }
    // The sets are part of the run: its ID changes with them.
    let plain = experiment("[sweep]\nranks = [4]\nseeds = [0, 1]\n").unwrap();
    assert_ne!(ids(&e), ids(&plain));
    // A missing set stops the sweep before any run (the dataset itself exists).
    let mini = format!("{}/../../datasets/mini", env!("CARGO_MANIFEST_DIR"));
    let text = text.replace("../datasets/mini", &mini);
    let e = Experiment::parse(&text, Path::new("experiments/demo.toml"), MODEL_RULES).unwrap();
    let plan = e.plan(Path::new("/tmp/results")).unwrap();
    let err2 = e.check_inputs(&plan).unwrap_err().to_string();
    assert!(
        err2.contains("base.eval_sets") && err2.contains("data/itw"),
        "{err2}"
    );

    let twice = format!("{BASE}{sets}{sets}\n[sweep]\nranks = [4]\n");
    let (line, key, message) = located(Experiment::parse(
        &twice,
        Path::new("experiments/demo.toml"),
        MODEL_RULES,
    ));
    assert_eq!(key, "base.eval_sets.name");
    // The second entry's `name`: BASE, a blank line, then five lines per entry.
    assert_eq!(line, Some(BASE.lines().count() + 8));
    assert!(message.contains("used twice"), "{message}");
}
