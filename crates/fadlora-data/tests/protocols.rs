//! Every list format, well-formed and malformed.

use std::fs;
use std::path::{Path, PathBuf};

use fadlora_data::{
    read_asvspoof2019_la, read_asvspoof2019_protocol, read_asvspoof2021, read_csv_list,
    read_in_the_wild, Asvspoof2021Track, DataError, DatasetSpec, Label, Split, Utterance,
};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn protocol_path(root: &Path, name: &str) -> PathBuf {
    root.join("ASVspoof2019_LA_cm_protocols").join(name)
}

/// Asserts a `Malformed` error for `file` at `line`, whose message shows both.
fn assert_malformed_at(error: DataError, file: &Path, line: u64) -> String {
    let message = error.to_string();
    match &error {
        DataError::Malformed { path, line: l, .. } => {
            assert_eq!(path, file, "{message}");
            assert_eq!(*l, line, "{message}");
        }
        other => panic!("expected Malformed at line {line}, got {other:?}"),
    }
    let location = format!("{}:{line}:", file.display());
    assert!(message.starts_with(&location), "{message}");
    message
}

fn asvspoof2019_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        &protocol_path(dir.path(), "ASVspoof2019.LA.cm.train.trn.txt"),
        "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n",
    );
    write(
        &protocol_path(dir.path(), "ASVspoof2019.LA.cm.dev.trl.txt"),
        "LA_0069 LA_D_1047731 - - bonafide\r\nLA_0069 LA_D_1105538 - A03 spoof\r\n\r\n",
    );
    write(
        &protocol_path(dir.path(), "ASVspoof2019.LA.cm.eval.trl.txt"),
        "LA_0039 LA_E_2834763 - A11 spoof\nLA_0014 LA_E_8688370 - - bonafide\nLA_0014 LA_E_1000001 - A19 spoof\n",
    );
    dir
}

#[test]
fn asvspoof2019_la_reads_all_splits_with_the_official_layout() {
    let root = asvspoof2019_root();
    let utterances = read_asvspoof2019_la(root.path()).unwrap();
    assert_eq!(utterances.len(), 7);
    assert_eq!(
        utterances[0],
        Utterance {
            id: "LA_T_1138215".into(),
            path: root
                .path()
                .join("ASVspoof2019_LA_train/flac/LA_T_1138215.flac"),
            label: Label::Bonafide,
            speaker: Some("LA_0079".into()),
            system: None,
            split: Split::Train,
            conditions: None,
        }
    );
    let dev_spoof = &utterances[3];
    assert_eq!(dev_spoof.split, Split::Dev);
    assert_eq!(dev_spoof.system.as_deref(), Some("A03"));
    assert_eq!(
        dev_spoof.path,
        root.path()
            .join("ASVspoof2019_LA_dev/flac/LA_D_1105538.flac")
    );
    let eval: Vec<_> = utterances
        .iter()
        .filter(|u| u.split == Split::Eval)
        .collect();
    assert_eq!(eval.len(), 3);
    assert_eq!(eval.iter().filter(|u| u.label == Label::Spoof).count(), 2);
}

#[test]
fn asvspoof2019_la_reads_the_splits_that_exist() {
    let root = asvspoof2019_root();
    fs::remove_file(protocol_path(
        root.path(),
        "ASVspoof2019.LA.cm.train.trn.txt",
    ))
    .unwrap();
    fs::remove_file(protocol_path(root.path(), "ASVspoof2019.LA.cm.dev.trl.txt")).unwrap();
    let utterances = read_asvspoof2019_la(root.path()).unwrap();
    assert!(utterances.iter().all(|u| u.split == Split::Eval));
    assert_eq!(utterances.len(), 3);
}

#[test]
fn asvspoof2019_la_without_protocols_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = read_asvspoof2019_la(dir.path()).unwrap_err();
    assert!(matches!(error, DataError::Missing { .. }), "{error:?}");
    assert!(error.to_string().contains("ASVspoof2019_LA_cm_protocols"));
}

