//! Per-attack and per-condition EERs against numpy (`tools/fixtures/make_bootstrap_fixtures.py`,
//! `fixtures/bootstrap/reference.json`, `breakdown`): each attack against every bona fide trial,
//! each codec's bona fide against its spoofs.

use std::path::Path;

use fadlora_data::{Label, Split, TrialConditions, Utterance};
use fadlora_run::scores::Scored;
use fadlora_run::stats::{breakdown, factor_map, pooled_eer};
use serde_json::Value;

#[test]
fn breakdown_matches_numpy() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bootstrap/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let r = &reference["breakdown"];
    let mut utterances = Vec::new();
    let mut scores = Vec::new();
    for t in r["trials"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap().to_string();
        let label: Label = t["key"].as_str().unwrap().parse().unwrap();
        utterances.push(Utterance {
            id: id.clone(),
            path: id.clone().into(),
            label,
            speaker: None,
            system: t["attack"].as_str().map(str::to_string),
            split: Split::Eval,
            conditions: Some(TrialConditions {
                codec: t["codec"].as_str().unwrap().to_string(),
                transmission: None,
                source_corpus: None,
                trim: "notrim".into(),
                subset: "eval".into(),
                vocoder: None,
            }),
        });
        scores.push(Scored {
            id,
            label,
            score: t["score"].as_f64().unwrap(),
        });
    }
    let got = breakdown(&scores, &factor_map(&utterances), None).unwrap();
    let expected = r["expected"].as_array().unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        let what = format!("{} {}", g.factor, g.value);
        assert_eq!(g.factor, e["factor"].as_str().unwrap(), "{what}");
        assert_eq!(g.value, e["value"].as_str().unwrap(), "{what}");
        assert_eq!(
            g.n_bonafide as u64,
            e["n_bonafide"].as_u64().unwrap(),
            "{what}"
        );
        assert_eq!(g.n_spoof as u64, e["n_spoof"].as_u64().unwrap(), "{what}");
        let want = e["eer"].as_f64().unwrap() * 100.0;
        assert!(
            (g.eer_percent - want).abs() < 1e-9,
            "{what}: {} vs {want}",
            g.eer_percent
        );
    }
    // The attacks differ (A07 easy, A09 hard): a breakdown that ignored the attack would fail.
    assert!(got[0].eer_percent < got[2].eer_percent);
    let (pooled, _, _) = pooled_eer(&[&scores]).unwrap();
    assert!((pooled - r["pooled_eer"].as_f64().unwrap() * 100.0).abs() < 1e-9);
}
