//! k-means on feature frames: the clusters whose indices are HuBERT's pretraining targets.
//!
//! Fitting is (greedy) k-means++ seeding followed by Lloyd iterations until no frame changes cluster
//! (or an iteration limit). Everything random comes from one `StdRng` seeded by
//! [`KMeansConfig::seed`], and every reduction runs in a fixed order, so a seed always gives
//! the same centroids whatever the number of threads. Distances are squared Euclidean,
//! accumulated in `f64`; ties go to the lowest cluster index.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::Frames;

#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    pub num_clusters: usize,
    /// Upper bound on Lloyd iterations (centroid updates); fitting usually stops earlier,
    /// when an update changes no assignment.
    pub max_iterations: usize,
    pub seed: u64,
    /// Fit on a uniform random subset of at most this many frames (drawn without
    /// replacement, kept in their original order); `None` fits on all of them.
    pub max_fit_frames: Option<usize>,
}

impl KMeansConfig {
    /// `num_clusters` clusters, at most 100 iterations, seed 0, every frame.
    pub fn new(num_clusters: usize) -> Self {
        Self {
            num_clusters,
            max_iterations: 100,
            seed: 0,
            max_fit_frames: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KMeansError {
    #[error("k-means needs at least one cluster")]
    ZeroClusters,
    #[error("no frames to cluster")]
    NoFrames,
    #[error("frame {frame}, dimension {dim} is not a finite number")]
    NonFiniteValue { frame: usize, dim: usize },
    #[error(
        "{num_clusters} clusters asked for but the frames hold only {distinct} distinct points: \
         some clusters would stay empty"
    )]
    TooFewDistinctPoints {
        num_clusters: usize,
        distinct: usize,
    },
    #[error("frames have dimension {got}, the centroids {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("label {label} is not below the number of clusters {num_clusters}")]
    LabelOutOfRange { label: u32, num_clusters: usize },
    #[error("no labels to summarise")]
    NoLabels,
}

/// Fitted centroids: assign frames to their nearest one with [`KMeans::predict`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    centroids: Frames,
}

/// The result of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    pub model: KMeans,
    /// Sum over the fitted frames of the squared distance to their nearest final centroid.
    pub inertia: f64,
    /// Inertia of the initial centroids, then after each iteration; never increases (up to `f64`
    /// rounding). The last entry is [`KMeansFit::inertia`].
    pub inertia_history: Vec<f64>,
    /// Centroid updates performed.
    pub iterations: usize,
    /// Whether the last update changed no assignment (otherwise `max_iterations` ran out).
    pub converged: bool,
    /// Frames the centroids were fitted on (after subsampling).
    pub fit_frames: usize,
}

impl KMeans {
    pub fn from_centroids(centroids: Frames) -> Result<Self, KMeansError> {
        if centroids.is_empty() {
            return Err(KMeansError::ZeroClusters);
        }
        check_finite(&centroids)?;
        Ok(Self { centroids })
    }

    pub fn centroids(&self) -> &Frames {
        &self.centroids
    }

    pub fn num_clusters(&self) -> usize {
        self.centroids.num_frames()
    }

    pub fn dim(&self) -> usize {
        self.centroids.dim()
    }

    /// The index of each frame's nearest centroid.
    pub fn predict(&self, frames: &Frames) -> Result<Vec<u32>, KMeansError> {
        if frames.dim() != self.dim() {
            return Err(KMeansError::DimensionMismatch {
                expected: self.dim(),
                got: frames.dim(),
            });
        }
        Ok(assign(frames, self.centroids.as_slice())
            .into_iter()
            .map(|(label, _)| label)
            .collect())
    }
}

