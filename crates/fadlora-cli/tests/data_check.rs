//! `fadlora data check` end to end on a small ASVspoof-2019-LA-layout corpus built from the
//! committed audio fixtures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn audio_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fadlora-audio/tests/fixtures")
        .join(name)
}

/// (split folder, protocol file, lines as (utterance, attack, key, fixture)).
type SplitLayout = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, &'static str, &'static str)],
);

const CORPUS: [SplitLayout; 3] = [
    (
        "ASVspoof2019_LA_train",
        "ASVspoof2019.LA.cm.train.trn.txt",
        &[
            ("LA_T_0000001", "-", "bonafide", "speechlike_16k_s16.flac"),
            ("LA_T_0000002", "A01", "spoof", "speechlike_16k_s16.flac"),
            ("LA_T_0000003", "A02", "spoof", "speechlike_16k_s16.flac"),
        ],
    ),
    (
        "ASVspoof2019_LA_dev",
        "ASVspoof2019.LA.cm.dev.trl.txt",
        &[
            ("LA_D_0000001", "-", "bonafide", "speechlike_16k_s16.flac"),
            ("LA_D_0000002", "A01", "spoof", "speechlike_16k_s16.flac"),
        ],
    ),
    (
        "ASVspoof2019_LA_eval",
        "ASVspoof2019.LA.cm.eval.trl.txt",
        &[
            ("LA_E_0000001", "-", "bonafide", "speechlike_16k_s16.flac"),
            (
                "LA_E_0000002",
                "A07",
                "spoof",
                "tone_1k_44k1_stereo_s16.flac",
            ),
            ("LA_E_0000003", "A19", "spoof", "stereo_44k1_s24.flac"),
        ],
    ),
];

fn build_corpus(root: &Path) {
    let protocols = root.join("ASVspoof2019_LA_cm_protocols");
    fs::create_dir_all(&protocols).unwrap();
    for (folder, protocol, lines) in CORPUS {
        let flac_dir = root.join(folder).join("flac");
        fs::create_dir_all(&flac_dir).unwrap();
        let mut text = String::new();
        for (utterance, attack, key, fixture) in lines {
            text.push_str(&format!("LA_0001 {utterance} - {attack} {key}\n"));
            fs::copy(
                audio_fixture(fixture),
                flac_dir.join(format!("{utterance}.flac")),
            )
            .unwrap();
        }
        fs::write(protocols.join(protocol), text).unwrap();
    }
}

fn data_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .args(["data", "check"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn a_clean_corpus_is_summarised_per_split_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    build_corpus(dir.path());
    let output = data_check(&[dir.path().to_str().unwrap(), "--jobs", "2"]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert!(text.contains("ASVspoof 2019 LA"), "{text}");
    assert!(
        text.contains("[train] 3 files: 1 bonafide, 2 spoof; 0:00:01.5 of audio"),
        "{text}"
    );
    assert!(
        text.contains("[dev] 2 files: 1 bonafide, 1 spoof"),
        "{text}"
    );
    assert!(
        text.contains("[eval] 3 files: 1 bonafide, 2 spoof"),
        "{text}"
    );
    // Per-system rows: name, bona fide count, spoof count.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["A19", "0", "1"]), "{text}");
    assert!(rows.contains(&vec!["-", "1", "0"]), "{text}");
    assert!(
        text.contains("sample rates: 16000 Hz: 1, 44100 Hz: 2"),
        "{text}"
    );
    assert!(text.contains("channels:     1 ch: 1, 2 ch: 2"), "{text}");
    assert!(text.contains("OK: every file decodes."), "{text}");
}

#[test]
fn a_truncated_and_a_missing_file_are_named_and_the_exit_code_is_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    build_corpus(dir.path());
    let truncated = dir
        .path()
        .join("ASVspoof2019_LA_dev/flac/LA_D_0000002.flac");
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir
        .path()
        .join("ASVspoof2019_LA_eval/flac/LA_E_0000003.flac");
    fs::remove_file(&missing).unwrap();

    let output = data_check(&[&format!("asvspoof2019:{}", dir.path().display())]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("2 file(s) missing or unreadable"), "{text}");
    let bad_line = text
        .lines()
        .find(|l| l.contains(&truncated.display().to_string()))
        .unwrap_or_else(|| panic!("truncated file not named:\n{text}"));
    assert!(bad_line.trim_start().starts_with("BAD"), "{bad_line}");
    assert!(bad_line.contains("truncated"), "{bad_line}");
    let missing_line = text
        .lines()
        .find(|l| l.contains(&missing.display().to_string()))
        .unwrap_or_else(|| panic!("missing file not named:\n{text}"));
    assert!(
        missing_line.trim_start().starts_with("MISSING"),
        "{missing_line}"
    );
    assert!(text.contains("problems:     1 missing, 0 bad"), "{text}");
    assert!(text.contains("problems:     0 missing, 1 bad"), "{text}");
}

#[test]
fn json_report_lists_counts_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    build_corpus(dir.path());
    fs::remove_file(
        dir.path()
            .join("ASVspoof2019_LA_train/flac/LA_T_0000003.flac"),
    )
    .unwrap();
    let output = data_check(&[dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["splits"]["train"]["files"], 3);
    assert_eq!(report["splits"]["train"]["missing"], 1);
    assert_eq!(report["splits"]["eval"]["systems"]["A07"]["spoof"], 1);
    assert_eq!(report["splits"]["eval"]["sample_rates"]["44100"], 2);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0]["id"], "LA_T_0000003");
    assert_eq!(problems[0]["kind"], "missing");
}

