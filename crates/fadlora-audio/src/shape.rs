use rand::Rng;

/// The first `n` samples; a shorter input is tiled by repetition until it is `n` long.
///
/// This is `pad` of SSL_Anti-spoofing / AASIST (`np.tile(x, n // len + 1)[:n]`), the input
/// convention of the systems we compare against. An empty input, on which the Python version
/// divides by zero, gives `n` zeros.
pub fn fixed_length(samples: &[f32], n: usize) -> Vec<f32> {
    if samples.len() >= n {
        return samples[..n].to_vec();
    }
    tile(samples, n)
}

/// A window of `n` samples at a uniformly random start (every start in `0..=len - n` is
/// possible) when the input is longer; otherwise the same tiling as [`fixed_length`]. With a
/// seeded `rng` the crop is reproducible.
pub fn random_crop<R: Rng + ?Sized>(samples: &[f32], n: usize, rng: &mut R) -> Vec<f32> {
    if samples.len() > n {
        let start = rng.random_range(0..=samples.len() - n);
        return samples[start..start + n].to_vec();
    }
    fixed_length(samples, n)
}

/// Starts of windows of `window` samples every `hop` samples that together cover all `len`
/// samples: `0, hop, 2*hop, ...` while a window still ends inside the input, then one last
/// window aligned to the end when the regular ones stop short of it. An input no longer than
/// one window has the single start 0 (its window is tiled, as [`fixed_length`] does).
///
/// # Panics
/// If `hop` is 0.
pub fn window_starts(len: usize, window: usize, hop: usize) -> Vec<usize> {
    assert!(hop > 0, "a hop of 0 samples never advances");
    if len <= window {
        return vec![0];
    }
    let last = len - window;
    let mut starts: Vec<usize> = (0..=last).step_by(hop).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
}

/// The `n` samples from `start` on; tiled like [`fixed_length`] when fewer remain.
pub fn window(samples: &[f32], start: usize, n: usize) -> Vec<f32> {
    fixed_length(&samples[start.min(samples.len())..], n)
}

fn tile(samples: &[f32], n: usize) -> Vec<f32> {
    if samples.is_empty() {
        return vec![0.0; n];
    }
    samples.iter().copied().cycle().take(n).collect()
}

/// In place `(x - mean) / sqrt(var + 1e-7)` with the population variance: exactly what Hugging
/// Face's `Wav2Vec2FeatureExtractor` does when `do_normalize` is set (XLS-R checkpoints set it).
/// Sums run in `f64` so long files do not lose precision. An empty slice is left alone.
pub fn normalize_zero_mean_unit_variance(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let variance = samples
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv_std = 1.0 / (variance + 1e-7).sqrt();
    for x in samples.iter_mut() {
        *x = ((f64::from(*x) - mean) * inv_std) as f32;
    }
}

