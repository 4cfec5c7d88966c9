//! The GGUF header parser against untrusted files, in one test binary with a counting global allocator
//! (so that no other test pays for it).
//!
//! - `fuzz`: a seeded, structure-aware fuzzer that runs on stable Rust: real headers mutated (`mutate`)
//!   and hostile headers generated (`generate`), parsed in memory; none may panic or make the parser
//!   allocate more than its length plus `alloc::SLACK`.
//! - `hostile`: the committed corpus of hostile files, each refused with its reason.
//! - `large`: a large matrix is read a slice at a time, its peak heap near its own size.
//! - `alloc`: the counting allocator; `writer`: GGUF bytes field by field.

mod alloc;
mod fuzz;
mod generate;
mod hostile;
mod large;
mod mutate;
mod writer;