/// Seeded greedy k-means++ ([`kmeans_plus_plus`]) then Lloyd iterations ([`refine`]).
pub fn fit(frames: &Frames, config: &KMeansConfig) -> Result<KMeansFit, KMeansError> {
    if config.num_clusters == 0 {
        return Err(KMeansError::ZeroClusters);
    }
    check_finite(frames)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let subset;
    let frames = match config.max_fit_frames {
        Some(limit) if limit < frames.num_frames() => {
            subset = subsample(frames, limit, &mut rng);
            &subset
        }
        _ => frames,
    };
    let initial = kmeans_plus_plus(frames, config.num_clusters, &mut rng)?;
    refine(frames, initial, config.max_iterations)
}

/// Lloyd iterations from given centroids (e.g. a previous fit's) until no frame changes
/// cluster or `max_iterations` updates have run.
pub fn refine(
    frames: &Frames,
    initial_centroids: Frames,
    max_iterations: usize,
) -> Result<KMeansFit, KMeansError> {
    if frames.is_empty() {
        return Err(KMeansError::NoFrames);
    }
    if initial_centroids.is_empty() {
        return Err(KMeansError::ZeroClusters);
    }
    if initial_centroids.dim() != frames.dim() {
        return Err(KMeansError::DimensionMismatch {
            expected: initial_centroids.dim(),
            got: frames.dim(),
        });
    }
    check_finite(frames)?;
    check_finite(&initial_centroids)?;
    let dim = frames.dim();
    let mut centroids = initial_centroids.into_vec();
    let mut assignment = assign(frames, &centroids);
    let mut inertia_history = vec![total_distance(&assignment)];
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iterations {
        let labels = update_centroids(frames, &mut assignment, &mut centroids);
        iterations += 1;
        assignment = assign(frames, &centroids);
        inertia_history.push(total_distance(&assignment));
        if assignment
            .iter()
            .zip(&labels)
            .all(|((new, _), old)| new == old)
        {
            converged = true;
            break;
        }
    }
    Ok(KMeansFit {
        model: KMeans {
            centroids: Frames {
                dim,
                data: centroids,
            },
        },
        inertia: *inertia_history
            .last()
            .expect("the initial assignment records an inertia"),
        inertia_history,
        iterations,
        converged,
        fit_frames: frames.num_frames(),
    })
}

/// Greedy k-means++ seeding, as scikit-learn's `KMeans` and `MiniBatchKMeans` (which
/// HuBERT's label recipe uses) do it: the first centroid is a uniformly drawn frame; each next
/// one is the best, by resulting inertia, of `2 + ln k` candidates drawn with probability
/// proportional to their squared distance to the nearest centroid so far. The extra
/// candidates make two seeds in one natural cluster much rarer than with a single draw.
/// Frames equal to a chosen centroid have probability zero, so the centroids are distinct.
pub fn kmeans_plus_plus<R: Rng + ?Sized>(
    frames: &Frames,
    num_clusters: usize,
    rng: &mut R,
) -> Result<Frames, KMeansError> {
    if num_clusters == 0 {
        return Err(KMeansError::ZeroClusters);
    }
    if frames.is_empty() {
        return Err(KMeansError::NoFrames);
    }
    check_finite(frames)?;
    let distinct = count_distinct_up_to(frames, num_clusters);
    if distinct < num_clusters {
        return Err(KMeansError::TooFewDistinctPoints {
            num_clusters,
            distinct,
        });
    }
    let dim = frames.dim();
    let candidates_per_step = 2 + (num_clusters as f64).ln() as usize;
    let distances_to = |centroid: &[f32]| -> Vec<f64> {
        frames
            .as_slice()
            .par_chunks_exact(dim)
            .map(|x| squared_distance(x, centroid))
            .collect()
    };
    let first = rng.random_range(0..frames.num_frames());
    let mut centroids = frames.frame(first).to_vec();
    let mut nearest = distances_to(frames.frame(first));
    for _ in 1..num_clusters {
        let total: f64 = nearest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..candidates_per_step {
            let candidate = draw_by_weight(&nearest, rng.random::<f64>() * total);
            let updated: Vec<f64> = distances_to(frames.frame(candidate))
                .iter()
                .zip(&nearest)
                .map(|(d, n)| d.min(*n))
                .collect();
            let inertia: f64 = updated.iter().sum();
            if best
                .as_ref()
                .is_none_or(|(best_inertia, _, _)| inertia < *best_inertia)
            {
                best = Some((inertia, candidate, updated));
            }
        }
        let (_, chosen, updated) = best.expect("at least two candidates per step");
        centroids.extend_from_slice(frames.frame(chosen));
        nearest = updated;
    }
    Ok(Frames {
        dim,
        data: centroids,
    })
}

