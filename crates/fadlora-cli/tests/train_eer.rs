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

#[test]
fn eer_json_matches_every_reference_fixture() {
    let reference = reference();
    let cases = reference.as_object().unwrap();
    assert!(cases.len() >= 6);
    for (name, expected) in cases {
        let scores = fixtures().join(format!("{name}.scores"));
        let protocol = fixtures().join(format!("{name}.protocol"));
        let (ok, stdout, stderr) = fadlora(&[
            "eer",
            "--scores",
            scores.to_str().unwrap(),
            "--protocol",
            protocol.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{name}: {stderr}");
        let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
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
