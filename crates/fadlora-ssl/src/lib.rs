//! Targets and masks for self-supervised pretraining, HuBERT-style first iteration.
//!
//! HuBERT's first iteration learns to predict, at masked positions, the k-means cluster of
//! each frame's MFCCs. This crate owns the three pieces that do not involve the network:
//!
//! - [`mfcc`]: Kaldi-compatible MFCCs as `torchaudio.compliance.kaldi.mfcc` computes them,
//!   with deltas and delta-deltas (39 dimensions) and per-utterance mean and variance
//!   normalisation, on a 20 ms shift so that one frame lines up with one output frame of the
//!   wav2vec2 feature encoder (stride 320 samples at 16 kHz).
//! - [`kmeans`]: seeded (greedy) k-means++ and Lloyd iterations on those frames, nearest-centroid
//!   labels (the pretraining targets) and statistics of how evenly the labels are used.
//! - [`mask`]: the time masks of Hugging Face's `_compute_mask_indices`, drawn from a seeded
//!   generator.
//!
//! Nothing here depends on burn: frames are plain row-major `f32` and masks plain `bool`.

pub mod kmeans;
pub mod mask;
pub mod mfcc;

/// Frames of equal dimension stored row-major: frame `i` is `data[i * dim..(i + 1) * dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    dim: usize,
    data: Vec<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramesError {
    #[error("frames need a dimension of at least 1")]
    ZeroDim,
    #[error("{len} values do not split into frames of dimension {dim}")]
    RaggedData { len: usize, dim: usize },
}

impl Frames {
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self, FramesError> {
        if dim == 0 {
            return Err(FramesError::ZeroDim);
        }
        if !data.len().is_multiple_of(dim) {
            return Err(FramesError::RaggedData {
                len: data.len(),
                dim,
            });
        }
        Ok(Self { dim, data })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn num_frames(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn frame(&self, index: usize) -> &[f32] {
        &self.data[index * self.dim..(index + 1) * self.dim]
    }

    pub fn iter(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}