#[test]
fn a_malformed_protocol_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    build_corpus(dir.path());
    let protocol = dir
        .path()
        .join("ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.dev.trl.txt");
    fs::write(
        &protocol,
        "LA_0001 LA_D_0000001 - - bonafide\nLA_0001 LA_D_0000002 - A01\n",
    )
    .unwrap();
    let output = data_check(&[dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", protocol.display())),
        "{stderr}"
    );
}

#[test]
fn an_unrecognised_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = data_check(&[dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot tell the dataset kind"), "{stderr}");
}

/// A CSV list of the lossy formats people download: each decodes and is counted.
#[test]
fn a_csv_list_of_lossy_files_is_checked_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,path,label,split\n");
    for (file, label) in [
        ("lossy_44k1_stereo.mp3", "bonafide"),
        ("lossy_16k_mono.ogg", "spoof"),
        ("lossy_16k_mono.opus", "spoof"),
        ("lossy_16k_mono.m4a", "bonafide"),
    ] {
        fs::copy(audio_fixture(file), dir.path().join(file)).unwrap();
        csv.push_str(&format!("{file},{file},{label},eval\n"));
    }
    let list = dir.path().join("list.csv");
    fs::write(&list, csv).unwrap();
    let output = data_check(&[&format!("csv:{}", list.display()), "--json"]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["splits"]["eval"]["files"], 4);
    assert_eq!(
        report["splits"]["eval"]["sample_rates"]["48000"], 1,
        "{report}"
    );
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
}

/// (protocol file, audio folder, lines as (file name, `CODEC CODEC_Q CODEC_SEED`,
/// `ATTACK_TAG ATTACK_LABEL`, key)).
type Asvspoof5Split = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, &'static str, &'static str)],
);

/// An ASVspoof 5 layout: protocols in `ASVspoof5_protocols/`, the evaluation audio in a
/// `flac_E_*` folder other than `flac_E_eval`, and a codec condition on the eval trials.
#[test]
fn an_asvspoof5_corpus_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let protocols = root.join("ASVspoof5_protocols");
    fs::create_dir_all(&protocols).unwrap();
    let corpus: [Asvspoof5Split; 3] = [
        (
            "ASVspoof5.train.tsv",
            "flac_T",
            &[
                ("T_0000000001", "- - -", "- bonafide", "bonafide"),
                ("T_0000000002", "- - -", "AC1 A01", "spoof"),
            ],
        ),
        (
            "ASVspoof5.dev.track_1.tsv",
            "flac_D",
            &[
                ("D_0000000001", "- - -", "- bonafide", "bonafide"),
                ("D_0000000002", "- - -", "AC2 A13", "spoof"),
            ],
        ),
        (
            "ASVspoof5.eval.track_1.tsv",
            "flac_E_aa",
            &[
                (
                    "E_0000000001",
                    "C05 2 E_0000000009",
                    "- bonafide",
                    "bonafide",
                ),
                ("E_0000000002", "C05 2 E_0000000008", "AC3 A18", "spoof"),
                ("E_0000000003", "- - -", "AC3 A32", "spoof"),
            ],
        ),
    ];
    for (protocol, folder, lines) in corpus {
        fs::create_dir_all(root.join(folder)).unwrap();
        let mut text = String::new();
        for (id, codec, attack, key) in lines {
            text.push_str(&format!("X_0001 {id} F {codec} {attack} {key} -\n"));
            fs::copy(
                audio_fixture("speechlike_16k_s16.flac"),
                root.join(folder).join(format!("{id}.flac")),
            )
            .unwrap();
        }
        fs::write(protocols.join(protocol), text).unwrap();
    }

    let output = data_check(&[&format!("asvspoof5:{}", root.display())]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("ASVspoof 5"), "{text}");
    assert!(
        text.contains("[eval] 3 files: 1 bonafide, 2 spoof"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["A32", "0", "1"]), "{text}");
    assert!(text.contains("codecs:       C05: 2, none: 1"), "{text}");
    assert!(!text.contains("subsets:"), "{text}");
    assert!(text.contains("OK: every file decodes."), "{text}");

    // The bare folder is recognised, and a missing eval file is reported.
    fs::remove_file(root.join("flac_E_aa/E_0000000003.flac")).unwrap();
    let output = data_check(&[root.to_str().unwrap(), "--json"]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["problems"][0]["id"], "E_0000000003", "{report}");
    assert_eq!(report["splits"]["eval"]["codecs"]["C05"], 2, "{report}");
}
