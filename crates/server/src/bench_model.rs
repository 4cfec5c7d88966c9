//! `hearth bench-model`: raw forward-pass speed of a GGUF model, llama-bench style (no HTTP, no batching).
//!
//! As in llama-bench, prompt processing (`pp`) runs one prompt of `--prompt` tokens in chunks of `--batch`,
//! and generation (`tg`) decodes `--gen` tokens one at a time, each after `--depth` tokens already in the
//! cache (none by default; filled before the clock starts, as llama-bench's `-d`). The report also states
//! the memory-bandwidth bound for generation: each decode step reads every weight once, so tokens/s cannot
//! exceed bandwidth ÷ weight bytes.
//! It gives the peak resident memory of loading and running the model, taken before the bandwidth test's
//! own 512 MiB buffer (which outweighs small models, so a whole-process peak would report the buffer).
//! With `--by-format` it also times decode's matrix-vector products format by format, interleaved with
//! the plain read, so each format's streaming rate is stated beside the bandwidth of the same minutes.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use hearth_models::gguf::TensorType;
use hearth_models::quant::Matrix;
use hearth_models::{GgufFile, SeqStep, WeightFormat};

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
    /// Tokens already in the cache when pp and tg start (llama-bench's `-d`), filled before timing.
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// Repetitions; the report gives the median.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Inference threads; 0 means one per physical core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// In-memory weight format.
    #[arg(long, value_enum, default_value = "as-stored")]
    pub weights: Weights,
    /// Also time decode's matrix-vector products by weight format, beside a plain read of memory.
    #[arg(long)]
    pub by_format: bool,
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(args: &BenchModelArgs) -> anyhow::Result<()> {
    hearth_models::set_inference_threads(args.threads);
    let file = GgufFile::open(&args.model)?;
    let model = hearth_models::load(&file, args.weights.into())?;
    hearth_models::release_free_memory();
    let vocab = model.info().vocab_size as u32;
    let (prompt, gen, depth) = (args.prompt, args.gen, args.depth);
    let context = depth + prompt.max(gen);
    if context > model.info().context_length {
        anyhow::bail!("--depth plus the longer of --prompt and --gen is {context} tokens, past the model's context");
    }
    let mut tokens: Vec<u32> = (0..(depth + prompt + gen) as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    // One sequence owning every block of a pool just large enough, as the engine would lay it out.
    const BLOCK: usize = 16;
    let blocks: Vec<u32> = (0..context.div_ceil(BLOCK) as u32).collect();
    let mut pool = model.new_pool(BLOCK, blocks.len());
    let (batch, repetitions) = (args.batch.max(1), args.repetitions.max(1));
    let filler: Vec<u32> = tokens.drain(..depth).collect();
    // On a thread of its own, as the engine runs them: glibc serves the main thread from a heap it trims
    // after each pass, and there a 256-token prefill of a 1B model faulted its ~720 MB of buffers in again
    // every pass (184 000 page faults; 172 against 213 tok/s on two Zen 4 cores), which the server's
    // engine thread does not.
    let passes = std::thread::spawn(move || -> anyhow::Result<_> {
        let (mut pp, mut tg) = (Vec::new(), Vec::new());
        let prefill = |tokens: &[u32], first: usize, pool: &mut _| -> anyhow::Result<()> {
            for (i, chunk) in tokens.chunks(batch).enumerate() {
                let step = SeqStep { tokens: chunk, start: first + i * batch, blocks: &blocks, want_logits: true };
                model.forward(pool, &[step])?;
            }
            Ok(())
        };
        for _ in 0..repetitions {
            prefill(&filler, 0, &mut pool)?;
            let start = Instant::now();
            prefill(&tokens[..prompt], depth, &mut pool)?;
            pp.push(prompt as f64 / start.elapsed().as_secs_f64());
            let start = Instant::now();
            for (i, token) in tokens[prompt..].iter().enumerate() {
                let step = SeqStep {
                    tokens: std::slice::from_ref(token),
                    start: depth + i,
                    blocks: &blocks,
                    want_logits: true,
                };
                model.forward(&mut pool, &[step])?;
            }
            tg.push(gen as f64 / start.elapsed().as_secs_f64());
        }
        Ok((model, pool, pp, tg))
    });
    let (model, pool, mut pp, mut tg) =
        passes.join().map_err(|_| anyhow::anyhow!("the benchmark's forward passes panicked"))??;
    let weight_bytes = model.weight_bytes() as f64;
    let peak = peak_resident_bytes();
    drop((pool, model));
    let bandwidth = read_bandwidth();
    let bound = bandwidth / weight_bytes;
    let tg_median = median(&mut tg);
    println!("model:             {}", args.model.display());
    println!("threads:           {}", hearth_models::inference_threads());
    let at_depth = if depth > 0 { format!(" @ d{depth}") } else { String::new() };
    println!("pp{:<5}            {:.1} tok/s (median of {}){at_depth}", prompt, median(&mut pp), pp.len());
    println!("tg{:<5}            {:.1} tok/s (median of {}){at_depth}", gen, tg_median, tg.len());
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
    if args.by_format {
        let (formats, plain) = format_rates(&file, args.weights.into(), 5)?;
        println!("decode's matmuls by weight format (one row; best of 5, interleaved with a plain read):");
        for rate in formats {
            let rate_gbs = rate.bytes as f64 / rate.seconds / 1e9;
            println!(
                "  {:<6} {:>8.1} MB  {rate_gbs:>5.1} GB/s ({:.0}% of the plain read)",
                rate.format.to_string(),
                rate.bytes as f64 / 1e6,
                100.0 * rate_gbs / (plain / 1e9)
            );
        }
        println!("  plain read         {:>5.1} GB/s", plain / 1e9);
    }
    Ok(())
}

/// The matrices a decode step multiplies, grouped by weight format: every 2-D tensor, except a token
/// embedding that a separate output head leaves to lookups.
fn decode_matrices(file: &GgufFile) -> Vec<(TensorType, Vec<String>)> {
    let head = file.has_tensor("output.weight");
    let mut groups: Vec<(TensorType, Vec<String>)> = Vec::new();
    for info in file.header().tensor_infos() {
        if info.shape().len() != 2 || (head && info.name == "token_embd.weight") {
            continue;
        }
        match groups.iter_mut().find(|(format, _)| *format == info.dtype) {
            Some((_, names)) => names.push(info.name.to_string()),
            None => groups.push((info.dtype, vec![info.name.to_string()])),
        }
    }
    groups
}

/// One weight format's share of a decode step: its matrices' bytes and the best time of one pass over them.
struct FormatRate {
    format: TensorType,
    bytes: usize,
    seconds: f64,
}

/// Times one-row products over each format's decode matrices, each read and packed as the model packs it
/// (but run alone, where the model stacks Q, K, V and gate, up of one format), and the plain read,
/// `passes` times in turn; returns the best of each (the plain read in bytes per second).
fn format_rates(file: &GgufFile, weights: WeightFormat, passes: usize) -> anyhow::Result<(Vec<FormatRate>, f64)> {
    let groups = decode_matrices(file)
        .into_iter()
        .map(|(format, names)| {
            let matrices = names.iter().map(|name| Matrix::read(file, name, weights)).collect::<Result<Vec<_>, _>>()?;
            Ok((format, matrices))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let inputs: Vec<Vec<Vec<f32>>> = groups
        .iter()
        .map(|(_, matrices)| matrices.iter().map(|m| (0..m.cols()).map(|i| (i % 7) as f32 - 3.0).collect()).collect())
        .collect();
    let mut rates: Vec<FormatRate> = groups
        .iter()
        .map(|(format, matrices)| FormatRate {
            format: *format,
            bytes: matrices.iter().map(Matrix::bytes).sum(),
            seconds: f64::MAX,
        })
        .collect();
    let data = vec![1u64; 64 << 20];
    let mut plain = 0.0f64;
    for _ in 0..passes.max(1) {
        for (rate, ((_, matrices), inputs)) in rates.iter_mut().zip(groups.iter().zip(&inputs)) {
            let start = Instant::now();
            for (matrix, x) in matrices.iter().zip(inputs) {
                std::hint::black_box(matrix.matmul(x));
            }
            rate.seconds = rate.seconds.min(start.elapsed().as_secs_f64());
        }
        plain = plain.max(read_pass(&data));
    }
    Ok((rates, plain))
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
    (0..3).map(|_| read_pass(&data)).fold(0.0, f64::max)
}

/// Bytes per second of one read through `data`, split between the inference threads.
fn read_pass(data: &[u64]) -> f64 {
    let part = data.len().div_ceil(hearth_models::inference_threads().max(1));
    let start = Instant::now();
    let sum: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = data.chunks(part).map(|chunk| scope.spawn(move || sum_words(chunk))).collect();
        workers.into_iter().map(|w| w.join().expect("bandwidth thread")).fold(0, u64::wrapping_add)
    });
    std::hint::black_box(sum);
    std::mem::size_of_val(data) as f64 / start.elapsed().as_secs_f64()
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
    use super::{decode_matrices, format_rates, peak_resident_bytes, run, BenchModelArgs};
    use candle_core::quantized::GgmlDType;
    use hearth_models::gguf::TensorType;
    use hearth_models::tiny::{write_llama_with, TinySpec};
    use hearth_models::{GgufFile, WeightFormat};

    #[test]
    fn formats_cover_the_matrices_a_decode_step_reads() {
        let dir = std::env::temp_dir().join(format!("hearth-bench-formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (head_scale, embedding_read) in [(None, true), (Some(0.5), false)] {
            let spec = TinySpec { dim: 256, ffn: 512, weights: GgmlDType::Q4K, head_scale, ..TinySpec::default() };
            let file = GgufFile::open(&write_llama_with(&dir, 7, spec, "k.gguf").unwrap()).unwrap();
            let groups = decode_matrices(&file);
            let names: Vec<&String> = groups.iter().flat_map(|(_, names)| names).collect();
            assert_eq!(names.iter().any(|n| *n == "token_embd.weight"), embedding_read, "head {head_scale:?}");
            assert!(names.iter().all(|n| !n.contains("norm")), "norms are not matrices: {names:?}");
            assert!(groups.iter().any(|(format, names)| *format == TensorType::Q4_K && names.len() >= 14));
            let (rates, plain) = format_rates(&file, WeightFormat::AsStored, 1).unwrap();
            assert_eq!(rates.len(), groups.len());
            for (rate, (format, names)) in rates.iter().zip(&groups) {
                let stored = |n: &String| {
                    let info = file.tensor_info(n).unwrap();
                    let &[rows, cols] = info.shape() else { panic!("{n} is a matrix") };
                    rows * info.dtype.bytes_for(cols as u64).unwrap() as usize
                };
                let bytes: usize = names.iter().map(stored).sum();
                assert_eq!((rate.format, rate.bytes), (*format, bytes));
                assert!(rate.seconds > 0.0 && rate.seconds < 10.0, "{format}: {} s", rate.seconds);
            }
            assert!(plain > 0.0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_depth_within_the_context_runs_and_one_past_it_is_refused() {
        let dir = std::env::temp_dir().join(format!("hearth-bench-depth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = TinySpec { dim: 256, ffn: 512, weights: GgmlDType::Q4K, ..TinySpec::default() };
        let model = write_llama_with(&dir, 3, spec, "d.gguf").unwrap();
        let args = |depth| BenchModelArgs {
            model: model.clone(),
            prompt: 8,
            gen: 4,
            batch: 8,
            depth,
            repetitions: 1,
            threads: 0,
            weights: crate::config::Weights::AsStored,
            by_format: false,
        };
        run(&args(40)).expect("a depth within the context");
        let error = run(&args(hearth_models::tiny::CONTEXT)).expect_err("a depth past the context").to_string();
        assert!(error.contains("past the model's context"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