#[test]
fn asvspoof2019_malformed_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = dir.path().join("p.txt");
    for (text, line, expected) in [
        (
            "LA_0079 LA_T_1 - - bonafide\n\nLA_0079 LA_T_2 - bonafide\n",
            3,
            "expected 5 fields",
        ),
        (
            "LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_2 - A01 spoof extra\n",
            2,
            "found 6",
        ),
        ("LA_0079 LA_T_1 - A01 spoofed\n", 1, "spoofed"),
    ] {
        write(&protocol, text);
        let error = read_asvspoof2019_protocol(&protocol, dir.path(), Split::Train).unwrap_err();
        let message = assert_malformed_at(error, &protocol, line);
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn asvspoof2019_duplicate_ids_are_rejected_even_across_splits() {
    let root = asvspoof2019_root();
    let eval = protocol_path(root.path(), "ASVspoof2019.LA.cm.eval.trl.txt");
    write(
        &eval,
        "LA_0039 LA_E_2834763 - A11 spoof\nLA_0079 LA_T_1138215 - - bonafide\n",
    );
    let error = read_asvspoof2019_la(root.path()).unwrap_err();
    let message = error.to_string();
    match error {
        DataError::DuplicateId {
            path,
            line,
            id,
            first_seen,
        } => {
            assert_eq!(path, eval);
            assert_eq!(line, 2);
            assert_eq!(id, "LA_T_1138215");
            assert!(
                first_seen.ends_with("ASVspoof2019.LA.cm.train.trn.txt:1"),
                "{first_seen}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(message.contains("eval.trl.txt:2"), "{message}");
}

#[test]
fn asvspoof2021_la_key_keeps_conditions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("keys/LA/CM/trial_metadata.txt"),
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n\
         LA_0013 LA_E_1234567 none - - bonafide notrim progress\n",
    );
    let utterances = read_asvspoof2021(dir.path(), Asvspoof2021Track::La).unwrap();
    assert_eq!(utterances.len(), 2);
    let first = &utterances[0];
    assert_eq!(first.id, "LA_E_9332881");
    assert_eq!(first.label, Label::Spoof);
    assert_eq!(first.system.as_deref(), Some("A07"));
    assert_eq!(first.split, Split::Eval);
    assert_eq!(
        first.path,
        dir.path()
            .join("ASVspoof2021_LA_eval/flac/LA_E_9332881.flac")
    );
    let conditions = first.conditions.as_ref().unwrap();
    assert_eq!(conditions.codec, "alaw");
    assert_eq!(conditions.transmission.as_deref(), Some("ita_tx"));
    assert_eq!(conditions.source_corpus, None);
    assert_eq!(conditions.trim, "notrim");
    assert_eq!(conditions.subset, "eval");
    let second = &utterances[1];
    assert_eq!(second.label, Label::Bonafide);
    assert_eq!(second.system, None);
    assert_eq!(second.conditions.as_ref().unwrap().subset, "progress");
    assert_eq!(second.conditions.as_ref().unwrap().transmission, None);
}

#[test]
fn asvspoof2021_df_key_with_trailing_columns_and_archive_folder() {
    let dir = tempfile::tempdir().unwrap();
    // The layout when DF-keys-full.tar.gz is unpacked with its own folder.
    write(
        &dir.path().join("DF-keys-full/keys/DF/CM/trial_metadata.txt"),
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n\
         VCC2020_TEF1 DF_E_2000013 mp3m4a vcc2020 - bonafide notrim eval - - - - -\n",
    );
    let utterances = read_asvspoof2021(dir.path(), Asvspoof2021Track::Df).unwrap();
    assert_eq!(utterances.len(), 2);
    let spoof = utterances[0].conditions.as_ref().unwrap();
    assert_eq!(spoof.source_corpus.as_deref(), Some("asvspoof"));
    assert_eq!(spoof.vocoder.as_deref(), Some("traditional_vocoder"));
    assert_eq!(spoof.transmission, None);
    assert_eq!(utterances[1].speaker.as_deref(), Some("VCC2020_TEF1"));
    assert_eq!(utterances[1].conditions.as_ref().unwrap().vocoder, None);
    assert_eq!(
        utterances[1].path,
        dir.path()
            .join("ASVspoof2021_DF_eval/flac/DF_E_2000013.flac")
    );
}

#[test]
fn asvspoof2021_malformed_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let la_key = dir.path().join("keys/LA/CM/trial_metadata.txt");
    write(
        &la_key,
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n\
         LA_0009 LA_E_9332882 alaw ita_tx A07 spoof notrim\n",
    );
    let error = read_asvspoof2021(dir.path(), Asvspoof2021Track::La).unwrap_err();
    let message = assert_malformed_at(error, &la_key, 2);
    assert!(message.contains("expected 8 fields"), "{message}");

    // A DF line given to the LA reader has too many columns.
    write(
        &la_key,
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n",
    );
    let error = read_asvspoof2021(dir.path(), Asvspoof2021Track::La).unwrap_err();
    assert_malformed_at(error, &la_key, 1);

    let df_key = dir.path().join("keys/DF/CM/trial_metadata.txt");
    write(
        &df_key,
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 fake notrim progress traditional_vocoder\n",
    );
    let error = read_asvspoof2021(dir.path(), Asvspoof2021Track::Df).unwrap_err();
    let message = assert_malformed_at(error, &df_key, 1);
    assert!(message.contains("fake"), "{message}");

    let missing =
        read_asvspoof2021(&dir.path().join("nowhere"), Asvspoof2021Track::Df).unwrap_err();
    assert!(matches!(missing, DataError::Missing { .. }), "{missing:?}");
}

#[test]
fn in_the_wild_meta_csv_with_spaces_and_quotes_in_speaker_names() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("meta.csv"),
        "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n2.wav,\"Doe, John\",spoof\n",
    );
    let utterances = read_in_the_wild(dir.path()).unwrap();
    assert_eq!(utterances.len(), 3);
    assert_eq!(utterances[0].id, "0");
    assert_eq!(utterances[0].path, dir.path().join("0.wav"));
    assert_eq!(utterances[0].speaker.as_deref(), Some("Alec Guinness"));
    assert_eq!(utterances[0].label, Label::Spoof);
    assert_eq!(utterances[1].label, Label::Bonafide);
    assert_eq!(utterances[2].speaker.as_deref(), Some("Doe, John"));
    assert!(utterances
        .iter()
        .all(|u| u.split == Split::Eval && u.system.is_none()));
}

