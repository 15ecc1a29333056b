//! The ASVspoof 5 Track 1 protocols: layout, conditions, partitions and malformed lines.

use std::fs;
use std::path::Path;

use fadlora_data::{
    read_asvspoof5, read_asvspoof5_protocol, DataError, DatasetSpec, Label, Split,
    ASVSPOOF5_NO_CODEC,
};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn assert_malformed_at(error: DataError, file: &Path, line: u64) -> String {
    let message = error.to_string();
    match &error {
        DataError::Malformed { path, line: l, .. } => {
            assert_eq!(path, file, "{message}");
            assert_eq!(*l, line, "{message}");
        }
        other => panic!("expected Malformed at line {line}, got {other:?}"),
    }
    assert!(
        message.starts_with(&format!("{}:{line}:", file.display())),
        "{message}"
    );
    message
}

const TRAIN: &str = "T_4850 T_0000000000 F - - - AC3 A05 spoof -\n\
                     T_4850 T_0000000001 F - - - - bonafide bonafide -\n";
// Tab-separated here, to check that any whitespace separates fields.
const DEV: &str = "D_0062\tD_0000000001\tM\t-\t-\t-\tAC1\tA11\tspoof\t-\r\n\
                   D_0755\tD_0000000002\tM\t-\t-\t-\t-\tbonafide\tbonafide\t-\r\n\r\n";
const EVAL: &str = "E_0001 E_0000000001 F C05 3 E_0000009999 AC2 A18 spoof -\n\
                    E_0002 E_0000000002 M - - - - - bonafide -\n\
                    E_0002 E_0000000003 M C05 1 E_0000000002 - bonafide bonafide -\n";

fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let protocols = dir.path().join("ASVspoof5_protocols");
    write(&protocols.join("ASVspoof5.train.tsv"), TRAIN);
    write(&protocols.join("ASVspoof5.dev.track_1.tsv"), DEV);
    write(&protocols.join("ASVspoof5.eval.track_1.tsv"), EVAL);
    dir
}

#[test]
fn reads_all_three_partitions_with_attacks_and_codecs() {
    let root = corpus();
    let utterances = read_asvspoof5(root.path()).unwrap();
    assert_eq!(utterances.len(), 7);

    let spoof = &utterances[0];
    assert_eq!(spoof.id, "T_0000000000");
    assert_eq!(spoof.label, Label::Spoof);
    assert_eq!(spoof.speaker.as_deref(), Some("T_4850"));
    assert_eq!(spoof.system.as_deref(), Some("A05"));
    assert_eq!(spoof.split, Split::Train);
    assert_eq!(spoof.path, root.path().join("flac_T/T_0000000000.flac"));
    let conditions = spoof.conditions.as_ref().unwrap();
    assert_eq!(conditions.codec, ASVSPOOF5_NO_CODEC);
    assert_eq!(conditions.subset, "train");
    assert_eq!(conditions.transmission, None);

    let bona = &utterances[1];
    assert_eq!(bona.label, Label::Bonafide);
    assert_eq!(
        bona.system, None,
        "`bonafide` in the attack column is no attack"
    );

    assert_eq!(utterances[2].split, Split::Dev);
    assert_eq!(utterances[2].system.as_deref(), Some("A11"));
    assert_eq!(
        utterances[3].path,
        root.path().join("flac_D/D_0000000002.flac")
    );

    let coded = &utterances[4];
    assert_eq!(coded.split, Split::Eval);
    assert_eq!(coded.system.as_deref(), Some("A18"));
    assert_eq!(coded.conditions.as_ref().unwrap().codec, "C05");
    assert_eq!(coded.conditions.as_ref().unwrap().subset, "eval");
    assert_eq!(
        coded.path,
        root.path().join("flac_E_eval/E_0000000001.flac")
    );
    assert_eq!(utterances[5].system, None, "`-` in the attack column");
    assert_eq!(utterances[6].label, Label::Bonafide);
    assert_eq!(utterances[6].conditions.as_ref().unwrap().codec, "C05");
}

#[test]
fn protocols_in_the_root_and_eval_audio_in_other_flac_e_folders() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ASVspoof5.eval.track_1.tsv"), EVAL);
    fs::create_dir_all(dir.path().join("flac_E_aa")).unwrap();
    write(&dir.path().join("flac_E_ab/E_0000000002.flac"), "");
    let utterances = read_asvspoof5(dir.path()).unwrap();
    assert_eq!(utterances.len(), 3);
    // The file is found in the folder that holds it; one found nowhere is placed in the first.
    assert_eq!(
        utterances[1].path,
        dir.path().join("flac_E_ab/E_0000000002.flac")
    );
    assert_eq!(
        utterances[0].path,
        dir.path().join("flac_E_aa/E_0000000001.flac")
    );
}

