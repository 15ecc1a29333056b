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
