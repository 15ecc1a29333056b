//! Bootstrap intervals and paired differences against numpy
//! (`tools/fixtures/make_bootstrap_fixtures.py` writes `fixtures/bootstrap/reference.json`):
//! the replicates are replayed from the indices numpy drew, and the default path (fadlora's
//! own SplitMix64 indices) against the same generator written in Python.

use std::path::Path;

use fadlora_metrics::bootstrap::{
    eer_interval, eer_replicates, paired_difference, paired_difference_replicates,
    percentile_interval, pooled_eer_interval, BootstrapOptions, Resample, Resampler,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-12;

fn reference() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bootstrap/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn index_rows(v: &Value) -> Vec<Vec<usize>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

/// The replicates numpy drew, as [`Resample`]s.
fn numpy_resamples(interval: &Value) -> Vec<Resample> {
    index_rows(&interval["resample_bonafide"])
        .into_iter()
        .zip(index_rows(&interval["resample_spoof"]))
        .map(|(bonafide, spoof)| Resample { bonafide, spoof })
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{what}: got {got}, numpy {want}"
    );
}

#[test]
fn replicate_eers_and_the_percentile_interval_match_numpy_on_the_same_indices() {
    let reference = reference();
    let r = &reference["interval"];
    let (bona, spoof) = (floats(&r["bonafide"]), floats(&r["spoof"]));
    let replicates = eer_replicates(&bona, &spoof, numpy_resamples(r)).unwrap();
    let want = floats(&r["replicate_eers"]);
    assert_eq!(replicates.len(), want.len());
    for (i, (got, want)) in replicates.iter().zip(&want).enumerate() {
        close(*got, *want, &format!("replicate {i}"));
    }
    let level = reference["level"].as_f64().unwrap();
    let interval = percentile_interval(&replicates, level);
    close(interval.low, r["low"].as_f64().unwrap(), "low");
    close(interval.high, r["high"].as_f64().unwrap(), "high");
    // Not a degenerate interval: the test could not pass by returning the EER twice.
    assert!(
        interval.low < r["eer"].as_f64().unwrap() && r["eer"].as_f64().unwrap() < interval.high
    );
}

#[test]
fn paired_differences_match_numpy_on_the_same_indices() {
    let reference = reference();
    let r = &reference["interval"];
    let p = &reference["paired"];
    let a = (floats(&r["bonafide"]), floats(&r["spoof"]));
    let b = (floats(&p["b_bonafide"]), floats(&p["b_spoof"]));
    let diffs =
        paired_difference_replicates((&a.0, &a.1), (&b.0, &b.1), numpy_resamples(r)).unwrap();
    let want = floats(&p["replicate_differences"]);
    assert_eq!(diffs.len(), want.len());
    for (i, (got, want)) in diffs.iter().zip(&want).enumerate() {
        close(*got, *want, &format!("difference {i}"));
    }
    let interval = percentile_interval(&diffs, reference["level"].as_f64().unwrap());
    close(interval.low, p["low"].as_f64().unwrap(), "low");
    close(interval.high, p["high"].as_f64().unwrap(), "high");
}

#[test]
fn the_default_generator_matches_its_python_twin_end_to_end() {
    let reference = reference();
    let s = &reference["splitmix64"];
    let seed = s["seed"].as_u64().unwrap();
    let mut rng = Resampler::new(seed);
    for want in s["first_outputs"].as_array().unwrap() {
        assert_eq!(rng.next_u64().to_string(), want.as_str().unwrap());
    }
    let options = BootstrapOptions {
        resamples: s["resamples"].as_u64().unwrap() as usize,
        seed,
        level: reference["level"].as_f64().unwrap(),
    };
    assert_eq!(options, BootstrapOptions::default());
    let r = &reference["interval"];
    let (bona, spoof) = (floats(&r["bonafide"]), floats(&r["spoof"]));
    let interval = eer_interval(&bona, &spoof, &options).unwrap();
    close(interval.low, s["interval_low"].as_f64().unwrap(), "low");
    close(interval.high, s["interval_high"].as_f64().unwrap(), "high");

    let p = &reference["paired"];
    let b = (floats(&p["b_bonafide"]), floats(&p["b_spoof"]));
    let paired = paired_difference((&bona, &spoof), (&b.0, &b.1), &options).unwrap();
    close(
        paired.difference,
        p["difference"].as_f64().unwrap(),
        "difference",
    );
    close(
        paired.interval.low,
        s["paired_low"].as_f64().unwrap(),
        "paired low",
    );
    close(
        paired.interval.high,
        s["paired_high"].as_f64().unwrap(),
        "paired high",
    );
}

#[test]
fn pooled_seed_eer_is_the_eer_of_the_concatenated_scores() {
    let reference = reference();
    let r = &reference["pooled_seeds"];
    let (mut bona, mut spoof) = (Vec::new(), Vec::new());
    for (seed, want) in r["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .zip(floats(&r["seed_eers"]))
    {
        let (b, s) = (floats(&seed["bonafide"]), floats(&seed["spoof"]));
        close(fadlora_metrics::eer(&b, &s).unwrap().eer, want, "seed EER");
        bona.extend(b);
        spoof.extend(s);
    }
    let pooled = fadlora_metrics::eer(&bona, &spoof).unwrap().eer;
    close(pooled, r["pooled_eer"].as_f64().unwrap(), "pooled");
}

/// The pooled EER's interval: trials drawn once per replicate, every seed's scores of them
/// pooled (numpy with fadlora's generator); one set alone is `eer_interval`; sets of different
/// trial counts are refused.
#[test]
fn pooled_seed_interval_matches_numpy_and_reduces_to_the_plain_interval() {
    let reference = reference();
    let r = &reference["pooled_seeds"];
    let seeds: Vec<(Vec<f64>, Vec<f64>)> = r["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|seed| (floats(&seed["bonafide"]), floats(&seed["spoof"])))
        .collect();
    let sets: Vec<(&[f64], &[f64])> = seeds
        .iter()
        .map(|(b, s)| (b.as_slice(), s.as_slice()))
        .collect();
    let options = BootstrapOptions::default();
    let pooled = pooled_eer_interval(&sets, &options).unwrap();
    close(
        pooled.low,
        r["interval_low"].as_f64().unwrap(),
        "pooled low",
    );
    close(
        pooled.high,
        r["interval_high"].as_f64().unwrap(),
        "pooled high",
    );

    let single = pooled_eer_interval(&sets[..1], &options).unwrap();
    assert_eq!(
        single,
        eer_interval(sets[0].0, sets[0].1, &options).unwrap()
    );
    let short = (&seeds[1].0[..9], seeds[1].1.as_slice());
    assert!(pooled_eer_interval(&[sets[0], short], &options).is_err());
}
