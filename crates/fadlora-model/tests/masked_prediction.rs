//! Masked prediction: masking replaces exactly the masked frames' encoder input, the gradient
//! reaches `masked_spec_embed` only through masked frames, the loss is the cross-entropy of the
//! masked frames alone (checked against a hand computation), and one optimizer step on a micro
//! model lowers it.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use fadlora_model::pretraining::masked_prediction_loss;
use fadlora_model::Wav2Vec2Config;

type AD = Autodiff<Flex>;
const SAMPLES: usize = 4000;
const CLUSTERS: usize = 12;

fn input(batch: usize, device: &Device<AD>) -> Tensor<AD, 2> {
    Tensor::from_data(
        TensorData::new(
            (0..batch * SAMPLES)
                .map(|i| ((i as f32) * 0.013).sin() * 0.5 + ((i % 97) as f32) * 1e-3)
                .collect(),
            [batch, SAMPLES],
        ),
        device,
    )
}

fn mask(rows: &[Vec<bool>], device: &Device<AD>) -> Tensor<AD, 2, Bool> {
    let frames = rows[0].len();
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), frames]), device)
}

fn frames() -> usize {
    Wav2Vec2Config::micro().num_frames(SAMPLES).unwrap()
}

#[test]
fn no_mask_is_the_plain_forward_and_masking_changes_only_what_it_should() {
    let device = Default::default();
    AD::seed(&device, 3);
    let model = Wav2Vec2Config::micro()
        .init::<Flex>(&device)
        .with_masked_spec_embed(&device);
    let x = input(2, &device).inner();
    let t = frames();
    let plain = model.forward(x.clone(), false).last_hidden_state;
    let none = mask(&[vec![false; t], vec![false; t]], &device).inner();
    let unmasked = model
        .forward_masked(x.clone(), none, false)
        .last_hidden_state;
    plain
        .to_data()
        .assert_approx_eq::<f32>(&unmasked.to_data(), burn::tensor::Tolerance::absolute(1e-6));

    // Masking frames of the first sequence only leaves the second one's output unchanged.
    let mut first = vec![false; t];
    first[2..6].iter_mut().for_each(|m| *m = true);
    let some = mask(&[first, vec![false; t]], &device).inner();
    let masked = model.forward_masked(x, some, false).last_hidden_state;
    let diff = |b: usize| {
        (masked.clone().slice(b..b + 1) - plain.clone().slice(b..b + 1))
            .abs()
            .max()
            .into_scalar()
    };
    assert!(diff(0) > 1e-3, "masking changed nothing: {}", diff(0));
    assert_eq!(diff(1), 0.0);
}

#[test]
fn the_gradient_reaches_masked_spec_embed_only_through_masked_frames() {
    let device = Default::default();
    AD::seed(&device, 4);
    let model = Wav2Vec2Config::micro().init_masked_prediction::<AD>(CLUSTERS, &device);
    let t = frames();
    let targets = Tensor::<AD, 2, Int>::zeros([1, t], &device);
    let embed_grad = |rows: Vec<bool>| {
        let out = model.loss(input(1, &device), mask(&[rows], &device), targets.clone());
        let grads = out.loss.backward();
        model
            .wav2vec2
            .masked_spec_embed
            .as_ref()
            .unwrap()
            .grad(&grads)
            .map(|g| g.abs().sum().into_scalar())
            .unwrap_or(0.0)
    };
    let mut some = vec![false; t];
    some[1..4].iter_mut().for_each(|m| *m = true);
    assert!(embed_grad(some) > 0.0);
    assert_eq!(embed_grad(vec![false; t]), 0.0);
}

#[test]
fn the_loss_is_the_cross_entropy_of_masked_frames_only() {
    let device = Default::default();
    let logits = [
        [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]],
        [[0.0, 3.0, 1.0], [1.0, -2.0, 4.0]],
    ];
    let targets = [[0_i64, 2], [1, 0]];
    let masked = [[true, true], [false, true]];
    let flat: Vec<f32> = logits
        .iter()
        .flatten()
        .flatten()
        .map(|&v| v as f32)
        .collect();
    let out = masked_prediction_loss(
        Tensor::<Flex, 3>::from_data(TensorData::new(flat, [2, 2, 3]), &device),
        Tensor::<Flex, 2, Bool>::from_data(
            TensorData::new(masked.concat().to_vec(), [2, 2]),
            &device,
        ),
        Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(targets.concat().to_vec(), [2, 2]),
            &device,
        ),
    );
    let mut expected = 0.0;
    let mut right = 0;
    for b in 0..2 {
        for t in 0..2 {
            if !masked[b][t] {
                continue;
            }
            let row: &[f64; 3] = &logits[b][t];
            let log_norm = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            expected += log_norm - row[targets[b][t] as usize];
            let best = (0..3).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
            right += usize::from(best == targets[b][t] as usize);
        }
    }
    expected /= 3.0;
    assert_eq!(out.masked, 3);
    let loss = out.loss.into_scalar() as f64;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    assert_eq!(out.correct.into_scalar() as usize, right);
    assert_eq!(
        right, 1,
        "the hand computation itself: only frame (0, 0) is right"
    );
}

#[test]
fn one_optimizer_step_lowers_the_masked_loss_of_a_micro_model() {
    let device = Default::default();
    AD::seed(&device, 5);
    let mut model = Wav2Vec2Config::micro().init_masked_prediction::<AD>(CLUSTERS, &device);
    let t = frames();
    let rows: Vec<Vec<bool>> = (0..2)
        .map(|b| (0..t).map(|i| (i + 3 * b) % 4 < 2).collect())
        .collect();
    let targets = Tensor::<AD, 2, Int>::from_data(
        TensorData::new(
            (0..2 * t)
                .map(|i| ((i * 7) % CLUSTERS) as i64)
                .collect::<Vec<_>>(),
            [2, t],
        ),
        &device,
    );
    let batch = input(2, &device);
    let loss_now = |model: &fadlora_model::Wav2Vec2ForMaskedPrediction<AD>| {
        // The eval copy: no dropout, so the two losses differ by the step alone.
        let eval = model.valid();
        eval.loss(
            batch.clone().inner(),
            mask(&rows, &device).inner(),
            targets.clone().inner(),
        )
        .loss
        .into_scalar()
    };
    let before = loss_now(&model);
    assert!(
        (before - (CLUSTERS as f32).ln()).abs() < 1.0,
        "an untrained classifier is near chance: {before}"
    );
    let mut optim = AdamConfig::new().init();
    let out = model.loss(batch.clone(), mask(&rows, &device), targets.clone());
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    model = optim.step(1e-2, model, grads);
    let after = loss_now(&model);
    assert!(after < before - 1e-3, "loss {before} -> {after}");
}
