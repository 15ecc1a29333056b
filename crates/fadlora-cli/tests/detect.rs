//! `fadlora detect` as a user runs it: a folder of mixed files, a file list, a glob, and the
//! text, JSON and CSV outputs. Every input gets a line; the exit status says some failed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fadlora, micro_run_toml, train_command};

fn audio_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fadlora-audio/tests/fixtures")
        .join(name)
}

/// A one-epoch micro detector (its scores mean nothing; the command around them is tested).
fn micro_detector(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let toml = dir.join("run.toml");
    fs::write(&toml, micro_run_toml(&run, 1, None)).unwrap();
    let output = train_command(&toml).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    run
}

/// good.wav, good.mp3 (in a sub-folder), a truncated FLAC, random bytes named `.wav`, and a
/// text file that the default filter skips.
fn mixed_folder(root: &Path) -> PathBuf {
    let folder = root.join("inbox");
    fs::create_dir_all(folder.join("phone")).unwrap();
    fs::copy(audio_fixture("tone_16k_s16.wav"), folder.join("good.wav")).unwrap();
    fs::copy(
        audio_fixture("lossy_44k1_stereo.mp3"),
        folder.join("phone/good.mp3"),
    )
    .unwrap();
    let flac = fs::read(audio_fixture("speechlike_16k_s16.flac")).unwrap();
    fs::write(folder.join("truncated.flac"), &flac[..flac.len() / 2]).unwrap();
    let noise: Vec<u8> = (0..4_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(folder.join("random.wav"), noise).unwrap();
    fs::write(folder.join("notes.txt"), "not audio").unwrap();
    folder
}

fn detect(run: &Path, args: &[&str]) -> Output {
    Command::new(fadlora())
        .arg("detect")
        .arg("--checkpoint")
        .arg(run)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn a_mixed_folder_scores_the_good_files_and_names_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_detector(dir.path());
    let folder = mixed_folder(dir.path());
    let missing = dir.path().join("missing.wav");
    let folder_arg = folder.to_str().unwrap();
    let missing_arg = missing.to_str().unwrap();

    let output = detect(&run, &[folder_arg, missing_arg]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let line = |name: &str| {
        *lines
            .iter()
            .find(|l| l.split('\t').next().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
    };
    for good in ["good.wav", "phone/good.mp3"] {
        let fields: Vec<&str> = line(good).split('\t').collect();
        assert!(fields[1].parse::<f64>().is_ok(), "{stdout}");
        assert!(["bonafide", "spoof"].contains(&fields[2]), "{stdout}");
    }
    assert!(
        line("truncated.flac").contains("ERROR\ttruncated"),
        "{stdout}"
    );
    assert!(line("random.wav").contains("ERROR\t"), "{stdout}");
    assert!(
        line("missing.wav").contains("ERROR\tfile not found"),
        "{stdout}"
    );
    assert!(!stdout.contains("notes.txt"), "{stdout}");
    assert!(stderr.contains("2 scored, 3 failed"), "{stderr}");

    // The same inputs as JSON: every file with its windows, every failure with its reason.
    let output = detect(&run, &[folder_arg, missing_arg, "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["scored"], 2);
    assert_eq!(json["failed"], 3);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 5);
    for file in files {
        let path = file["path"].as_str().unwrap();
        if path.contains("good") {
            let windows = file["windows"].as_array().unwrap();
            assert!(!windows.is_empty(), "{file}");
            assert!(file["score"].as_f64().is_some(), "{file}");
        } else {
            assert!(file["error"].as_str().is_some(), "{file}");
        }
    }

    // CSV: one file row and its window rows per scored file, one error row per failure.
    let output = detect(&run, &[folder_arg, "--csv"]);
    let csv = text(&output.stdout);
    assert!(
        csv.starts_with("path,kind,start_s,end_s,score,decision,error\n"),
        "{csv}"
    );
    let kinds: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "file").count(), 2, "{csv}");
    assert_eq!(kinds.iter().filter(|k| **k == "error").count(), 2, "{csv}");
    assert!(kinds.contains(&"window"), "{csv}");
}

#[test]
fn a_list_and_a_glob_choose_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_detector(dir.path());
    let folder = mixed_folder(dir.path());

    let output = detect(&run, &[folder.to_str().unwrap(), "--glob", "**/*.mp3"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with(folder.join("phone/good.mp3").to_str().unwrap()));

    let list = dir.path().join("list.txt");
    fs::write(
        &list,
        format!(
            "# files to check\n{}\n\n{}\n",
            folder.join("good.wav").display(),
            folder.join("phone/good.mp3").display()
        ),
    )
    .unwrap();
    let output = detect(&run, &["--list", list.to_str().unwrap(), "--timeline"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let files: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(files.len(), 2, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("  ")),
        "timeline rows: {stdout}"
    );

    let output = detect(&run, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("no inputs"));
}