/// The first index whose cumulative weight exceeds `target`, never a zero-weight one (which
/// would repeat a centroid): if rounding leaves `target` past the end, the last positive weight.
fn draw_by_weight(weights: &[f64], target: f64) -> usize {
    let mut cumulative = 0.0;
    for (i, &w) in weights.iter().enumerate() {
        cumulative += w;
        if w > 0.0 && target < cumulative {
            return i;
        }
    }
    weights
        .iter()
        .rposition(|&w| w > 0.0)
        .expect("enough distinct frames leave a positive weight")
}

/// Distinct frames, counting stops at `limit`; `-0.0` and `0.0` are the same point.
fn count_distinct_up_to(frames: &Frames, limit: usize) -> usize {
    let mut seen = HashSet::new();
    for frame in frames.iter() {
        let key: Vec<u32> = frame
            .iter()
            .map(|&x| if x == 0.0 { 0 } else { x.to_bits() })
            .collect();
        seen.insert(key);
        if seen.len() >= limit {
            break;
        }
    }
    seen.len()
}

fn subsample<R: Rng + ?Sized>(frames: &Frames, limit: usize, rng: &mut R) -> Frames {
    let mut chosen = rand::seq::index::sample(rng, frames.num_frames(), limit).into_vec();
    chosen.sort_unstable();
    let data = chosen
        .iter()
        .flat_map(|&i| frames.frame(i).iter().copied())
        .collect();
    Frames {
        dim: frames.dim(),
        data,
    }
}

fn check_finite(frames: &Frames) -> Result<(), KMeansError> {
    match frames.as_slice().iter().position(|x| !x.is_finite()) {
        Some(i) => Err(KMeansError::NonFiniteValue {
            frame: i / frames.dim(),
            dim: i % frames.dim(),
        }),
        None => Ok(()),
    }
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// (nearest centroid, squared distance to it) per frame.
fn assign(frames: &Frames, centroids: &[f32]) -> Vec<(u32, f64)> {
    let dim = frames.dim();
    frames
        .as_slice()
        .par_chunks_exact(dim)
        .map(|x| {
            let mut best = (0u32, f64::INFINITY);
            for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
                let d = squared_distance(x, centroid);
                if d < best.1 {
                    best = (c as u32, d);
                }
            }
            best
        })
        .collect()
}

fn total_distance(assignment: &[(u32, f64)]) -> f64 {
    assignment.iter().map(|(_, d)| d).sum()
}

