//! Which tokens run in the next step: a pure function of the running sequences and a token budget.
//!
//! Decodes go first, one token each, so a long prompt never stalls the streams already running.
//! Prompts then fill the remaining budget in arrival order, split across steps when they do not fit.

/// What the scheduler needs to know about one running sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqLoad {
    /// Tokens known (prompt + generated) but not yet in the KV cache.
    pub pending: usize,
    /// Whether the prompt is fully in the cache (the sequence is decoding).
    pub decoding: bool,
}

/// Tokens each running sequence runs this step, by position in the input; 0 means it waits.
pub fn plan(running: &[SeqLoad], budget: usize) -> Vec<usize> {
    let mut left = budget;
    let mut take = vec![0; running.len()];
    for (i, seq) in running.iter().enumerate() {
        if seq.decoding && seq.pending > 0 && left > 0 {
            take[i] = 1;
            left -= 1;
        }
    }
    for (i, seq) in running.iter().enumerate() {
        if !seq.decoding && left > 0 {
            take[i] = seq.pending.min(left);
            left -= take[i];
        }
    }
    take
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefill(pending: usize) -> SeqLoad {
        SeqLoad { pending, decoding: false }
    }
    const DECODE: SeqLoad = SeqLoad { pending: 1, decoding: true };

    #[test]
    fn decodes_first_then_prompts_in_order() {
        assert_eq!(plan(&[prefill(40), DECODE, prefill(30), DECODE], 64), [40, 1, 22, 1]);
    }

    #[test]
    fn a_long_prompt_is_split_across_steps() {
        assert_eq!(plan(&[prefill(1000)], 256), [256]);
        assert_eq!(plan(&[prefill(1000), DECODE, DECODE], 256), [254, 1, 1]);
    }

    #[test]
    fn everything_fits_when_the_budget_allows() {
        assert_eq!(plan(&[prefill(3), prefill(5), DECODE], 512), [3, 5, 1]);
    }

    #[test]
    fn budget_smaller_than_decodes_leaves_the_rest_waiting() {
        assert_eq!(plan(&[DECODE, DECODE, DECODE, prefill(4)], 2), [1, 1, 0, 0]);
    }
}
