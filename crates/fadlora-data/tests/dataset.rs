//! AudioDataset: cropping, tiling, normalisation and decoding failures.

use std::path::{Path, PathBuf};

use fadlora_data::{
    read_csv_list, AudioDataset, CropMode, DataError, Label, Normalization, Split, Utterance,
};

/// Writes a 16 kHz mono 16-bit WAV whose samples are `values[i] / 32768` when decoded.
fn write_wav(path: &Path, values: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &v in values {
        writer.write_sample(v).unwrap();
    }
    writer.finalize().unwrap();
}

fn ramp(len: usize, step: i16) -> Vec<i16> {
    (0..len).map(|i| (i as i16).wrapping_mul(step)).collect()
}

fn decoded(values: &[i16]) -> Vec<f32> {
    values.iter().map(|&v| f32::from(v) / 32768.0).collect()
}

fn utterance(id: &str, path: PathBuf, label: Label) -> Utterance {
    Utterance {
        id: id.into(),
        path,
        label,
        speaker: None,
        system: None,
        split: Split::Train,
        conditions: None,
    }
}

struct Corpus {
    _dir: tempfile::TempDir,
    utterances: Vec<Utterance>,
    long: Vec<i16>,
    short: Vec<i16>,
}

/// A long bona fide file, a short spoof file and a spoof whose file is missing.
fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let long = ramp(1_000, 7);
    let short = ramp(3, 1000);
    write_wav(&dir.path().join("long.wav"), &long);
    write_wav(&dir.path().join("short.wav"), &short);
    let utterances = vec![
        utterance("long", dir.path().join("long.wav"), Label::Bonafide),
        utterance("short", dir.path().join("short.wav"), Label::Spoof),
        utterance("gone", dir.path().join("gone.wav"), Label::Spoof),
    ];
    Corpus {
        _dir: dir,
        utterances,
        long,
        short,
    }
}

#[test]
fn first_crop_takes_the_start_and_tiles_short_files() {
    let corpus = corpus();
    let dataset = AudioDataset::new(corpus.utterances.clone(), 8, CropMode::First);
    assert_eq!(dataset.len(), 3);
    let long = dataset.item(0).unwrap();
    assert_eq!(long.id, "long");
    assert_eq!(long.label, Label::Bonafide);
    assert_eq!(long.waveform.unwrap(), decoded(&corpus.long[..8]));

    let short = dataset.item(1).unwrap().waveform.unwrap();
    let s = decoded(&corpus.short);
    assert_eq!(short, [&s[..], &s[..], &s[..2]].concat());

    let gone = dataset.item(2).unwrap();
    let error = gone.waveform.unwrap_err();
    assert!(error.is_missing());
    assert!(error.to_string().contains("gone.wav"));
    assert!(dataset.item(3).is_none());
}

#[test]
fn random_crop_is_reproducible_per_seed_epoch_and_index() {
    let corpus = corpus();
    let dataset = AudioDataset::new(
        corpus.utterances.clone(),
        100,
        CropMode::Random { seed: 42 },
    );
    let first = dataset.waveform(0).unwrap();
    assert_eq!(first, dataset.waveform(0).unwrap());
    // A window of the file, not the start (with this seed).
    let all = decoded(&corpus.long);
    let start = all.iter().position(|&x| x == first[0]).unwrap();
    assert_eq!(first, all[start..start + 100]);

    let other_seed = AudioDataset::new(
        corpus.utterances.clone(),
        100,
        CropMode::Random { seed: 43 },
    );
    assert_ne!(first, other_seed.waveform(0).unwrap());

    let mut starts = std::collections::BTreeSet::new();
    for epoch in 0..20 {
        dataset.set_epoch(epoch);
        starts.insert(dataset.waveform(0).unwrap()[0].to_bits());
    }
    assert!(
        starts.len() > 10,
        "crops should change between epochs: {starts:?}"
    );
    dataset.set_epoch(0);
    assert_eq!(first, dataset.waveform(0).unwrap());

    // Short files are tiled the same way in both modes.
    let tiled = dataset.waveform(1).unwrap();
    assert_eq!(tiled.len(), 100);
    assert_eq!(tiled[3..6], tiled[..3]);
}