/// Moves each centroid to the mean of its frames. A cluster left without frames takes the
/// frame farthest from its centroid among clusters that keep at least one other frame:
/// that frame's distance drops to zero and no other frame's grows, so inertia still cannot
/// increase. (Should no such frame remain, the cluster keeps its centroid.) Returns the
/// labels the new centroids were computed from.
fn update_centroids(
    frames: &Frames,
    assignment: &mut [(u32, f64)],
    centroids: &mut [f32],
) -> Vec<u32> {
    let dim = frames.dim();
    let num_clusters = centroids.len() / dim;
    let mut counts = vec![0usize; num_clusters];
    for &(label, _) in assignment.iter() {
        counts[label as usize] += 1;
    }
    let empty: Vec<usize> = (0..num_clusters).filter(|&c| counts[c] == 0).collect();
    if !empty.is_empty() {
        let mut by_distance: Vec<usize> = (0..assignment.len()).collect();
        // Stable sort: equal distances keep frame order, so relocation is deterministic.
        by_distance.sort_by(|&a, &b| assignment[b].1.total_cmp(&assignment[a].1));
        let mut candidates = by_distance.into_iter();
        for cluster in empty {
            let Some(frame) = candidates.find(|&i| counts[assignment[i].0 as usize] > 1) else {
                break;
            };
            counts[assignment[frame].0 as usize] -= 1;
            counts[cluster] = 1;
            assignment[frame] = (cluster as u32, 0.0);
        }
    }
    let mut sums = vec![0.0f64; centroids.len()];
    for (x, &(label, _)) in frames.iter().zip(assignment.iter()) {
        let sum = &mut sums[label as usize * dim..(label as usize + 1) * dim];
        for (s, &v) in sum.iter_mut().zip(x) {
            *s += f64::from(v);
        }
    }
    for (c, count) in counts.iter().enumerate() {
        if *count > 0 {
            for d in 0..dim {
                centroids[c * dim + d] = (sums[c * dim + d] / *count as f64) as f32;
            }
        }
    }
    assignment.iter().map(|&(label, _)| label).collect()
}

/// How evenly labels use the clusters: a collapsed clustering (one cluster taking most
/// frames) makes poor pretraining targets.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelUsage {
    /// Frames per cluster.
    pub counts: Vec<u64>,
    pub total: u64,
}

impl LabelUsage {
    pub fn from_labels(labels: &[u32], num_clusters: usize) -> Result<Self, KMeansError> {
        if labels.is_empty() {
            return Err(KMeansError::NoLabels);
        }
        let mut counts = vec![0u64; num_clusters];
        for &label in labels {
            match counts.get_mut(label as usize) {
                Some(count) => *count += 1,
                None => {
                    return Err(KMeansError::LabelOutOfRange {
                        label,
                        num_clusters,
                    })
                }
            }
        }
        Ok(Self {
            counts,
            total: labels.len() as u64,
        })
    }

    /// Clusters with at least one frame.
    pub fn used_clusters(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }

    /// Share of the frames in the most used cluster.
    pub fn majority_fraction(&self) -> f64 {
        self.counts.iter().copied().max().unwrap_or(0) as f64 / self.total as f64
    }

    /// Shannon entropy of the label distribution in bits.
    pub fn entropy_bits(&self) -> f64 {
        let total = self.total as f64;
        -self
            .counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                p * p.log2()
            })
            .sum::<f64>()
    }

    /// `2^entropy`: the number of equally used clusters with the same entropy (1 when all
    /// frames share a cluster, `num_clusters` when usage is uniform).
    pub fn perplexity(&self) -> f64 {
        self.entropy_bits().exp2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cluster_takes_the_farthest_frame_of_a_shared_cluster() {
        let frames = Frames::new(2, vec![0.0, 0.0, 0.0, 1.0, 10.0, 10.0, 10.0, 13.0]).unwrap();
        // Nothing is nearest to the third centroid.
        let initial = Frames::new(2, vec![0.0, 0.5, 10.0, 10.5, 100.0, 100.0]).unwrap();
        let mut centroids = initial.as_slice().to_vec();
        let mut assignment = assign(&frames, &centroids);
        assert!(assignment.iter().all(|&(label, _)| label != 2));
        let labels = update_centroids(&frames, &mut assignment, &mut centroids);
        // (10, 13) is 2.5 from its centroid, farther than any other frame.
        assert_eq!(labels, [0, 0, 1, 2]);
        assert_eq!(centroids, [0.0, 0.5, 10.0, 10.0, 10.0, 13.0]);

        let fit = refine(&frames, initial, 10).unwrap();
        assert!(fit.converged);
        assert_eq!(fit.inertia, 0.5);
        assert_eq!(fit.inertia_history, [0.25 * 2.0 + 0.25 + 6.25, 0.5]);
    }
}
