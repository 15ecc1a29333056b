//! ASVspoof 5 Track 1 metrics against the organisers' evaluation code
//! (`tools/fixtures/make_dcf_fixtures.py` writes `fixtures/dcf/reference.json` by calling the
//! package's `calculate_modules.py`; minCllr there is a separate numpy PAV).

use std::path::Path;

use fadlora_metrics::{act_dcf, cllr, eer, min_cllr, min_dcf, track1_metrics, DcfCostModel};
use serde_json::Value;

const RELATIVE_TOLERANCE: f64 = 1e-9;

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dcf/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    let scale = want.abs().max(1e-300);
    assert!(
        got == want || (got - want).abs() / scale <= RELATIVE_TOLERANCE,
        "{what}: got {got}, organisers {want}"
    );
}

#[test]
fn the_cost_model_is_the_packages() {
    let reference = reference();
    let model = &reference["cost_model"];
    let ours = DcfCostModel::asvspoof5();
    assert_eq!(ours.p_spoof, model["p_spoof"].as_f64().unwrap());
    assert_eq!(ours.c_miss, model["c_miss"].as_f64().unwrap());
    assert_eq!(ours.c_fa, model["c_fa"].as_f64().unwrap());
}

#[test]
fn track1_metrics_match_the_organisers_code_on_every_set() {
    let reference = reference();
    let sets = reference["sets"].as_object().unwrap();
    assert!(sets.len() >= 6, "expected six fixture sets");
    assert!(sets.contains_key("tiny") && sets.contains_key("ties"));
    let cost = DcfCostModel::asvspoof5();
    for (name, want) in sets {
        let bona = floats(&want["bonafide"]);
        let spoof = floats(&want["spoof"]);
        let f = |key: &str| want[key].as_f64().unwrap();

        close(
            eer(&bona, &spoof).unwrap().eer,
            f("eer"),
            &format!("{name} EER"),
        );
        let min = min_dcf(&bona, &spoof, &cost).unwrap();
        close(min.dcf, f("min_dcf"), &format!("{name} minDCF"));
        close(
            min.threshold,
            f("min_dcf_threshold"),
            &format!("{name} minDCF threshold"),
        );
        let act = act_dcf(&bona, &spoof, &cost).unwrap();
        close(act.dcf, f("act_dcf"), &format!("{name} actDCF"));
        close(
            act.threshold,
            f("act_dcf_threshold"),
            &format!("{name} actDCF threshold"),
        );
        close(
            cllr(&bona, &spoof).unwrap(),
            f("cllr"),
            &format!("{name} Cllr"),
        );
        close(
            min_cllr(&bona, &spoof).unwrap(),
            f("min_cllr"),
            &format!("{name} minCllr"),
        );

        let all = track1_metrics(&bona, &spoof).unwrap();
        assert_eq!(all.min_dcf, min.dcf);
        assert_eq!(all.act_dcf, act.dcf);
        assert!(all.min_cllr <= all.cllr, "{name}: {all:?}");
    }
}

/// The comparison is sharp enough to see a one-trial change: moving a single bona fide score
/// across the Bayes threshold changes actDCF, and swapping the tie order would change minCllr.
#[test]
fn a_one_trial_change_is_detected() {
    let reference = reference();
    let tiny = &reference["sets"]["tiny"];
    let mut bona = floats(&tiny["bonafide"]);
    let spoof = floats(&tiny["spoof"]);
    let cost = DcfCostModel::asvspoof5();
    let want = tiny["act_dcf"].as_f64().unwrap();
    assert!((act_dcf(&bona, &spoof, &cost).unwrap().dcf - want).abs() < 1e-12);
    bona[0] = -5.0;
    assert!((act_dcf(&bona, &spoof, &cost).unwrap().dcf - want).abs() > 0.1);
}
