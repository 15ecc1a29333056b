//! `fadlora sweep --slurm` without a scheduler: the `[slurm]` table's errors, the batch script,
//! and run statuses judged from a results folder and a scheduler's (scripted) answers. The CI
//! stage `tools/slurm/ci_check.sh` runs the same code against a real single-node SLURM cluster.

use std::collections::HashMap;
use std::path::Path;

use fadlora_run::layout::{LOG_FILE, PROGRESS_FILE, RECORD_FILE, RUN_LOCK_FILE, SLURM_EXIT_FILE};
use fadlora_run::LockOwner;
use fadlora_sweep::slurm::{
    sbatch_script, SchedulerView, SlurmSection, Submission, Submissions, SubmitOptions, TaskState,
};
use fadlora_sweep::status::{run_statuses, RunStatus};
use fadlora_sweep::{Experiment, Plan, SweepError};
use fadlora_train::config::MODEL_RULES;

const EXPERIMENT: &str = r#"
name = "demo"

[base]
backend = "cuda"
[base.data]
dataset = "asvspoof2019:../datasets/mini"
crop_samples = 16000
[base.model]
preset = "tiny"
[base.train]
epochs = 3

[sweep]
ranks = [1, 4]
seeds = [0]
full_finetune = true
"#;

fn experiment(slurm: &str) -> Result<Experiment, SweepError> {
    Experiment::parse(
        &format!("{EXPERIMENT}\n{slurm}"),
        Path::new("experiments/demo.toml"),
        MODEL_RULES,
    )
}

#[test]
fn the_slurm_table_is_validated_with_key_and_line() {
    let lines = EXPERIMENT.lines().count();
    let e =
        experiment("[slurm]\npartition = \"gpu\"\ntime = \"1-00:00:00\"\nthrottle = 4\n").unwrap();
    assert_eq!(e.slurm.partition.as_deref(), Some("gpu"));
    assert_eq!(e.slurm.throttle, Some(4));

    for (table, key, line) in [
        (
            "[slurm]\npartition = \"gpu\"\nmem = \"lots\"\n",
            "slurm.mem",
            lines + 4,
        ),
        ("[slurm]\ntime = \"1 day\"\n", "slurm.time", lines + 3),
        (
            "[slurm]\nsbatch = [\"constraint=a100\"]\n",
            "slurm.sbatch",
            lines + 3,
        ),
    ] {
        match experiment(table) {
            Err(SweepError::Run(fadlora_run::RunError::Config {
                line: found,
                key: k,
                ..
            })) => assert_eq!((found, k.as_str()), (Some(line), key), "{table}"),
            other => panic!("{table}: expected a located error, got {other:?}"),
        }
    }
    let err = experiment("[slurm]\ngpu = 2\n").unwrap_err().to_string();
    assert!(err.contains("unknown field `gpu`"), "{err}");
    assert!(err.contains(&format!(":{}", lines + 3)), "{err}");
}

fn plan_in(dir: &Path) -> Plan {
    experiment("[slurm]\npartition = \"gpu\"\ntime = \"24:00:00\"\nthrottle = 2\nsbatch = [\"--constraint=a100\"]\nsetup = [\"module load cuda/12.4\"]\n")
        .unwrap()
        .plan(dir)
        .unwrap()
}

