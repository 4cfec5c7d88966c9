//! What runs in the next step: a pure function of the running and waiting sequences, the free KV blocks
//! and a token budget.
//!
//! Decodes go first, one token each, oldest first; one that needs a new block and finds none preempts the
//! newest running sequence (possibly itself), whose blocks return to the pool and whose tokens are
//! recomputed later. Prompts already running then fill the remaining budget in arrival order, split across
//! steps when they do not fit. Waiting requests are admitted strictly in arrival order (a long prompt is
//! never overtaken by shorter ones) once every block of their prompt is available, and never in a step
//! that had to preempt.

/// What the scheduler needs to know about one running sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqLoad {
    /// Tokens known (prompt + generated) but not yet in the KV cache.
    pub pending: usize,
    /// Whether the prompt is fully in the cache (the sequence is decoding).
    pub decoding: bool,
    /// Whether its next decode token starts a new block.
    pub needs_block: bool,
    /// Blocks that return to the pool if it is preempted (those no other sequence holds).
    pub freeable: usize,
}

/// What the scheduler needs to know about one waiting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingLoad {
    /// Tokens to compute: the prompt minus its cached prefix.
    pub tokens: usize,
    /// Blocks admission takes from the pool (new blocks, plus idle cached ones it reuses).
    pub blocks: usize,
    /// Sequences it runs as (its `n`).
    pub seqs: usize,
}

/// The limits of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Most tokens in the step.
    pub budget: usize,
    /// Most sequences running.
    pub max_running: usize,
    /// Blocks `allocate` can hand out.
    pub available_blocks: usize,
}

/// The decisions for one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Running sequences to preempt, by position in the input.
    pub preempt: Vec<usize>,
    /// Tokens each running sequence computes this step, by position (0 for waiting or preempted ones).
    pub take: Vec<usize>,
    /// Tokens each admitted request computes this step, for the first `admit.len()` waiting requests.
    pub admit: Vec<usize>,
}

