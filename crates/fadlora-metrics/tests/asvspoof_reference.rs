//! EER and min t-DCF against values computed by the ASVspoof reference algorithm in numpy
//! (`tools/fixtures/make_eer_fixtures.py` writes `fixtures/eer/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fadlora_metrics::{eer, min_tdcf, AsvScores, TdcfCostModel};

const TOLERANCE: f64 = 1e-9;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eer")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Bona fide and spoof scores of one fixture set, joined by utterance id because the score
/// file is deliberately in another order than the protocol.
fn class_scores(name: &str) -> (Vec<f64>, Vec<f64>) {
    let dir = fixture_dir();
    let scores: HashMap<String, f64> = read(&dir.join(format!("{name}.scores")))
        .lines()
        .map(|line| {
            let (id, score) = line.split_once(' ').expect("`id score` line");
            (id.to_string(), score.parse().expect("numeric score"))
        })
        .collect();
    let (mut bonafide, mut spoof) = (Vec::new(), Vec::new());
    for line in read(&dir.join(format!("{name}.protocol"))).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let score = scores[fields[1]];
        match fields[4] {
            "bonafide" => bonafide.push(score),
            "spoof" => spoof.push(score),
            other => panic!("unexpected key {other}"),
        }
    }
    (bonafide, spoof)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&read(&fixture_dir().join("reference.json"))).unwrap()
}

#[test]
fn eer_matches_the_asvspoof_reference_on_every_fixture_set() {
    let reference = reference();
    let sets = reference.as_object().unwrap();
    assert!(sets.len() >= 6, "expected the six fixture sets");
    for (name, expected) in sets {
        let (bonafide, spoof) = class_scores(name);
        assert_eq!(
            bonafide.len() as u64,
            expected["n_bonafide"].as_u64().unwrap()
        );
        assert_eq!(spoof.len() as u64, expected["n_spoof"].as_u64().unwrap());
        let got = eer(&bonafide, &spoof).unwrap();
        let want_eer = expected["eer"].as_f64().unwrap();
        let want_threshold = expected["threshold"].as_f64().unwrap();
        assert!(
            (got.eer - want_eer).abs() <= TOLERANCE,
            "{name}: EER {} != reference {want_eer}",
            got.eer
        );
        assert!(
            (got.threshold - want_threshold).abs() <= TOLERANCE,
            "{name}: threshold {} != reference {want_threshold}",
            got.threshold
        );
    }
}

#[test]
fn min_tdcf_matches_the_asvspoof2019_reference() {
    let reference = reference();
    let expected = &reference["large_random"]["tdcf"];
    let mut asv = AsvScores::default();
    let asv_file = fixture_dir().join(expected["asv_scores"].as_str().unwrap());
    for line in read(&asv_file).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let score: f64 = fields[2].parse().unwrap();
        match fields[1] {
            "target" => asv.target.push(score),
            "nontarget" => asv.nontarget.push(score),
            "spoof" => asv.spoof.push(score),
            other => panic!("unexpected ASV key {other}"),
        }
    }
    let rates = fadlora_metrics::asv_error_rates(&asv).unwrap();
    assert!((rates.threshold - expected["asv_threshold"].as_f64().unwrap()).abs() <= TOLERANCE);
    assert!((rates.p_fa - expected["Pfa_asv"].as_f64().unwrap()).abs() <= TOLERANCE);
    assert!((rates.p_miss - expected["Pmiss_asv"].as_f64().unwrap()).abs() <= TOLERANCE);
    assert!(
        (rates.p_miss_spoof - expected["Pmiss_spoof_asv"].as_f64().unwrap()).abs() <= TOLERANCE
    );

    let (bonafide, spoof) = class_scores("large_random");
    let got = min_tdcf(&bonafide, &spoof, &asv, &TdcfCostModel::asvspoof2019()).unwrap();
    let want = expected["min_tdcf"].as_f64().unwrap();
    assert!(
        (got.min_tdcf - want).abs() <= TOLERANCE,
        "min t-DCF {} != reference {want}",
        got.min_tdcf
    );
    let want_threshold = expected["min_tdcf_threshold"].as_f64().unwrap();
    assert!((got.threshold - want_threshold).abs() <= TOLERANCE);
}
