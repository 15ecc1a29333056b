//! Statistics and invariants of the Hugging Face time-mask port.

use fadlora_ssl::mask::{compute_mask_indices, MaskConfig, MaskError, TimeMask};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn config(mask_prob: f64, mask_length: usize, min_masks: usize) -> MaskConfig {
    MaskConfig {
        mask_prob,
        mask_length,
        min_masks,
    }
}

/// The mask must be exactly the union of the recorded spans, each inside its sequence.
fn assert_mask_is_union_of_spans(mask: &TimeMask, mask_length: usize, lengths: &[usize]) {
    for (sequence, &length) in lengths.iter().enumerate() {
        let mut expected = vec![false; mask.sequence_length()];
        for &start in mask.span_starts(sequence) {
            assert!(
                start + mask_length <= length,
                "span at {start} overruns length {length}"
            );
            expected[start..start + mask_length].fill(true);
        }
        if mask.span_starts(sequence).is_empty() && mask.as_slice().iter().any(|&m| m) {
            // transformers' padding index for a row without spans (module documentation).
            expected[mask.sequence_length() - 1] = true;
        }
        assert_eq!(mask.row(sequence), expected, "sequence {sequence}");
    }
}

#[test]
fn mean_span_count_is_mask_prob_times_length_over_mask_length() {
    // 0.65 * 100 / 10 = 6.5 spans. int(6.5 + epsilon) is 6 or 7 with equal probability, so the
    // mean is 6.5 itself: the random rounding adds no bias (not +0.5).
    let (length, mask_length, draws) = (100, 10, 4000);
    let config = config(0.65, mask_length, 0);
    let mut rng = StdRng::seed_from_u64(1);
    let (mut spans, mut masked) = (0usize, 0usize);
    for _ in 0..draws {
        let mask = compute_mask_indices(1, length, &config, None, &mut rng).unwrap();
        let count = mask.span_starts(0).len();
        assert!(count == 6 || count == 7, "{count} spans");
        assert_mask_is_union_of_spans(&mask, mask_length, &[length]);
        let frames = mask.masked_count(0);
        assert!(frames >= mask_length && frames <= count * mask_length);
        spans += count;
        masked += frames;
    }
    let mean_spans = spans as f64 / draws as f64;
    // Std of the mean: 0.5 / sqrt(4000) = 0.008.
    assert!(
        (mean_spans - 6.5).abs() < 0.04,
        "mean {mean_spans} spans per sequence"
    );
    // Overlapping spans make the masked fraction smaller than mask_prob.
    let masked_fraction = masked as f64 / (draws * length) as f64;
    assert!(
        masked_fraction < 0.65 && masked_fraction > 0.4,
        "masked fraction {masked_fraction}"
    );
}

#[test]
fn one_epsilon_per_batch_gives_equal_length_rows_equal_span_counts() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..200 {
        let mask = compute_mask_indices(8, 77, &config(0.37, 4, 0), None, &mut rng).unwrap();
        let first = mask.span_starts(0).len();
        assert!((0..8).all(|b| mask.span_starts(b).len() == first));
        assert_mask_is_union_of_spans(&mask, 4, &[77; 8]);
    }
}

#[test]
fn min_masks_is_honoured_within_what_fits() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..200 {
        // 0.01 * 50 / 10 + epsilon < 1: only min_masks asks for spans.
        let mask =
            compute_mask_indices(2, 50, &config(0.01, 10, 2), Some(&[50, 12]), &mut rng).unwrap();
        assert_eq!(mask.span_starts(0).len(), 2);
        // 12 frames leave 3 possible starts: two spans still fit.
        assert_eq!(mask.span_starts(1).len(), 2);
        assert_mask_is_union_of_spans(&mask, 10, &[50, 12]);

        // 10 spans of 10 cannot fit in 50 frames: capped at 50 / 10.
        let mask = compute_mask_indices(1, 50, &config(0.01, 10, 10), None, &mut rng).unwrap();
        assert_eq!(mask.span_starts(0).len(), 5);
        // 11 frames leave only 2 starts.
        let mask =
            compute_mask_indices(1, 50, &config(0.01, 10, 10), Some(&[11]), &mut rng).unwrap();
        assert_eq!(mask.span_starts(0).len(), 2);
    }
}

#[test]
fn nothing_is_masked_past_a_sequence_length() {
    let lengths = [100, 60, 35, 21, 9];
    let mask_length = 10;
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..500 {
        let mask = compute_mask_indices(
            5,
            100,
            &config(0.5, mask_length, 1),
            Some(&lengths),
            &mut rng,
        )
        .unwrap();
        assert_mask_is_union_of_spans(&mask, mask_length, &lengths);
        for (sequence, &length) in lengths.iter().enumerate().take(4) {
            assert!(
                !mask.span_starts(sequence).is_empty(),
                "min_masks 1 fits in {length} frames"
            );
            assert!(
                mask.row(sequence)[length..].iter().all(|&m| !m),
                "sequence {sequence} masked past {length}"
            );
        }
        // 9 frames hold no 10-frame span: transformers then masks the last padding frame only.
        assert!(mask.span_starts(4).is_empty());
        assert_eq!(mask.masked_count(4), 1);
        assert!(mask.row(4)[99]);
    }
}

#[test]
fn zero_mask_prob_masks_nothing() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..100 {
        let mask =
            compute_mask_indices(3, 40, &config(0.0, 5, 0), Some(&[40, 20, 3]), &mut rng).unwrap();
        assert!(mask.as_slice().iter().all(|&m| !m));
        assert_eq!(mask.to_rows(), vec![vec![false; 40]; 3]);
    }
}

#[test]
fn the_same_seed_gives_the_same_mask() {
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        compute_mask_indices(
            4,
            200,
            &MaskConfig::hubert(),
            Some(&[200, 150, 90, 40]),
            &mut rng,
        )
        .unwrap()
    };
    assert_eq!(draw(9), draw(9));
    assert_ne!(draw(9), draw(10));
    let mask = draw(9);
    assert_eq!(
        (
            mask.batch_size(),
            mask.sequence_length(),
            mask.as_slice().len()
        ),
        (4, 200, 800)
    );
}

#[test]
fn invalid_arguments_are_rejected() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut draw = |batch, sequence_length, config: MaskConfig, lengths: Option<&[usize]>| {
        compute_mask_indices(batch, sequence_length, &config, lengths, &mut rng).map(|_| ())
    };
    assert_eq!(
        draw(1, 20, config(0.5, 0, 0), None),
        Err(MaskError::ZeroMaskLength)
    );
    assert_eq!(
        draw(1, 20, config(0.5, 21, 0), None),
        Err(MaskError::MaskLongerThanSequence {
            mask_length: 21,
            sequence_length: 20
        })
    );
    assert_eq!(
        draw(1, 20, config(1.5, 2, 0), None),
        Err(MaskError::InvalidMaskProb(1.5))
    );
    assert!(matches!(
        draw(1, 20, config(f64::NAN, 2, 0), None),
        Err(MaskError::InvalidMaskProb(_))
    ));
    assert_eq!(
        draw(2, 20, config(0.5, 2, 0), Some(&[20])),
        Err(MaskError::LengthsDoNotMatchBatch {
            lengths: 1,
            batch_size: 2
        })
    );
    assert_eq!(
        draw(2, 20, config(0.5, 2, 0), Some(&[20, 21])),
        Err(MaskError::InputLongerThanSequence {
            index: 1,
            length: 21,
            sequence_length: 20
        })
    );
}