#[test]
fn normalisation_is_applied_after_cropping() {
    let corpus = corpus();
    let dataset = AudioDataset::new(corpus.utterances.clone(), 500, CropMode::First)
        .with_normalization(Normalization::ZeroMeanUnitVariance);
    let x = dataset.waveform(0).unwrap();
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    assert!(mean.abs() < 1e-5, "{mean}");
    assert!((var - 1.0).abs() < 1e-3, "{var}");

    let peak = AudioDataset::new(corpus.utterances, 500, CropMode::First)
        .with_normalization(Normalization::Peak(0.5));
    let y = peak.waveform(0).unwrap();
    assert!((y.iter().fold(0.0f32, |m, v| m.max(v.abs())) - 0.5).abs() < 1e-6);
}

#[test]
fn csv_list_items_come_in_protocol_order() {
    let corpus = corpus();
    let dir = corpus.utterances[0].path.parent().unwrap();
    let list = dir.join("list.csv");
    std::fs::write(
        &list,
        "path,label,id\nlong.wav,bonafide,a\nshort.wav,spoof,b\nlong.wav,spoof,c\n",
    )
    .unwrap();
    let dataset = AudioDataset::new(read_csv_list(&list).unwrap(), 64, CropMode::First);
    dataset.check_files_exist().unwrap();
    let items: Vec<_> = (0..dataset.len())
        .map(|i| dataset.item(i).unwrap())
        .collect();
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "c"]);
    assert!(items
        .iter()
        .all(|i| i.waveform.as_ref().unwrap().len() == 64));
    assert_eq!(items[2].label, Label::Spoof);
}

#[test]
fn missing_files_are_found_before_training() {
    let corpus = corpus();
    let dataset = AudioDataset::new(corpus.utterances, 8, CropMode::First);
    let error = dataset.check_files_exist().unwrap_err();
    assert!(
        matches!(error, DataError::MissingAudio { count: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("gone.wav"));
}

#[test]
fn rawboost_is_reproducible_per_seed_epoch_and_index_and_keeps_the_crops() {
    let corpus = corpus();
    let rawboost = fadlora_data::RawBoost::new(fadlora_data::RawBoostMode::LnlIsd);
    let crop = CropMode::Random { seed: 42 };
    let plain = AudioDataset::new(corpus.utterances.clone(), 100, crop);
    let augmented = AudioDataset::new(corpus.utterances.clone(), 100, crop)
        .with_augmentation(rawboost.clone(), 7);
    let a = augmented.waveform(0).unwrap();
    assert_eq!(a, augmented.waveform(0).unwrap());
    assert_eq!(a.len(), 100);
    assert_ne!(a, plain.waveform(0).unwrap());

    // The augmentation happens on the decoded file before the crop, whose window is unchanged:
    // the same window of the augmented file.
    let whole = fadlora_audio::load_mono_16k(&corpus.utterances[0].path).unwrap();
    let all = decoded(&corpus.long);
    assert_eq!(whole, all);
    let start = all
        .iter()
        .position(|&x| x == plain.waveform(0).unwrap()[0])
        .unwrap();
    // The whole augmented file: a first-samples crop as long as the file, same seed, epoch and
    // index.
    let full = AudioDataset::new(corpus.utterances.clone(), all.len(), CropMode::First)
        .with_augmentation(rawboost.clone(), 7);
    assert_eq!(a, full.waveform(0).unwrap()[start..start + 100]);

    // Another seed, another epoch or another item draws differently; epoch 0 comes back.
    let other_seed =
        AudioDataset::new(corpus.utterances.clone(), 100, crop).with_augmentation(rawboost, 8);
    assert_ne!(a, other_seed.waveform(0).unwrap());
    augmented.set_epoch(1);
    let b = augmented.waveform(0).unwrap();
    assert_ne!(b, a);
    augmented.set_epoch(0);
    assert_eq!(a, augmented.waveform(0).unwrap());
}
