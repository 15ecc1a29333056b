//! `fadlora params` with LoRA: the trainable counts on the XLS-R 300M preset equal those PEFT
//! reports on the same architecture (fixtures/peft/fixture_info.json, measured with PEFT 0.21.2).

use std::process::Command;

const FIXTURE_INFO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/peft/fixture_info.json"
);

fn fadlora(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fadlora"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn peft_counts() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(FIXTURE_INFO).unwrap()).unwrap()
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The cells of the LoRA table row whose targets and rank are given.
fn row<'a>(table: &'a str, targets: &str, rank: usize) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| {
            cells.first() == Some(&"LoRA")
                && cells.get(1) == Some(&targets)
                && cells.get(2) == Some(&rank.to_string().as_str())
        })
        .unwrap_or_else(|| panic!("no LoRA row {targets} r={rank} in\n{table}"))
}

#[test]
fn rank_table_for_query_value_matches_peft() {
    let (ok, out, err) = fadlora(&[
        "params",
        "--preset",
        "xls-r-300m",
        "--ranks",
        "1,2,4,8,16,32,64",
    ]);
    assert!(ok, "{err}");
    println!("{out}");
    let info = peft_counts();
    let full = info["xls_r_300m"]["wav2vec2model_params_without_masked_spec_embed"]
        .as_u64()
        .unwrap();
    let full_row = out
        .lines()
        .find(|l| l.starts_with("full "))
        .expect("full fine-tuning row");
    assert!(full_row.contains(&thousands(full)), "{full_row}");
    for rank in [1, 2, 4, 8, 16, 32, 64] {
        let peft = &info["xls_r_300m"]["lora"][format!("q,v r={rank}")];
        let trainable = peft["trainable"].as_u64().unwrap();
        assert_eq!(trainable, 98_304 * rank as u64);
        let cells = row(&out, "q,v", rank);
        assert_eq!(cells[4], thousands(trainable), "r={rank}");
        assert_eq!(cells[5], thousands(full + trainable), "r={rank}");
        let reduction = peft["reduction_vs_full_without_masked_spec_embed"]
            .as_f64()
            .unwrap();
        assert_eq!(cells[6], format!("{reduction:.1}x"), "r={rank}");
    }
    // The paper's "198x" for ~1.6M parameters.
    assert_eq!(row(&out, "q,v", 16)[6], "200.5x");
}

#[test]
fn wider_target_sets_match_peft() {
    let info = peft_counts();
    for (flag, key) in [
        ("q,k,v,o", "q,k,v,o r=8"),
        ("q,k,v,o,ffn_in,ffn_out", "q,k,v,o,ffn_in,ffn_out r=8"),
    ] {
        let (ok, out, err) = fadlora(&[
            "params",
            "--preset",
            "xls-r-300m",
            "--lora",
            flag,
            "--rank",
            "8",
        ]);
        assert!(ok, "{err}");
        let want = info["xls_r_300m"]["lora"][key]["trainable"]
            .as_u64()
            .unwrap();
        assert_eq!(row(&out, flag, 8)[4], thousands(want), "{flag}");
    }
    let (ok, out, _) = fadlora(&[
        "params",
        "--preset",
        "xls-r-300m",
        "--lora",
        "q,v",
        "--rank",
        "4",
    ]);
    assert!(ok);
    assert_eq!(row(&out, "q,v", 4)[4], "393,216");
}

#[test]
fn bad_lora_arguments_are_clear_errors() {
    let (ok, out, err) = fadlora(&[
        "params", "--preset", "tiny", "--lora", "q,query", "--rank", "4",
    ]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("`query`") && err.contains("q, k, v, o, ffn_in, ffn_out"),
        "{err}"
    );
    let (ok, _, err) = fadlora(&["params", "--preset", "tiny", "--lora", "q,v"]);
    assert!(!ok && err.contains("--rank"), "{err}");
    let (ok, _, err) = fadlora(&[
        "params", "--preset", "tiny", "--rank", "4", "--layers", "0,9",
    ]);
    assert!(!ok && err.contains("layer index 9"), "{err}");
}

