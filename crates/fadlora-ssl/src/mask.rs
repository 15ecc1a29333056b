//! Time masks for masked prediction, as Hugging Face's wav2vec2 draws them.
//!
//! [`compute_mask_indices`] ports `_compute_mask_indices` of
//! `transformers.models.wav2vec2.modeling_wav2vec2` step for step; only the random generator
//! differs (any seeded [`rand::Rng`] instead of numpy's global state), so the masks follow
//! the same distribution but not numpy's exact draws. Per batch:
//!
//! 1. one `epsilon` uniform in [0, 1), shared by every sequence, rounds the span count
//!    probabilistically: `int(mask_prob * input_length / mask_length + epsilon)`, so the
//!    expected count is exactly `mask_prob * input_length / mask_length`;
//! 2. the count is raised to `min_masks`, lowered to `sequence_length / mask_length` and to
//!    the `input_length - mask_length + 1` possible starts;
//! 3. span starts are drawn without replacement from those starts, so every span lies
//!    inside the sequence, but spans may overlap: the masked fraction is at most `mask_prob`.
//!
//! One quirk is kept for fidelity: when the full-length count is positive but a shorter
//! sequence gets no span at all, transformers pads that row's span list with the index
//! `sequence_length - 1`, which masks the last frame, a padding frame of that sequence.

use rand::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct MaskConfig {
    /// Spans per frame times `mask_length`: the share of frames masked if no spans overlapped.
    pub mask_prob: f64,
    /// Frames per span.
    pub mask_length: usize,
    /// Spans per sequence at least, as long as they fit.
    pub min_masks: usize,
}

impl MaskConfig {
    /// HuBERT's pretraining masks (fairseq: `mask_prob` 0.8, `mask_length` 10) with
    /// transformers' default `mask_time_min_masks` of 2.
    pub fn hubert() -> Self {
        Self {
            mask_prob: 0.8,
            mask_length: 10,
            min_masks: 2,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error("mask_length must be at least 1")]
    ZeroMaskLength,
    #[error("mask_length {mask_length} is longer than the sequence ({sequence_length} frames)")]
    MaskLongerThanSequence {
        mask_length: usize,
        sequence_length: usize,
    },
    #[error("mask_prob {0} is not in [0, 1]")]
    InvalidMaskProb(f64),
    #[error("{lengths} sequence lengths given for a batch of {batch_size}")]
    LengthsDoNotMatchBatch { lengths: usize, batch_size: usize },
    #[error(
        "sequence {index} is {length} frames long, more than the padded length {sequence_length}"
    )]
    InputLongerThanSequence {
        index: usize,
        length: usize,
        sequence_length: usize,
    },
}

/// A `batch_size x sequence_length` mask, row-major, with the spans it was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeMask {
    batch_size: usize,
    sequence_length: usize,
    mask: Vec<bool>,
    span_starts: Vec<Vec<usize>>,
}

impl TimeMask {
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn sequence_length(&self) -> usize {
        self.sequence_length
    }

    /// Row-major `batch_size * sequence_length` flags: `true` is masked.
    pub fn as_slice(&self) -> &[bool] {
        &self.mask
    }

    pub fn row(&self, sequence: usize) -> &[bool] {
        &self.mask[sequence * self.sequence_length..(sequence + 1) * self.sequence_length]
    }

    pub fn to_rows(&self) -> Vec<Vec<bool>> {
        (0..self.batch_size).map(|b| self.row(b).to_vec()).collect()
    }

    /// The first frame of each span drawn for `sequence`, in drawing order (the padding
    /// index of the quirk in the module documentation is not a span).
    pub fn span_starts(&self, sequence: usize) -> &[usize] {
        &self.span_starts[sequence]
    }

    pub fn masked_count(&self, sequence: usize) -> usize {
        self.row(sequence).iter().filter(|&&m| m).count()
    }
}

/// Draws a mask for `batch_size` sequences padded to `sequence_length` frames;
/// `input_lengths` gives each sequence's unpadded length (all full length when `None`).
pub fn compute_mask_indices<R: Rng + ?Sized>(
    batch_size: usize,
    sequence_length: usize,
    config: &MaskConfig,
    input_lengths: Option<&[usize]>,
    rng: &mut R,
) -> Result<TimeMask, MaskError> {
    let MaskConfig {
        mask_prob,
        mask_length,
        min_masks,
    } = *config;
    if mask_length == 0 {
        return Err(MaskError::ZeroMaskLength);
    }
    if mask_length > sequence_length {
        return Err(MaskError::MaskLongerThanSequence {
            mask_length,
            sequence_length,
        });
    }
    if !(0.0..=1.0).contains(&mask_prob) {
        return Err(MaskError::InvalidMaskProb(mask_prob));
    }
    let input_lengths = match input_lengths {
        Some(lengths) if lengths.len() != batch_size => {
            return Err(MaskError::LengthsDoNotMatchBatch {
                lengths: lengths.len(),
                batch_size,
            });
        }
        Some(lengths) => lengths.to_vec(),
        None => vec![sequence_length; batch_size],
    };
    if let Some((index, &length)) = input_lengths
        .iter()
        .enumerate()
        .find(|(_, &l)| l > sequence_length)
    {
        return Err(MaskError::InputLongerThanSequence {
            index,
            length,
            sequence_length,
        });
    }

    let epsilon: f64 = rng.random();
    let num_spans = |input_length: usize| {
        // Truncation as Python's int() on a non-negative float.
        let mut count = (mask_prob * input_length as f64 / mask_length as f64 + epsilon) as usize;
        count = count.max(min_masks);
        if count * mask_length > sequence_length {
            count = sequence_length / mask_length;
        }
        let possible_starts = (input_length + 1).saturating_sub(mask_length);
        count.min(possible_starts)
    };

    let mut mask = TimeMask {
        batch_size,
        sequence_length,
        mask: vec![false; batch_size * sequence_length],
        span_starts: vec![Vec::new(); batch_size],
    };
    if num_spans(sequence_length) == 0 {
        return Ok(mask);
    }
    for (sequence, &input_length) in input_lengths.iter().enumerate() {
        let count = num_spans(input_length);
        let possible_starts = (input_length + 1).saturating_sub(mask_length);
        let starts = if count == 0 {
            Vec::new()
        } else {
            rand::seq::index::sample(rng, possible_starts, count).into_vec()
        };
        let row = &mut mask.mask[sequence * sequence_length..(sequence + 1) * sequence_length];
        for &start in &starts {
            row[start..start + mask_length].fill(true);
        }
        if starts.is_empty() {
            row[sequence_length - 1] = true;
        }
        mask.span_starts[sequence] = starts;
    }
    Ok(mask)
}