/// Scales in place so the largest absolute sample equals `peak`. Silence (all zeros) is left
/// alone rather than divided by zero.
pub fn normalize_peak(samples: &mut [f32], peak: f32) {
    let max_abs = samples.iter().fold(0.0f32, |acc, &x| acc.max(x.abs()));
    if max_abs > 0.0 {
        let gain = peak / max_abs;
        for x in samples.iter_mut() {
            *x *= gain;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn windows_cover_every_sample_and_step_by_the_hop() {
        for (len, window, hop) in [
            (100, 10, 5),
            (100, 10, 7),
            (101, 10, 10),
            (10, 10, 5),
            (3, 10, 5),
            (11, 10, 3),
            (64_000, 16_000, 8_000),
        ] {
            let starts = window_starts(len, window, hop);
            assert_eq!(starts[0], 0);
            let mut covered = vec![false; len];
            for &start in &starts {
                for c in covered.iter_mut().skip(start).take(window) {
                    *c = true;
                }
                assert!(
                    start + window.min(len) <= len,
                    "{len} {window} {hop}: {start}"
                );
            }
            assert!(
                covered.iter().all(|&c| c),
                "{len} {window} {hop}: {starts:?}"
            );
            // Regular steps, except that the last window may be pulled back to end at `len`.
            for pair in starts.windows(2).take(starts.len().saturating_sub(2)) {
                assert_eq!(pair[1] - pair[0], hop);
            }
            if len > window {
                assert_eq!(*starts.last().unwrap(), len - window);
            }
        }
        assert_eq!(window_starts(100, 10, 30), vec![0, 30, 60, 90]);
        assert_eq!(window_starts(100, 10, 45), vec![0, 45, 90]);
        assert_eq!(window_starts(95, 10, 45), vec![0, 45, 85]);
    }

    #[test]
    fn a_window_near_the_end_is_tiled() {
        let x: Vec<f32> = (0..5).map(|i| i as f32).collect();
        assert_eq!(window(&x, 1, 3), vec![1.0, 2.0, 3.0]);
        assert_eq!(window(&x, 3, 4), vec![3.0, 4.0, 3.0, 4.0]);
        assert_eq!(window(&x, 0, 7), fixed_length(&x, 7));
    }

    #[test]
    fn fixed_length_takes_the_first_samples_of_a_long_input() {
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert_eq!(fixed_length(&x, 4), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(fixed_length(&x, 10), x);
        assert!(fixed_length(&x, 0).is_empty());
    }

    #[test]
    fn fixed_length_tiles_a_short_input_like_numpy_tile() {
        let x = [1.0, 2.0, 3.0];
        // np.tile([1,2,3], 7 // 3 + 1)[:7]
        assert_eq!(fixed_length(&x, 7), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
        assert_eq!(fixed_length(&x, 6), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        assert_eq!(fixed_length(&[5.0], 3), vec![5.0, 5.0, 5.0]);
        assert_eq!(fixed_length(&[], 3), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn random_crop_is_a_contiguous_window_and_reproducible_with_a_seed() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let first = random_crop(&x, 100, &mut StdRng::seed_from_u64(7));
        let again = random_crop(&x, 100, &mut StdRng::seed_from_u64(7));
        assert_eq!(first, again);
        assert_eq!(first.len(), 100);
        let start = first[0] as usize;
        assert_eq!(first, x[start..start + 100]);

        let mut rng = StdRng::seed_from_u64(8);
        let starts: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| random_crop(&x, 100, &mut rng)[0] as usize)
            .collect();
        assert!(starts.len() > 100, "crops should spread over the file");
        assert!(starts.iter().all(|&s| s <= 900));
    }

    #[test]
    fn random_crop_reaches_both_ends() {
        let x: Vec<f32> = (0..4).map(|i| i as f32).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let starts: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| random_crop(&x, 3, &mut rng)[0] as usize)
            .collect();
        assert_eq!(starts.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn random_crop_tiles_short_inputs() {
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            random_crop(&[1.0, 2.0], 5, &mut rng),
            vec![1.0, 2.0, 1.0, 2.0, 1.0]
        );
        assert_eq!(random_crop(&[1.0, 2.0], 2, &mut rng), vec![1.0, 2.0]);
    }

    #[test]
    fn zero_mean_unit_variance_matches_the_hugging_face_formula() {
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0];
        normalize_zero_mean_unit_variance(&mut x);
        // mean 2.5, population variance 1.25
        let std = (1.25f64 + 1e-7).sqrt();
        let expected: Vec<f32> = [-1.5, -0.5, 0.5, 1.5]
            .iter()
            .map(|d| (d / std) as f32)
            .collect();
        assert_eq!(x, expected);

        let mut constant = vec![0.25f32; 5];
        normalize_zero_mean_unit_variance(&mut constant);
        assert_eq!(constant, vec![0.0; 5]);
    }

    #[test]
    fn peak_normalisation_scales_to_the_target() {
        let mut x = vec![0.1f32, -0.4, 0.2];
        normalize_peak(&mut x, 0.8);
        assert_eq!(x, vec![0.2, -0.8, 0.4]);
        let mut silence = vec![0.0f32; 3];
        normalize_peak(&mut silence, 1.0);
        assert_eq!(silence, vec![0.0; 3]);
    }
}
