//! A large quantized matrix read from a file ([`Matrix::read`]) is read and packed a slice at a time, so
//! loading it never holds the file's copy of the whole tensor beside the packed one.

use hearth_models::quant::{Matrix, SLICE_BYTES};
use hearth_models::{GgufFile, WeightFormat};

use super::alloc::peak_while;
use super::writer::{self, Q4_K, Q8_0};

#[test]
fn a_large_matrix_is_read_within_its_size_and_a_few_slices() {
    let dir = std::env::temp_dir().join(format!("hearth-gguf-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 16384 × 2048 weights: 35.7 MB in Q8_0, 18.9 MB in Q4_K; several slices each.
    let shape: &[u64] = &[2048, 16384];
    let path = dir.join("large.gguf");
    std::fs::write(&path, writer::file(&[], &[("q8_0", shape, Q8_0), ("q4_k", shape, Q4_K)])).unwrap();
    let file = GgufFile::open(&path).unwrap();
    for name in ["q8_0", "q4_k"] {
        let (matrix, peak) = peak_while(None, || Matrix::read(&file, name, WeightFormat::AsStored).unwrap());
        let whole = Matrix::from_tensor(file.tensor(name).unwrap(), WeightFormat::AsStored).unwrap().repack();
        assert_eq!((matrix.rows(), matrix.cols(), matrix.bytes()), (whole.rows(), whole.cols(), whole.bytes()));
        let size = matrix.bytes();
        assert!(size > 4 * SLICE_BYTES, "{name}: {size} bytes is too small to read in slices");
        assert!(peak <= size + 3 * SLICE_BYTES, "{name}: reading {size} bytes of matrix held {peak} at the peak");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