#[test]
fn a_header_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = dir.path().join("list.tsv");
    write(
        &protocol,
        &format!(
            "SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG \
             ATTACK_LABEL KEY TMP\n{TRAIN}"
        ),
    );
    let utterances = read_asvspoof5_protocol(&protocol, dir.path()).unwrap();
    assert_eq!(utterances.len(), 2);
    assert_eq!(utterances[0].split, Split::Train);
}

#[test]
fn a_single_protocol_file_takes_each_partition_from_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = dir.path().join("mixed.tsv");
    write(&protocol, &format!("{TRAIN}{EVAL}"));
    let utterances = read_asvspoof5_protocol(&protocol, dir.path()).unwrap();
    let splits: Vec<Split> = utterances.iter().map(|u| u.split.clone()).collect();
    assert_eq!(
        splits,
        [
            Split::Train,
            Split::Train,
            Split::Eval,
            Split::Eval,
            Split::Eval
        ]
    );
}

#[test]
fn malformed_lines_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = dir.path().join("ASVspoof5.train.tsv");
    let cases: [(&str, u64, &str); 5] = [
        // Nine fields: TMP missing.
        (
            "T_1 T_0000000001 F - - - - bonafide bonafide -\nT_1 T_0000000002 F - - - AC3 A05 spoof\n",
            2,
            "expected 10 fields",
        ),
        (
            "\nT_1 T_0000000001 F - - - - bonafide genuine -\n",
            2,
            "label `genuine`",
        ),
        (
            "T_1 X_0000000001 F - - - - bonafide bonafide -\n",
            1,
            "T_, D_ or E_",
        ),
        (
            "T_1 T_0000000001 F - - - - bonafide bonafide -\nT_1 E_0000000002 F - - - - bonafide bonafide -\n",
            2,
            "eval file, listed in the train protocol",
        ),
        (
            "T_1 T_0000000001 F - - - - bonafide bonafide -\n\nT_1 T_0000000001 F - - - AC3 A05 spoof -\n",
            3,
            "duplicate",
        ),
    ];
    for (text, line, expected) in cases {
        write(&protocol, text);
        let error = read_asvspoof5(dir.path()).unwrap_err();
        let message = error.to_string();
        if let DataError::DuplicateId { line: l, path, .. } = &error {
            assert_eq!((*l, path.as_path()), (line, protocol.as_path()));
            assert!(message.contains("ASVspoof5.train.tsv:1"), "{message}");
        } else {
            assert_malformed_at(error, &protocol, line);
        }
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn a_dev_file_in_the_eval_list_is_malformed() {
    let root = corpus();
    write(
        &root
            .path()
            .join("ASVspoof5_protocols/ASVspoof5.dev.track_1.tsv"),
        "D_1 D_0000000001 F - - - - bonafide bonafide -\n",
    );
    // Also a duplicate id, but the partition check names the actual mistake first.
    write(
        &root
            .path()
            .join("ASVspoof5_protocols/ASVspoof5.eval.track_1.tsv"),
        "D_1 D_0000000001 F - - - - bonafide bonafide -\n",
    );
    let error = read_asvspoof5(root.path()).unwrap_err();
    assert!(error.to_string().contains("dev file"), "{error}");
}

#[test]
fn no_protocol_is_a_missing_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("ASVspoof5_protocols")).unwrap();
    let error = read_asvspoof5(dir.path()).unwrap_err();
    assert!(matches!(error, DataError::Missing { .. }), "{error:?}");
    assert!(error.to_string().contains("eval.track_1"), "{error}");
}

#[test]
fn specs_name_and_detect_the_corpus() {
    let root = corpus();
    let root_str = root.path().to_str().unwrap();
    let explicit: DatasetSpec = format!("asvspoof5:{root_str}").parse().unwrap();
    assert_eq!(explicit, DatasetSpec::Asvspoof5(root.path().into()));
    assert_eq!(explicit.to_string(), format!("asvspoof5:{root_str}"));
    assert_eq!(explicit.kind_name(), "ASVspoof 5");
    assert_eq!(explicit.load().unwrap().len(), 7);
    assert_eq!(DatasetSpec::parse(root_str).unwrap(), explicit);

    // Protocols unpacked straight into the root are detected too.
    let flat = tempfile::tempdir().unwrap();
    write(&flat.path().join("ASVspoof5.dev.track_1.tsv"), DEV);
    assert_eq!(
        DatasetSpec::parse(flat.path().to_str().unwrap()).unwrap(),
        DatasetSpec::Asvspoof5(flat.path().into())
    );

    let empty = tempfile::tempdir().unwrap();
    let error = DatasetSpec::parse(empty.path().to_str().unwrap()).unwrap_err();
    assert!(error.to_string().contains("asvspoof5:"), "{error}");
}
