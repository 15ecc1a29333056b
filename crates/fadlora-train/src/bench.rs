//! `bench step`: the time and memory of one training step (forward + weighted CE + backward +
//! AdamW), the same step as `tools/bench/torch_step.py`, so the two can be compared.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use fadlora_model::{ModelBackend, Precision, TrainBackend, Wav2Vec2Config};
use serde::{Deserialize, Serialize};

use crate::backend::{run_on, BackendEnv, BackendJob};
use crate::config::LoraSection;
use crate::detector::{param_paths, weighted_cross_entropy, BaseSource, Detector, DetectorConfig};
use crate::measure::TimeStats;
use crate::TrainError;
use fadlora_run::BackendKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchStepConfig {
    pub preset: String,
    pub backend: BackendKind,
    /// `None` = full fine-tuning.
    pub lora: Option<LoraSection>,
    pub batch: usize,
    pub samples: usize,
    pub warmup: usize,
    pub iters: usize,
    pub seed: u64,
    pub precision: Precision,
}

/// Medians of the phases of a step, each followed by a device sync (so on a GPU they add up to
/// a little more than an unsynced step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSplit {
    /// Forward pass and loss.
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// Gradient collection and the optimizer update.
    pub optimizer_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchStepResult {
    pub framework: String,
    pub preset: String,
    pub mode: String,
    pub rank: Option<usize>,
    pub targets: Option<Vec<String>>,
    pub batch: usize,
    pub samples: usize,
    pub precision: Precision,
    pub warmup: usize,
    pub iters: usize,
    /// Whole steps with one sync at their end.
    pub step_ms_median: f64,
    pub step_ms_p90: f64,
    pub step_ms_min: f64,
    pub utt_per_s: f64,
    /// Separate iterations with a sync after every phase.
    pub phase_ms: PhaseSplit,
    /// Peak RSS on the CPU; bytes in use on cubecl (see `peak_mem_kind`); after warm-up.
    pub peak_in_use_bytes: Option<u64>,
    /// cubecl: the largest pool reservation after warm-up.
    pub peak_reserved_bytes: Option<u64>,
    pub peak_mem_kind: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub backend: String,
    pub device: String,
    pub final_loss: f64,
}

pub fn bench_step(config: &BenchStepConfig) -> Result<BenchStepResult, TrainError> {
    run_on(config.backend, BenchJob { config })?
}

struct BenchJob<'a> {
    config: &'a BenchStepConfig,
}

impl BackendJob for BenchJob<'_> {
    type Output = Result<BenchStepResult, TrainError>;

    fn run<B: ModelBackend>(self, device: B::Device, env: BackendEnv) -> Self::Output {
        run_bench::<Autodiff<B>>(self.config, device, env)
    }
}

fn run_bench<B: TrainBackend>(
    c: &BenchStepConfig,
    device: B::Device,
    mut env: BackendEnv,
) -> Result<BenchStepResult, TrainError> {
    let mut arch = Wav2Vec2Config::preset(&c.preset).ok_or_else(|| {
        TrainError::Invalid(format!(
            "unknown preset `{}` ({})",
            c.preset,
            Wav2Vec2Config::PRESETS.join(", ")
        ))
    })?;
    // As torch_step.py: every layer runs every step, dropout stays on.
    arch.layerdrop = 0.0;
    if arch.num_frames(c.samples).is_none() {
        return Err(TrainError::Invalid(format!(
            "--samples {} is shorter than the receptive field ({})",
            c.samples,
            arch.receptive_field()
        )));
    }
    if c.iters == 0 {
        return Err(TrainError::Invalid("--iters must be at least 1".into()));
    }
    let detector_config = DetectorConfig::new(arch)
        .with_lora(c.lora.clone())
        .with_precision(c.precision);
    let mut model: Detector<B> = detector_config
        .build(&BaseSource::Random { seed: c.seed }, &device)?
        .with_frozen_weights_in_precision();
    let counts = param_paths(&model).counts;
    // torch_step.py's optimizer: AdamW(lr 1e-6, weight_decay 1e-4).
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-4)
        .init::<B, Detector<B>>();
    B::seed(&device, c.seed ^ 0x5eed);
    let waveforms = Tensor::<B, 2>::random(
        [c.batch, c.samples],
        Distribution::Normal(0.0, 0.1),
        &device,
    );
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..c.batch).map(|i| (i % 2) as i64).collect::<Vec<_>>(),
            [c.batch],
        ),
        &device,
    );
    let sync = || B::sync(&device).map_err(|e| TrainError::Invalid(format!("device error: {e:?}")));
    let mut steps = Vec::with_capacity(c.iters);
    let [mut forward, mut backward, mut update] = [(); 3].map(|_| Vec::with_capacity(c.iters));
    for i in 0..c.warmup + 2 * c.iters {
        if i == c.warmup {
            env.memory.reset();
        }
        let phased = i >= c.warmup + c.iters;
        let start = Instant::now();
        let logits = model.forward(waveforms.clone());
        let loss = weighted_cross_entropy(logits, labels.clone(), [0.1, 0.9]);
        // As in training: a mixture of experts' load-balancing loss is part of the step.
        let loss = match model.wav2vec2.take_balance_loss() {
            Some(balance) => loss + balance,
            None => loss,
        };
        if phased {
            // Activations are at their peak here.
            sync()?;
            env.memory.sample();
        }
        let after_forward = Instant::now();
        let grads = loss.backward();
        if phased {
            sync()?;
        }
        let after_backward = Instant::now();
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-6, model, grads);
        sync()?;
        env.memory.sample();
        let end = Instant::now();
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
        if phased {
            forward.push(ms(start, after_forward));
            backward.push(ms(after_forward, after_backward));
            update.push(ms(after_backward, end));
        } else if i >= c.warmup {
            steps.push(ms(start, end));
        }
    }
    let valid = model.valid();
    let logits = valid.forward(waveforms.inner());
    let final_loss = weighted_cross_entropy(logits, labels.inner(), [0.1, 0.9])
        .into_scalar()
        .elem::<f64>();
    let stats = TimeStats::of(&steps).expect("at least one timed step");
    let median = |xs: &[f64]| TimeStats::of(xs).map_or(f64::NAN, |t| t.median_ms);
    let memory = env.memory.peak();
    Ok(BenchStepResult {
        framework: format!("burn 0.21 ({})", env.kind),
        preset: c.preset.clone(),
        mode: if c.lora.is_some() { "lora" } else { "full" }.into(),
        rank: c.lora.as_ref().map(|l| l.rank),
        targets: c
            .lora
            .as_ref()
            .map(|l| l.targets.iter().map(|t| t.to_string()).collect()),
        batch: c.batch,
        samples: c.samples,
        precision: c.precision,
        warmup: c.warmup,
        iters: c.iters,
        step_ms_median: stats.median_ms,
        step_ms_p90: stats.p90_ms,
        step_ms_min: stats.min_ms,
        utt_per_s: c.batch as f64 / (stats.median_ms / 1e3),
        phase_ms: PhaseSplit {
            forward_ms: median(&forward),
            backward_ms: median(&backward),
            optimizer_ms: median(&update),
        },
        peak_in_use_bytes: memory.peak_mem_bytes,
        peak_reserved_bytes: memory.peak_reserved_bytes,
        peak_mem_kind: memory.kind,
        trainable_params: counts.trainable,
        total_params: counts.total,
        backend: env.kind.to_string(),
        device: env.device_name,
        final_loss,
    })
}