#[test]
fn the_batch_script_maps_array_tasks_to_runs_and_carries_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_in(dir.path());
    let e = experiment("[slurm]\npartition = \"gpu\"\ntime = \"24:00:00\"\nthrottle = 2\nsbatch = [\"--constraint=a100\"]\nsetup = [\"module load cuda/12.4\"]\n").unwrap();
    let options = SubmitOptions {
        slurm: e.slurm.clone().overridden_by(SlurmSection {
            mem: Some("64G".into()),
            ..Default::default()
        }),
        trainer: "/opt/fadlora/bin/fadlora".into(),
        gpu_backend: true,
        dry_run: true,
    };
    let runs: Vec<_> = plan.runs.iter().skip(1).collect();
    let script = sbatch_script(&plan, &runs, &options, Path::new("/frozen/fadlora-1"), 2);
    for line in [
        "#SBATCH --array=0-1%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=24:00:00",
        "#SBATCH --mem=64G",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --constraint=a100",
        "#SBATCH --job-name=fadlora-demo",
        "module load cuda/12.4",
        "fadlora=/frozen/fadlora-1",
        "run_id=${runs[$SLURM_ARRAY_TASK_ID]}",
    ] {
        assert!(script.contains(line), "missing `{line}` in\n{script}");
    }
    let logs = format!(
        "#SBATCH --output={}/%A_%a.out",
        plan.dir.join("slurm/logs").display()
    );
    assert!(script.contains(&logs), "{script}");
    // The array lists the runs in the order given: task i trains runs[i].
    let listed: Vec<&str> = script
        .split("runs=(\n")
        .nth(1)
        .unwrap()
        .split("\n)")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .collect();
    let expected: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, expected);
    // Every #SBATCH line comes before the first command, or sbatch ignores it.
    let first_command = script.find("\nset -uo pipefail").unwrap();
    assert!(script.rfind("#SBATCH").unwrap() < first_command);

    let cpu = SubmitOptions {
        gpu_backend: false,
        ..options
    };
    let script = sbatch_script(&plan, &runs, &cpu, Path::new("/f"), 1);
    assert!(!script.contains("--gres"), "{script}");
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn statuses_come_from_the_folder_first_and_the_scheduler_second() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_in(dir.path());
    assert_eq!(plan.runs.len(), 3);
    let run_dir = |i: usize| plan.run_dir(&plan.runs[i]);
    let submissions = Submissions {
        submissions: vec![Submission {
            number: 1,
            job_id: "40".into(),
            script: "submit-001.sbatch".into(),
            runs: plan.runs.iter().map(|r| r.id.clone()).collect(),
            trainer: "/f".into(),
            submitted_unix: 0,
        }],
    };

    // Nothing on disk, the scheduler unreachable: submitted but unknown.
    let statuses = run_statuses(&plan, &submissions, &SchedulerView::unavailable());
    assert!(matches!(
        &statuses[0],
        RunStatus::Pending { submitted_as: Some(t), .. } if t == "40_0"
    ));
    assert!(statuses.iter().all(RunStatus::needs_training));

    // Run 0 queued, run 1 running with a live lock and a checkpoint, run 2 ended with exit 3.
    let queue = HashMap::from([("40_0".to_string(), TaskState::Queued)]);
    let owner = LockOwner {
        slurm_task: Some("40_1".into()),
        ..LockOwner::current()
    };
    write(
        &run_dir(1).join(RUN_LOCK_FILE),
        &serde_json::to_string(&owner).unwrap(),
    );
    write(
        &run_dir(1).join(PROGRESS_FILE),
        r#"{"epochs_done": 2, "steps": 10}"#,
    );
    write(&run_dir(2).join(SLURM_EXIT_FILE), "40_2 3\n");
    write(&run_dir(2).join(LOG_FILE), "line 1\nError: out of memory\n");
    let scheduler = SchedulerView::from_parts(Some(queue), None);
    let statuses = run_statuses(&plan, &submissions, &scheduler);
    assert_eq!(
        statuses[0],
        RunStatus::Queued {
            task: "40_0".into(),
            epochs_done: 0
        }
    );
    match &statuses[1] {
        RunStatus::Running { by, .. } => assert!(by.contains("SLURM task 40_1"), "{by}"),
        other => panic!("{other:?}"),
    }
    match &statuses[2] {
        RunStatus::Failed {
            task,
            reason,
            log_tail,
            ..
        } => {
            assert_eq!(task, "40_2");
            assert_eq!(reason, "exit code 3");
            assert!(log_tail.contains("out of memory"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!statuses[0].needs_training() && !statuses[1].needs_training());
    assert!(statuses[2].needs_training());

    // Killed by the scheduler: no exit file for this task; accounting names the cause.
    std::fs::remove_file(run_dir(2).join(SLURM_EXIT_FILE)).unwrap();
    let accounting = HashMap::from([(
        "40_2".to_string(),
        ("TIMEOUT".to_string(), "0:0".to_string()),
    )]);
    let scheduler = SchedulerView::from_parts(Some(HashMap::new()), Some(accounting));
    match &run_statuses(&plan, &submissions, &scheduler)[2] {
        RunStatus::Failed { reason, .. } => assert!(reason.starts_with("TIMEOUT"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An exit file of an older task says nothing about the latest one.
    write(&run_dir(2).join(SLURM_EXIT_FILE), "39_5 1\n");
    let scheduler = SchedulerView::from_parts(Some(HashMap::new()), None);
    match &run_statuses(&plan, &submissions, &scheduler)[2] {
        RunStatus::Failed { reason, .. } => {
            assert!(reason.contains("without an exit status"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // A record that does not parse is not a finished run: the run is redone.
    write(&run_dir(2).join(RECORD_FILE), "{}");
    let statuses = run_statuses(&plan, &submissions, &scheduler);
    assert!(
        matches!(statuses[2], RunStatus::Failed { .. }),
        "{:?}",
        statuses[2]
    );
}
