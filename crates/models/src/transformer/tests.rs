//! Whole-model tests on tiny random-weight files.

use candle_core::quantized::GgmlDType;

use super::*;
use crate::gguf::{GgufFile, WeightFormat};
use crate::ops::log_sum_exp;
use crate::tiny::{write_llama_with, TinySpec};

/// Log-probabilities of the next token after `prompt`, then after each token that `choose` picks
/// from the previous row, `steps` rows in all; returns the rows and the tokens chosen.
fn decode(model: &Transformer, prompt: &[u32], steps: usize, choose: impl Fn(usize, &[f32]) -> u32) -> Vec<Vec<f32>> {
    let blocks: Vec<u32> = (0..8).collect();
    let mut pool = model.new_pool(16, blocks.len());
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut token = [0];
    let mut step = SeqStep { tokens: prompt, start: 0, blocks: &blocks, want_logits: true };
    for i in 0..steps {
        let logits = model.forward(&mut pool, &[step]).unwrap().remove(0);
        let norm = log_sum_exp(&logits);
        rows.push(logits.iter().map(|l| l - norm).collect());
        token[0] = choose(i, &rows[i]);
        step = SeqStep { tokens: &token, start: prompt.len() + i, blocks: &blocks, want_logits: true };
    }
    rows
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32
}

/// The same weights run natively (activations rounded to 8 bits per value in the kernels, as GGML's
/// K-quant kernels do) and dequantized to f32 (exact). Along the exact model's greedy path, the native
/// model picks the same token wherever the exact one leads by more than 1 nat, and its log-probabilities
/// of the exact model's top-5 tokens are within 0.75 nats, 0.2 on average. (The legacy Q8_0 kernel
/// on the same model: 0.32 at most, 0.075 on average; the K-quants measured 0.56 and 0.125.)
#[test]
fn k_quant_models_match_their_dequantized_weights() {
    let dir = std::env::temp_dir().join(format!("hearth-kquant-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompt = [72u32, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];
    for weights in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K, GgmlDType::Q3K, GgmlDType::Q2K] {
        let spec = TinySpec { dim: 256, ffn: 512, weights, head_scale: Some(0.5), ..TinySpec::default() };
        let load = |spec: TinySpec, name: &str| {
            let path = write_llama_with(&dir, 5, spec, name).unwrap();
            crate::arch::llama::load(&GgufFile::open(&path).unwrap(), WeightFormat::AsStored).unwrap()
        };
        let (native, exact) = (load(spec, "native.gguf"), load(TinySpec { dequantized: true, ..spec }, "exact.gguf"));
        let reference = decode(&exact, &prompt, 24, |_, row| argmax(row));
        let path: Vec<u32> = reference.iter().map(|row| argmax(row)).collect();
        let ours = decode(&native, &prompt, 24, |i, _| path[i]);
        let mut gaps = Vec::new();
        for (step, (a, b)) in ours.iter().zip(&reference).enumerate() {
            let mut order: Vec<usize> = (0..b.len()).collect();
            order.sort_by(|&x, &y| b[y].total_cmp(&b[x]));
            if b[order[0]] - b[order[1]] > 1.0 {
                assert_eq!(argmax(a) as usize, order[0], "{weights:?} step {step}: greedy token");
            }
            for &t in &order[..5] {
                let gap = (a[t] - b[t]).abs();
                assert!(gap <= 0.75, "{weights:?} step {step} token {t}: {} vs {}", a[t], b[t]);
                gaps.push(gap);
            }
        }
        let mean = gaps.iter().sum::<f32>() / gaps.len() as f32;
        assert!(mean <= 0.2, "{weights:?}: mean log-probability error {mean}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
