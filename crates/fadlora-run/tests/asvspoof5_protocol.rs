//! An ASVspoof 5 Track 1 protocol file as `fadlora eer` and the breakdowns read it.

use std::collections::HashMap;

use fadlora_run::scores::{evaluate_scores, read_protocol, ProtocolFilter};
use fadlora_run::stats::factors_of;

const PROTOCOL: &str = "E_0001 E_0000000001 F C05 3 E_0000009999 AC2 A18 spoof -\n\
                        E_0002 E_0000000002 M - - - - bonafide bonafide -\n\
                        E_0002 E_0000000003 M C05 1 E_0000000002 - bonafide bonafide -\n\
                        E_0003 E_0000000004 F - - - AC1 A20 spoof -\n";

#[test]
fn a_track1_file_gives_attacks_codecs_and_all_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ASVspoof5.eval.track_1.tsv");
    std::fs::write(&file, PROTOCOL).unwrap();
    let protocol = read_protocol(file.to_str().unwrap()).unwrap();
    assert_eq!(protocol.len(), 4);

    let factors: HashMap<&str, Vec<(&'static str, String)>> = protocol
        .iter()
        .map(|u| (u.id.as_str(), factors_of(u)))
        .collect();
    assert_eq!(
        factors["E_0000000001"],
        vec![("attack", "A18".to_owned()), ("codec", "C05".to_owned())]
    );
    assert_eq!(factors["E_0000000002"], vec![("codec", "none".to_owned())]);

    let scores: Vec<(String, f64)> = [
        ("E_0000000001", -1.0),
        ("E_0000000002", 2.0),
        ("E_0000000003", 0.5),
        ("E_0000000004", -3.0),
    ]
    .into_iter()
    .map(|(id, s)| (id.to_owned(), s))
    .collect();
    let filter = ProtocolFilter {
        split: Some("eval".into()),
        subset: Some("eval".into()),
    };
    let report = evaluate_scores(&scores, &protocol, &filter, None).unwrap();
    assert_eq!(report.eer_percent, 0.0);
    assert_eq!(report.min_dcf, 0.0);
    // Separable and on the right side of the Bayes threshold ln(10/19): no error at all.
    assert_eq!(report.act_dcf, 0.0);
    assert!(report.cllr > 0.0 && report.min_cllr == 0.0, "{report:?}");
}

#[test]
fn a_malformed_tsv_line_is_named_by_the_asvspoof5_reader() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ASVspoof5.dev.track_1.tsv");
    std::fs::write(
        &file,
        "D_1 D_0000000001 F - - - - bonafide bonafide -\nD_1 D_0000000002 F - - - AC1 A11 spoof\n",
    )
    .unwrap();
    let error = read_protocol(file.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("{}:2:", file.display())), "{error}");
    assert!(error.contains("expected 10 fields"), "{error}");
}