/// DoRA and (IA)^3 on XLS-R 300M (24 layers, width 1024, FFN 4096), counted by hand.
#[test]
fn dora_and_ia3_counts_on_xls_r_300m_are_the_hand_computed_ones() {
    let (ok, out, err) = fadlora(&[
        "params",
        "--preset",
        "xls-r-300m",
        "--lora",
        "q,v",
        "--ranks",
        "1,4",
        "--dora",
        "--ia3",
    ]);
    assert!(ok, "{err}");
    let cell = |method: &str, rank: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with(method) && l.split_whitespace().nth(2) == Some(rank))
            .unwrap_or_else(|| panic!("no {method} rank {rank} row:\n{out}"));
        line.split_whitespace().nth(4).unwrap().to_string()
    };
    // DoRA = LoRA's r * (1024 + 1024) per projection plus a magnitude of 1024, for q and v.
    let dora = |r: u64| 24 * 2 * (r * 2048 + 1024);
    assert_eq!(cell("DoRA", "1"), thousands(dora(1)));
    assert_eq!(cell("DoRA", "4"), thousands(dora(4)));
    // (IA)^3 defaults: k and v outputs (1024 each) and output_dense's input (4096).
    assert_eq!(cell("(IA)^3", "-"), thousands(24 * (1024 + 1024 + 4096)));
}

/// Mixtures of LoRA experts on XLS-R 300M at two ranks and two expert counts, counted by
/// hand: per adapted projection K adapters of r x (1024 + 1024) and a 1024 x K router.
#[test]
fn moe_lora_counts_on_xls_r_300m_are_the_hand_computed_ones() {
    let (ok, out, err) = fadlora(&[
        "params",
        "--preset",
        "xls-r-300m",
        "--lora",
        "q,v",
        "--ranks",
        "1,2",
        "--moe",
        "2,4",
    ]);
    assert!(ok, "{err}");
    let rows: Vec<(String, String, String)> = out
        .lines()
        .filter(|l| l.starts_with("MoE-LoRA"))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[1].into(), cells[3].into(), cells[5].into())
        })
        .collect();
    let moe = |k: u64, r: u64| thousands(24 * 2 * (k * r * 2048 + 1024 * k));
    let row = |k: u64, r: u64| (format!("x{k}"), r.to_string(), moe(k, r));
    assert_eq!(rows, [row(2, 1), row(4, 1), row(2, 2), row(4, 2)], "{out}");
    let (ok, _, err) = fadlora(&[
        "params",
        "--preset",
        "xls-r-300m",
        "--rank",
        "2",
        "--moe",
        "1",
    ]);
    assert!(!ok && err.contains("2 experts"), "{err}");
}

/// The SLS head on a frozen XLS-R 300M at two input lengths, counted by hand: fc0 1024 + 1,
/// the BatchNorm's 2, fc1 from the pooled map (floor(frames / 3) x floor(1024 / 3)) to 1024,
/// fc3 1024 x 2 + 2. 64,600 samples are 201 frames (the authors' size), 32,000 are 99.
#[test]
fn sls_counts_on_xls_r_300m_are_the_hand_computed_ones() {
    let (ok, out, err) = fadlora(&["params", "--preset", "xls-r-300m", "--sls", "64600,32000"]);
    assert!(ok, "{err}");
    let rows: Vec<(String, String)> = out
        .lines()
        .filter(|l| l.starts_with("SLS"))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[3].to_string(), cells[7].to_string())
        })
        .collect();
    let head = |frames: u64| 1025 + 2 + (frames / 3) * 341 * 1024 + 1024 + 2050;
    assert_eq!(
        rows,
        [
            ("201".to_string(), thousands(head(201))),
            ("99".to_string(), thousands(head(99)))
        ],
        "{out}"
    );
}

