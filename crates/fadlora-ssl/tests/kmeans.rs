//! k-means on data whose clustering is known.

use std::collections::{HashMap, HashSet};

use fadlora_ssl::kmeans::{fit, kmeans_plus_plus, KMeans, KMeansConfig, KMeansError, LabelUsage};
use fadlora_ssl::Frames;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// `per_blob` points around each center with the given std, shuffled; returns (frames, blob of each frame).
fn blobs(centers: &[Vec<f64>], per_blob: usize, std: f64, seed: u64) -> (Frames, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut points: Vec<(usize, Vec<f32>)> = Vec::new();
    for (blob, center) in centers.iter().enumerate() {
        for _ in 0..per_blob {
            points.push((
                blob,
                center
                    .iter()
                    .map(|&c| (c + std * standard_normal(&mut rng)) as f32)
                    .collect(),
            ));
        }
    }
    for i in (1..points.len()).rev() {
        points.swap(i, rng.random_range(0..=i));
    }
    let dim = centers[0].len();
    let truth = points.iter().map(|(blob, _)| *blob).collect();
    let data = points.into_iter().flat_map(|(_, p)| p).collect();
    (Frames::new(dim, data).unwrap(), truth)
}

fn four_separated_centers() -> Vec<Vec<f64>> {
    vec![
        vec![0.0, 0.0, 0.0, 0.0, 0.0],
        vec![25.0, 0.0, 0.0, 5.0, 0.0],
        vec![0.0, 25.0, 0.0, 0.0, -5.0],
        vec![-20.0, -20.0, 20.0, 0.0, 0.0],
    ]
}

#[test]
fn separated_blobs_are_recovered_up_to_relabelling() {
    let (frames, truth) = blobs(&four_separated_centers(), 150, 1.0, 11);
    for seed in 0..20 {
        let result = fit(
            &frames,
            &KMeansConfig {
                seed,
                ..KMeansConfig::new(4)
            },
        )
        .unwrap();
        assert!(
            result.converged,
            "seed {seed}: no convergence in {} iterations",
            result.iterations
        );
        let labels = result.model.predict(&frames).unwrap();
        let mut label_of_blob: HashMap<usize, u32> = HashMap::new();
        for (&blob, &label) in truth.iter().zip(&labels) {
            assert_eq!(
                *label_of_blob.entry(blob).or_insert(label),
                label,
                "seed {seed}: blob {blob} is split"
            );
        }
        let distinct: HashSet<u32> = label_of_blob.values().copied().collect();
        assert_eq!(
            distinct.len(),
            4,
            "seed {seed}: two blobs share a cluster: {label_of_blob:?}"
        );
        // Each centroid is its blob's sample mean, so the inertia is about n * dim * std².
        let per_coordinate = result.inertia / (600.0 * 5.0);
        assert!(
            (0.8..1.2).contains(&per_coordinate),
            "seed {seed}: inertia {} per coordinate",
            per_coordinate
        );
    }
}

#[test]
fn the_same_seed_gives_identical_centroids_whatever_the_thread_count() {
    let (frames, _) = blobs(&four_separated_centers(), 100, 4.0, 3);
    let config = KMeansConfig {
        seed: 42,
        ..KMeansConfig::new(6)
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| fit(&frames, &config).unwrap())
    };
    let first = run(1);
    assert_eq!(first, run(1));
    assert_eq!(first, run(2));
    let other_seed = fit(
        &frames,
        &KMeansConfig {
            seed: 43,
            ..config.clone()
        },
    )
    .unwrap();
    assert_ne!(
        first.model, other_seed.model,
        "the seed should matter on overlapping blobs"
    );
}

