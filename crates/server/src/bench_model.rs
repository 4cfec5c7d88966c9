//! `hearth bench-model`: raw forward-pass speed of a GGUF model, llama-bench style (no HTTP, no batching).
//!
//! As in llama-bench, prompt processing (`pp`) runs one prompt of `--prompt` tokens in chunks of `--batch`,
//! and generation (`tg`) decodes `--gen` tokens one at a time from an empty context; each on a fresh cache. The report also states the memory-bandwidth bound for
//! generation: each decode step reads every weight once, so tokens/s cannot exceed bandwidth ÷ weight bytes.
//! It gives the peak resident memory of loading and running the model, taken before the bandwidth test's
//! own 512 MiB buffer (which outweighs small models, so a whole-process peak would report the buffer).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use hearth_models::{GgufFile, SeqStep};

use crate::config::{Weights, DEFAULT_MODEL};

/// `hearth bench-model` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchModelArgs {
    /// GGUF model file.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Prompt tokens to process (pp).
    #[arg(long, default_value_t = 512)]
    pub prompt: usize,
    /// Tokens to generate one by one (tg).
    #[arg(long, default_value_t = 128)]
    pub gen: usize,
    /// Prompt tokens per forward step.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Repetitions; the report gives the median.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Inference threads; 0 means one per physical core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// In-memory weight format.
    #[arg(long, value_enum, default_value = "as-stored")]
    pub weights: Weights,
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(args: &BenchModelArgs) -> anyhow::Result<()> {
    hearth_models::set_inference_threads(args.threads);
    let file = GgufFile::open(&args.model)?;
    let model = hearth_models::load(&file, args.weights.into())?;
    hearth_models::release_free_memory();
    let vocab = model.info().vocab_size as u32;
    let tokens: Vec<u32> = (0..(args.prompt + args.gen) as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    // One sequence owning every block of a pool just large enough, as the engine would lay it out.
    const BLOCK: usize = 16;
    let blocks: Vec<u32> = (0..args.prompt.max(args.gen).div_ceil(BLOCK) as u32).collect();
    let mut pool = model.new_pool(BLOCK, blocks.len());
    for _ in 0..args.repetitions.max(1) {
        let start = Instant::now();
        for (i, chunk) in tokens[..args.prompt].chunks(args.batch.max(1)).enumerate() {
            let step = SeqStep { tokens: chunk, start: i * args.batch.max(1), blocks: &blocks, want_logits: true };
            model.forward(&mut pool, &[step])?;
        }
        pp.push(args.prompt as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for (i, token) in tokens[args.prompt..].iter().enumerate() {
            let step = SeqStep { tokens: std::slice::from_ref(token), start: i, blocks: &blocks, want_logits: true };
            model.forward(&mut pool, &[step])?;
        }
        tg.push(args.gen as f64 / start.elapsed().as_secs_f64());
    }
    let weight_bytes = model.weight_bytes() as f64;
    let peak = peak_resident_bytes();
    drop((pool, model));
    let bandwidth = read_bandwidth();
    let bound = bandwidth / weight_bytes;
    let tg_median = median(&mut tg);
    println!("model:             {}", args.model.display());
    println!("threads:           {}", hearth_models::inference_threads());
    println!("pp{:<5}            {:.1} tok/s (median of {})", args.prompt, median(&mut pp), pp.len());
    println!("tg{:<5}            {:.1} tok/s (median of {})", args.gen, tg_median, tg.len());
    println!("weights per token: {:.1} MB", weight_bytes / 1e6);
    if let Some(peak) = peak {
        println!("peak resident:     {:.1} MB (load and runs)", peak as f64 / 1e6);
    }
    println!(
        "read bandwidth:    {:.1} GB/s (measured now, {} threads)",
        bandwidth / 1e9,
        hearth_models::inference_threads()
    );
    println!("decode bound:      {:.1} tok/s; tg reaches {:.0}% of it", bound, 100.0 * tg_median / bound);
    Ok(())
}

/// This process's peak resident memory so far (Linux's `VmHWM`), where the system reports it.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?;
    Some(kib.trim().parse::<u64>().ok()? * 1024)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Streaming read bandwidth over 512 MiB split between the inference threads, the best of three passes.
fn read_bandwidth() -> f64 {
    let data = vec![1u64; 64 << 20];
    let threads = hearth_models::inference_threads().max(1);
    let part = data.len().div_ceil(threads);
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let sum: u64 = std::thread::scope(|scope| {
                let workers: Vec<_> = data.chunks(part).map(|chunk| scope.spawn(move || sum_words(chunk))).collect();
                workers.into_iter().map(|w| w.join().expect("bandwidth thread")).fold(0, u64::wrapping_add)
            });
            std::hint::black_box(sum);
            (data.len() * 8) as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// Sums words with four independent accumulators, so the loop streams at memory speed.
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 4];
    for quad in words.chunks_exact(4) {
        for (a, w) in acc.iter_mut().zip(quad) {
            *a = a.wrapping_add(*w);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

#[cfg(test)]
mod tests {
    use super::peak_resident_bytes;

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_resident_memory_counts_touched_pages() {
        let before = peak_resident_bytes().expect("VmHWM on Linux");
        let touched = vec![1u8; 96 << 20];
        std::hint::black_box(&touched);
        let after = peak_resident_bytes().unwrap();
        assert!(after >= before.max(96 << 20), "peak {after} after touching 96 MiB (was {before})");
    }
}