/// Adapter layers on XLS-R 300M (24 layers, width 1024) at two sizes each, counted by hand;
/// MMS adapters on a post-LN preset are refused.
#[test]
fn adapter_counts_on_xls_r_300m_are_the_hand_computed_ones() {
    let trainable = |kind: &str| -> Vec<String> {
        let (ok, out, err) = fadlora(&[
            "params",
            "--preset",
            "xls-r-300m",
            "--adapter",
            "16,64",
            "--adapter-kind",
            kind,
        ]);
        assert!(ok, "{err}");
        out.lines()
            .filter(|l| l.starts_with("adapter"))
            .map(|l| l.split_whitespace().nth(7).unwrap().to_string())
            .collect()
    };
    // Per layer: linear_1 1024 x s + s, linear_2 s x 1024 + 1024; MMS adds a LayerNorm (2048).
    let bottleneck = |s: u64| 24 * (2048 * s + s + 1024);
    assert_eq!(
        trainable("bottleneck"),
        [thousands(bottleneck(16)), thousands(bottleneck(64))]
    );
    assert_eq!(
        trainable("mms"),
        [
            thousands(bottleneck(16) + 24 * 2048),
            thousands(bottleneck(64) + 24 * 2048)
        ]
    );
    let (ok, _, err) = fadlora(&["params", "--preset", "base", "--adapter", "16"]);
    assert!(!ok && err.contains("pre-LN"), "{err}");
}

/// Partial fine-tuning on XLS-R 300M, counted by hand: one encoder layer is q, k, v, o
/// (1024 x 1024 + 1024 each), the feed-forward block (1024 x 4096 + 4096 and 4096 x 1024 +
/// 1024) and two LayerNorms (2 x 2048) = 12,596,224; the feature projection is a LayerNorm
/// (2 x 512) and a Linear 512 x 1024 + 1024 = 526,336.
#[test]
fn partial_counts_on_xls_r_300m_are_the_hand_computed_ones() {
    let layer: u64 =
        4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 2 * 2048;
    assert_eq!(layer, 12_596_224);
    let projection: u64 = 2 * 512 + 512 * 1024 + 1024;
    let trainable = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec![
            "params",
            "--preset",
            "xls-r-300m",
            "--partial",
            "top:4,bottom:2",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = fadlora(&args);
        assert!(ok, "{err}");
        out.lines()
            .filter(|l| l.starts_with("partial"))
            .map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                (cells[1..3].join(" "), cells[cells.len() - 3].to_string())
            })
            .collect()
    };
    assert_eq!(
        trainable(&[]),
        [
            ("top 4".to_string(), thousands(4 * layer)),
            ("bottom 2".to_string(), thousands(2 * layer))
        ]
    );
    assert_eq!(
        trainable(&["--partial-feature-projection"]),
        [
            ("top 4".to_string(), thousands(4 * layer + projection)),
            ("bottom 2".to_string(), thousands(2 * layer + projection))
        ]
    );
    let (ok, _, err) = fadlora(&["params", "--preset", "xls-r-300m", "--partial", "top:25"]);
    assert!(!ok && err.contains("24 encoder layers"), "{err}");
    let (ok, _, err) = fadlora(&["params", "--preset", "xls-r-300m", "--partial", "middle:2"]);
    assert!(!ok && err.contains("middle"), "{err}");
}

/// A layer sum on XLS-R 300M trains one weight per hidden state: its 24 layers' outputs and
/// the encoder's input, 25, beside the frozen 315,437,696.
#[test]
fn layer_sum_counts_on_xls_r_300m_are_one_weight_per_hidden_state() {
    let (ok, out, err) = fadlora(&["params", "--preset", "xls-r-300m", "--layer-sum"]);
    assert!(ok, "{err}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("layer-sum"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["25", "hidden"]);
    assert_eq!(row[row.len() - 3], "25");
    assert_eq!(row[row.len() - 2], thousands(315_437_696 + 25));
}

/// `--ia3` on targets without `ffn_out` needs no `--ia3-feedforward`: nothing rescales an input.
#[test]
fn ia3_without_ffn_out_rescales_outputs_only() {
    let (ok, out, err) = fadlora(&["params", "--preset", "xls-r-300m", "--ia3", "k,v"]);
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with("(IA)^3")).unwrap();
    // k and v outputs, 1024 each, in 24 layers.
    assert_eq!(
        row.split_whitespace().nth(4),
        Some(thousands(24 * 2048).as_str())
    );
}