#[test]
fn inertia_never_increases_across_iterations() {
    // Uniform points have no natural clusters: Lloyd needs many iterations to settle.
    let mut rng = StdRng::seed_from_u64(5);
    let data: Vec<f32> = (0..3000).map(|_| rng.random::<f32>() * 10.0).collect();
    let frames = Frames::new(3, data).unwrap();
    for seed in 0..3 {
        let result = fit(
            &frames,
            &KMeansConfig {
                seed,
                max_iterations: 300,
                ..KMeansConfig::new(12)
            },
        )
        .unwrap();
        let history = &result.inertia_history;
        assert_eq!(history.len(), result.iterations + 1);
        assert!(
            result.iterations >= 5,
            "seed {seed}: only {} iterations, a weak test",
            result.iterations
        );
        assert!(
            history[history.len() - 1] < 0.8 * history[0],
            "seed {seed}: Lloyd barely improved: {history:?}"
        );
        for (step, pair) in history.windows(2).enumerate() {
            // Only the f32 rounding of the centroid means can push inertia up, by ~1e-14 relative.
            assert!(
                pair[1] <= pair[0] * (1.0 + 1e-12),
                "seed {seed}, step {step}: {} -> {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(result.inertia, *history.last().unwrap());
    }
}

#[test]
fn kmeans_plus_plus_picks_distinct_points_even_among_duplicates() {
    // Five distinct points, each repeated 40 times: only distinct centroids cover them all.
    let distinct = [
        [0.0f32, 0.0],
        [1.0, 0.0],
        [0.0, 1.0],
        [5.0, 5.0],
        [-3.0, 2.0],
    ];
    let data: Vec<f32> = (0..200).flat_map(|i| distinct[i % 5]).collect();
    let frames = Frames::new(2, data).unwrap();
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let centroids = kmeans_plus_plus(&frames, 5, &mut rng).unwrap();
        let mut picked: Vec<[f32; 2]> = centroids.iter().map(|c| [c[0], c[1]]).collect();
        picked.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut expected = distinct.to_vec();
        expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(picked, expected, "seed {seed}");
    }
    let result = fit(&frames, &KMeansConfig::new(5)).unwrap();
    assert_eq!(result.inertia, 0.0);
    assert_eq!(
        LabelUsage::from_labels(&result.model.predict(&frames).unwrap(), 5)
            .unwrap()
            .counts,
        [40; 5]
    );
}

#[test]
fn more_clusters_than_distinct_points_is_an_error() {
    let data: Vec<f32> = (0..100).flat_map(|i| [(i % 5) as f32, 1.0]).collect();
    let frames = Frames::new(2, data).unwrap();
    assert_eq!(
        fit(&frames, &KMeansConfig::new(6)),
        Err(KMeansError::TooFewDistinctPoints {
            num_clusters: 6,
            distinct: 5
        })
    );
    // -0.0 and 0.0 are one point.
    let signed_zeros = Frames::new(1, vec![0.0, -0.0, 1.0]).unwrap();
    assert_eq!(
        fit(&signed_zeros, &KMeansConfig::new(3)),
        Err(KMeansError::TooFewDistinctPoints {
            num_clusters: 3,
            distinct: 2
        })
    );
    assert_eq!(
        fit(&frames, &KMeansConfig::new(0)),
        Err(KMeansError::ZeroClusters)
    );
    assert_eq!(
        fit(&Frames::new(2, vec![]).unwrap(), &KMeansConfig::new(1)),
        Err(KMeansError::NoFrames)
    );
    let with_nan = Frames::new(2, vec![0.0, 1.0, f32::NAN, 2.0]).unwrap();
    assert_eq!(
        fit(&with_nan, &KMeansConfig::new(1)),
        Err(KMeansError::NonFiniteValue { frame: 1, dim: 0 })
    );
}

#[test]
fn subsampled_fit_uses_at_most_the_limit_and_still_finds_the_blobs() {
    let (frames, truth) = blobs(&four_separated_centers(), 500, 1.0, 8);
    for seed in 0..10 {
        let config = KMeansConfig {
            max_fit_frames: Some(200),
            seed,
            ..KMeansConfig::new(4)
        };
        let result = fit(&frames, &config).unwrap();
        assert_eq!(result.fit_frames, 200);
        assert_eq!(result, fit(&frames, &config).unwrap());
        let labels = result.model.predict(&frames).unwrap();
        // A clean partition pairs each blob with exactly one cluster.
        let pairs: HashSet<(usize, u32)> = truth.iter().copied().zip(labels).collect();
        assert_eq!(
            pairs.len(),
            4,
            "seed {seed}: blob-to-cluster pairs {pairs:?}"
        );
    }
    let unlimited = fit(
        &frames,
        &KMeansConfig {
            max_fit_frames: Some(5000),
            ..KMeansConfig::new(4)
        },
    )
    .unwrap();
    assert_eq!(unlimited.fit_frames, 2000);
}

#[test]
fn predict_assigns_the_nearest_centroid_and_checks_the_dimension() {
    let model =
        KMeans::from_centroids(Frames::new(2, vec![0.0, 0.0, 10.0, 0.0, 0.0, 10.0]).unwrap())
            .unwrap();
    let frames = Frames::new(2, vec![1.0, 1.0, 9.0, -1.0, 2.0, 7.0, 5.0, 0.0]).unwrap();
    // (5, 0) is as far from (0, 0) as from (10, 0): the lower index wins.
    assert_eq!(model.predict(&frames).unwrap(), [0, 1, 2, 0]);
    let wrong = Frames::new(3, vec![0.0; 3]).unwrap();
    assert_eq!(
        model.predict(&wrong),
        Err(KMeansError::DimensionMismatch {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn label_usage_statistics() {
    let uniform = LabelUsage::from_labels(&[0, 1, 2, 3, 3, 2, 1, 0], 4).unwrap();
    assert_eq!(uniform.counts, [2, 2, 2, 2]);
    assert_eq!(uniform.used_clusters(), 4);
    assert_eq!(uniform.majority_fraction(), 0.25);
    assert!((uniform.entropy_bits() - 2.0).abs() < 1e-12);
    assert!((uniform.perplexity() - 4.0).abs() < 1e-12);

    let collapsed = LabelUsage::from_labels(&[2; 10], 5).unwrap();
    assert_eq!(collapsed.used_clusters(), 1);
    assert_eq!(collapsed.majority_fraction(), 1.0);
    assert_eq!(collapsed.entropy_bits(), 0.0);
    assert_eq!(collapsed.perplexity(), 1.0);

    // p = (1/2, 1/4, 1/4): H = 1.5 bits.
    let skewed = LabelUsage::from_labels(&[0, 0, 1, 2], 3).unwrap();
    assert_eq!(skewed.majority_fraction(), 0.5);
    assert!((skewed.entropy_bits() - 1.5).abs() < 1e-12);
    assert!((skewed.perplexity() - 2f64.powf(1.5)).abs() < 1e-12);

    assert_eq!(
        LabelUsage::from_labels(&[0, 3], 3),
        Err(KMeansError::LabelOutOfRange {
            label: 3,
            num_clusters: 3
        })
    );
    assert_eq!(LabelUsage::from_labels(&[], 3), Err(KMeansError::NoLabels));
}