#[test]
fn in_the_wild_malformed_rows_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.csv");
    write(
        &meta,
        "file,speaker,label\n0.wav,A,spoof\n1.wav,B,bonafied\n",
    );
    let message = assert_malformed_at(read_in_the_wild(dir.path()).unwrap_err(), &meta, 3);
    assert!(message.contains("bonafied"), "{message}");

    write(&meta, "file,speaker,label\n0.wav,A,spoof\n\n1.wav,B\n");
    let message = assert_malformed_at(read_in_the_wild(dir.path()).unwrap_err(), &meta, 4);
    assert!(message.contains("expected 3 fields"), "{message}");

    write(&meta, "name,speaker,label\n0.wav,A,spoof\n");
    let message = assert_malformed_at(read_in_the_wild(dir.path()).unwrap_err(), &meta, 1);
    assert!(message.contains("file, speaker, label"), "{message}");

    write(&meta, "file,speaker,label\n,A,spoof\n");
    let message = assert_malformed_at(read_in_the_wild(dir.path()).unwrap_err(), &meta, 2);
    assert!(message.contains("`file` field is empty"), "{message}");
}

#[test]
fn csv_list_resolves_paths_and_optional_columns() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("lists/all.csv");
    write(
        &list,
        "path,label,speaker,system,split,note\n\
         audio/spk1/a001.wav,bonafide,spk1,-,train,clean\n\
         audio/spk1/a002.flac,Spoof,spk1,tts3,Dev,\n\
         /abs/b.wav,bona-fide,,,,\n",
    );
    let utterances = read_csv_list(&list).unwrap();
    assert_eq!(
        utterances[0],
        Utterance {
            id: "audio/spk1/a001".into(),
            path: dir.path().join("lists/audio/spk1/a001.wav"),
            label: Label::Bonafide,
            speaker: Some("spk1".into()),
            system: None,
            split: Split::Train,
            conditions: None,
        }
    );
    assert_eq!(utterances[1].label, Label::Spoof);
    assert_eq!(utterances[1].system.as_deref(), Some("tts3"));
    assert_eq!(utterances[1].split, Split::Dev);
    assert_eq!(utterances[2].path, PathBuf::from("/abs/b.wav"));
    assert_eq!(utterances[2].speaker, None);
    assert_eq!(utterances[2].split, Split::Unspecified);
}

#[test]
fn csv_list_takes_the_attack_from_an_attack_column() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("l.csv");
    write(
        &list,
        "path,label,attack
a.wav,spoof,A07
b.wav,bonafide,-
",
    );
    let utterances = read_csv_list(&list).unwrap();
    assert_eq!(utterances[0].system.as_deref(), Some("A07"));
    assert_eq!(utterances[1].system, None);
}

#[test]
fn csv_list_with_only_the_required_columns_and_an_id_column() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("l.csv");
    write(&list, "label,path\nspoof,x.wav\n");
    let utterances = read_csv_list(&list).unwrap();
    assert_eq!(utterances[0].id, "x");
    assert_eq!(utterances[0].split, Split::Unspecified);

    write(
        &list,
        "id,path,label\nutt1,a/x.wav,spoof\nutt1,b/x.wav,spoof\n",
    );
    let error = read_csv_list(&list).unwrap_err();
    assert!(
        matches!(&error, DataError::DuplicateId { line: 3, id, .. } if id == "utt1"),
        "{error:?}"
    );
}

