//! `fadlora eer` against the numpy reference values of `fixtures/eer/` (ASVspoof's
//! `compute_eer` / `compute_tDCF`), agreement <= 1e-9.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eer")
}

fn fadlora(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .args(args)
        .output()
        .expect("run fadlora");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

/// `fadlora eer --scores SCORES --protocol PROTOCOL --json`, parsed; `name` labels a failure.
fn eer_json(scores: &Path, protocol: &Path, name: &str) -> serde_json::Value {
    let (ok, stdout, stderr) = fadlora(&[
        "eer",
        "--scores",
        scores.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{name}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn eer_json_matches_every_reference_fixture() {
    let reference = reference();
    let cases = reference.as_object().unwrap();
    assert!(cases.len() >= 6);
    for (name, expected) in cases {
        let scores = fixtures().join(format!("{name}.scores"));
        let protocol = fixtures().join(format!("{name}.protocol"));
        let got = eer_json(&scores, &protocol, name);
        let close = |key: &str, want: f64| {
            let v = got[key].as_f64().unwrap();
            assert!((v - want).abs() <= 1e-9, "{name} {key}: {v} vs {want}");
        };
        close("eer_percent", expected["eer_percent"].as_f64().unwrap());
        close("threshold", expected["threshold"].as_f64().unwrap());
        assert!(got["min_tdcf"].is_null());
    }
}

#[test]
fn min_tdcf_matches_the_reference_with_asv_scores() {
    let reference = reference();
    let expected = &reference["large_random"]["tdcf"];
    let f = |n: &str| fixtures().join(n).to_str().unwrap().to_string();
    let (ok, stdout, stderr) = fadlora(&[
        "eer",
        "--scores",
        &f("large_random.scores"),
        "--protocol",
        &f("large_random.protocol"),
        "--asv-scores",
        &f("asv_large_random.scores"),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let v = got["min_tdcf"].as_f64().unwrap();
    let want = expected["min_tdcf"].as_f64().unwrap();
    assert!((v - want).abs() <= 1e-9, "min t-DCF {v} vs {want}");
}

#[test]
fn plain_output_prints_the_eer_in_percent_with_many_decimals() {
    let f = |n: &str| fixtures().join(n).to_str().unwrap().to_string();
    let (ok, stdout, stderr) = fadlora(&[
        "eer",
        "--scores",
        &f("tiny.scores"),
        "--protocol",
        &f("tiny.protocol"),
    ]);
    assert!(ok, "{stderr}");
    // 7/24 = 29.1666...%
    assert!(stdout.starts_with("EER: 29.166666667 %"), "{stdout}");
}

#[test]
fn scores_outside_the_protocol_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("s.txt");
    std::fs::write(&scores, "LA_E_0000001 0.9\nLA_X_9 0.1\n").unwrap();
    let protocol = fixtures().join("tiny.protocol");
    let (ok, _, stderr) = fadlora(&[
        "eer",
        "--scores",
        scores.to_str().unwrap(),
        "--protocol",
        protocol.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("LA_X_9"), "{stderr}");
}

/// An ASVspoof 5 Track 1 protocol file with scores of the organisers' fixture sets
/// (`fixtures/dcf/`, made by their evaluation code): the JSON carries minDCF, actDCF, Cllr and
/// minCllr, and the plain output prints them.
#[test]
fn asvspoof5_metrics_match_the_organisers_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dcf/reference.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["ties", "shifted"] {
        let set = &reference["sets"][name];
        let mut protocol = String::new();
        let mut scores = String::new();
        let mut n = 0;
        for (key, class) in [("bonafide", "bonafide"), ("spoof", "spoof")] {
            for score in set[key].as_array().unwrap() {
                n += 1;
                let attack = if class == "spoof" { "A17" } else { "bonafide" };
                protocol.push_str(&format!(
                    "E_{n:04} E_{n:010} F C03 2 - AC1 {attack} {class} -\n"
                ));
                // Scores in another order than the protocol, joined by id.
                scores.insert_str(0, &format!("E_{n:010} {score}\n"));
            }
        }
        let protocol_file = dir.path().join(format!("ASVspoof5.{name}.tsv"));
        let score_file = dir.path().join(format!("{name}.scores"));
        std::fs::write(&protocol_file, protocol).unwrap();
        std::fs::write(&score_file, scores).unwrap();
        let got = eer_json(&score_file, &protocol_file, name);
        for (ours, theirs, scale) in [
            ("eer_percent", "eer", 100.0),
            ("min_dcf", "min_dcf", 1.0),
            ("act_dcf", "act_dcf", 1.0),
            ("cllr", "cllr", 1.0),
            ("min_cllr", "min_cllr", 1.0),
        ] {
            let v = got[ours].as_f64().unwrap();
            let want = set[theirs].as_f64().unwrap() * scale;
            assert!(
                (v - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{name} {ours}: {v} vs {want}"
            );
        }

        let (ok, stdout, stderr) = fadlora(&[
            "eer",
            "--scores",
            score_file.to_str().unwrap(),
            "--protocol",
            protocol_file.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        let min_dcf = set["min_dcf"].as_f64().unwrap();
        assert!(stdout.contains(&format!("minDCF {min_dcf:.9}")), "{stdout}");
        assert!(stdout.contains("Cllr "), "{stdout}");
    }
}