/// Plans one step.
pub fn plan(running: &[SeqLoad], waiting: &[WaitingLoad], limits: StepLimits) -> Plan {
    let mut plan = Plan { take: vec![0; running.len()], ..Plan::default() };
    let mut budget = limits.budget;
    let mut available = limits.available_blocks;
    let mut preempted = vec![false; running.len()];
    for i in 0..running.len() {
        let seq = running[i];
        if preempted[i] || !seq.decoding || seq.pending == 0 || budget == 0 {
            continue;
        }
        if seq.needs_block {
            while available == 0 {
                // The newest sequence not yet preempted; never older than `i`, which has not been.
                let Some(victim) = (i..running.len()).rev().find(|&j| !preempted[j]) else { break };
                preempted[victim] = true;
                plan.preempt.push(victim);
                available += running[victim].freeable;
                if victim == i {
                    break;
                }
            }
            if preempted[i] {
                continue;
            }
            available -= 1;
        }
        plan.take[i] = 1;
        budget -= 1;
    }
    for (i, seq) in running.iter().enumerate() {
        if !preempted[i] && !seq.decoding && budget > 0 {
            plan.take[i] = seq.pending.min(budget);
            budget -= plan.take[i];
        }
    }
    if !plan.preempt.is_empty() {
        return plan;
    }
    let mut seqs = running.len();
    for w in waiting {
        let fits_seqs = seqs == 0 || seqs + w.seqs <= limits.max_running;
        if !fits_seqs || w.blocks > available || budget == 0 {
            break;
        }
        let take = w.tokens.min(budget);
        plan.admit.push(take);
        budget -= take;
        available -= w.blocks;
        seqs += w.seqs;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefill(pending: usize) -> SeqLoad {
        SeqLoad { pending, decoding: false, needs_block: false, freeable: 4 }
    }
    const DECODE: SeqLoad = SeqLoad { pending: 1, decoding: true, needs_block: false, freeable: 2 };
    const GROWING: SeqLoad = SeqLoad { needs_block: true, ..DECODE };

    fn limits(budget: usize, available_blocks: usize) -> StepLimits {
        StepLimits { budget, max_running: 16, available_blocks }
    }

    fn waiting(tokens: usize, blocks: usize) -> WaitingLoad {
        WaitingLoad { tokens, blocks, seqs: 1 }
    }

    #[test]
    fn decodes_first_then_prompts_in_order() {
        let p = plan(&[prefill(40), DECODE, prefill(30), DECODE], &[], limits(64, 10));
        assert_eq!(p.take, [40, 1, 22, 1]);
        assert!(p.preempt.is_empty());
    }

    #[test]
    fn a_long_prompt_is_split_across_steps() {
        assert_eq!(plan(&[prefill(1000)], &[], limits(256, 0)).take, [256]);
        assert_eq!(plan(&[prefill(1000), DECODE, DECODE], &[], limits(256, 0)).take, [254, 1, 1]);
    }

    #[test]
    fn budget_smaller_than_decodes_leaves_the_rest_waiting() {
        assert_eq!(plan(&[DECODE, DECODE, DECODE, prefill(4)], &[], limits(2, 5)).take, [1, 1, 0, 0]);
    }

    #[test]
    fn a_decode_that_needs_a_block_takes_one() {
        let p = plan(&[GROWING, GROWING], &[], limits(8, 2));
        assert_eq!((p.take, p.preempt), (vec![1, 1], vec![]));
    }

    #[test]
    fn without_a_free_block_the_newest_sequence_is_preempted() {
        // Three decoders, one free block; the first two need blocks: the second takes the last free block
        // only after the newest (index 2) is preempted and returns its 2 blocks.
        let p = plan(&[GROWING, GROWING, DECODE], &[waiting(3, 1)], limits(8, 1));
        assert_eq!(p.preempt, [2]);
        assert_eq!(p.take, [1, 1, 0]);
        assert!(p.admit.is_empty(), "no admission in a step that preempts");
    }

    #[test]
    fn the_newest_preempts_itself_when_nothing_newer_is_left() {
        let p = plan(&[DECODE, GROWING], &[], limits(8, 0));
        assert_eq!((p.preempt, p.take), (vec![1], vec![1, 0]));
    }

    #[test]
    fn preempting_a_prompt_in_progress_frees_its_budget_share() {
        let p = plan(&[GROWING, prefill(50)], &[], limits(16, 0));
        assert_eq!((p.preempt, p.take), (vec![1], vec![1, 0]));
    }

    #[test]
    fn admission_waits_for_every_prompt_block() {
        let p = plan(&[DECODE], &[waiting(100, 7), waiting(5, 1)], limits(64, 6));
        assert!(p.admit.is_empty(), "the head does not fit, and nobody overtakes it");
        let p = plan(&[DECODE], &[waiting(100, 6), waiting(5, 1)], limits(64, 6));
        assert_eq!(p.admit, [63], "admitted with the budget left after the decode");
    }

    #[test]
    fn admission_respects_max_running_counting_every_choice() {
        let many = WaitingLoad { tokens: 10, blocks: 1, seqs: 4 };
        let p = plan(&[DECODE; 13], &[many], StepLimits { budget: 64, max_running: 16, available_blocks: 10 });
        assert!(p.admit.is_empty());
        let p = plan(
            &[DECODE; 12],
            &[many, waiting(1, 1)],
            StepLimits { budget: 64, max_running: 16, available_blocks: 10 },
        );
        assert_eq!(p.admit, [10], "4 more choices fit exactly; the next request must wait");
        let p = plan(&[], &[WaitingLoad { seqs: 20, ..many }], limits(64, 10));
        assert_eq!(p.admit, [10], "an empty batch always takes the head, whatever its n");
    }

    #[test]
    fn short_prompts_do_not_starve_a_long_one() {
        // The long prompt at the head gets admitted as soon as its blocks are there, and then gets the
        // budget left after decodes ahead of later arrivals.
        let p = plan(&[DECODE, prefill(2000)], &[waiting(8, 1)], limits(256, 10));
        assert_eq!(p.take, [1, 255]);
        assert!(p.admit.is_empty(), "no budget left for the newcomer");
    }
}