#[test]
fn csv_list_malformed_rows_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("l.csv");
    write(&list, "path,speaker\na.wav,x\n");
    assert_malformed_at(read_csv_list(&list).unwrap_err(), &list, 1);

    write(&list, "path,label\na.wav,spoof\nb.wav,unknown\n");
    let message = assert_malformed_at(read_csv_list(&list).unwrap_err(), &list, 3);
    assert!(message.contains("unknown"), "{message}");

    write(&list, "path,label\na.wav,spoof\nb.wav,spoof,extra\n");
    assert_malformed_at(read_csv_list(&list).unwrap_err(), &list, 3);

    write(&list, "path,label\na.wav,spoof\n,spoof\n");
    let message = assert_malformed_at(read_csv_list(&list).unwrap_err(), &list, 3);
    assert!(message.contains("`path` field is empty"), "{message}");

    let missing = read_csv_list(&dir.path().join("none.csv")).unwrap_err();
    assert!(matches!(missing, DataError::Missing { .. }), "{missing:?}");
    assert!(missing.to_string().contains("none.csv"));
}

#[test]
fn invalid_utf8_is_a_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = dir.path().join("p.txt");
    fs::write(
        &protocol,
        b"LA_0079 LA_T_1 - - bonafide\nLA_0079 LA_T_\xff - - spoof\n",
    )
    .unwrap();
    let error = read_asvspoof2019_protocol(&protocol, dir.path(), Split::Train).unwrap_err();
    assert_malformed_at(error, &protocol, 2);
}

#[test]
fn dataset_specs_parse_prefixes_and_detect_bare_paths() {
    let root = asvspoof2019_root();
    let root_str = root.path().to_str().unwrap();

    let explicit: DatasetSpec = format!("asvspoof2019:{root_str}").parse().unwrap();
    assert_eq!(explicit, DatasetSpec::Asvspoof2019La(root.path().into()));
    assert_eq!(explicit.to_string(), format!("asvspoof2019:{root_str}"));
    assert_eq!(explicit.load().unwrap().len(), 7);

    let bare: DatasetSpec = root_str.parse().unwrap();
    assert_eq!(bare, explicit);

    for (text, expected) in [
        (
            "asvspoof2021-la:/d",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::La, "/d".into()),
        ),
        (
            "asvspoof2021-df:/d",
            DatasetSpec::Asvspoof2021(Asvspoof2021Track::Df, "/d".into()),
        ),
        (
            "itw:/data/release_in_the_wild",
            DatasetSpec::InTheWild("/data/release_in_the_wild".into()),
        ),
        ("csv:rel/list.csv", DatasetSpec::Csv("rel/list.csv".into())),
    ] {
        let parsed: DatasetSpec = text.parse().unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed.to_string(), text);
    }

    let itw = tempfile::tempdir().unwrap();
    write(&itw.path().join("meta.csv"), "file,speaker,label\n");
    assert_eq!(
        DatasetSpec::parse(itw.path().to_str().unwrap()).unwrap(),
        DatasetSpec::InTheWild(itw.path().into())
    );
    let list = itw.path().join("list.csv");
    write(&list, "path,label\n");
    assert_eq!(
        DatasetSpec::parse(list.to_str().unwrap()).unwrap(),
        DatasetSpec::Csv(list.clone())
    );

    let la2021 = tempfile::tempdir().unwrap();
    write(&la2021.path().join("keys/LA/CM/trial_metadata.txt"), "");
    assert_eq!(
        DatasetSpec::parse(la2021.path().to_str().unwrap()).unwrap(),
        DatasetSpec::Asvspoof2021(Asvspoof2021Track::La, la2021.path().into())
    );
    write(&la2021.path().join("keys/DF/CM/trial_metadata.txt"), "");
    let ambiguous = DatasetSpec::parse(la2021.path().to_str().unwrap()).unwrap_err();
    assert!(
        ambiguous.to_string().contains("asvspoof2021-la:"),
        "{ambiguous}"
    );
}

#[test]
fn dataset_spec_errors_explain_the_accepted_forms() {
    let empty = tempfile::tempdir().unwrap();
    let error = DatasetSpec::parse(empty.path().to_str().unwrap()).unwrap_err();
    assert!(matches!(error, DataError::InvalidSpec { .. }));
    assert!(error.to_string().contains("asvspoof2019:"), "{error}");

    let error = DatasetSpec::parse("/no/such/corpus").unwrap_err();
    assert!(error.to_string().contains("/no/such/corpus"), "{error}");

    let error = DatasetSpec::parse("csv:").unwrap_err();
    assert!(error.to_string().contains("no path"), "{error}");
}
