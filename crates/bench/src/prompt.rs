//! Synthetic prompts of a known approximate token length.
//!
//! Every word in [`WORDS`] is a common lowercase English word written with a leading space. GPT-2-style byte-level BPE
//! vocabularies (SmolLM, Llama 3, Qwen) split text into pre-tokens of the form ` word` and hold each of these as one
//! token, so a prompt of N words is close to N tokens. The report still uses the server's own prompt token count.

/// The vocabulary prompts are drawn from; each entry is one BPE token in GPT-2-style vocabularies.
const WORDS: [&str; 100] = [
    " the",
    " apple",
    " river",
    " house",
    " water",
    " light",
    " green",
    " stone",
    " table",
    " chair",
    " window",
    " garden",
    " music",
    " paper",
    " story",
    " city",
    " road",
    " night",
    " morning",
    " day",
    " year",
    " world",
    " school",
    " family",
    " friend",
    " money",
    " power",
    " market",
    " number",
    " people",
    " place",
    " point",
    " group",
    " problem",
    " question",
    " company",
    " system",
    " program",
    " office",
    " country",
    " state",
    " government",
    " service",
    " street",
    " church",
    " island",
    " door",
    " field",
    " party",
    " month",
    " book",
    " game",
    " line",
    " name",
    " side",
    " team",
    " car",
    " food",
    " land",
    " home",
    " room",
    " hand",
    " eye",
    " head",
    " heart",
    " voice",
    " fire",
    " tree",
    " bird",
    " horse",
    " ship",
    " train",
    " bridge",
    " summer",
    " winter",
    " spring",
    " blue",
    " red",
    " white",
    " black",
    " small",
    " large",
    " long",
    " short",
    " happy",
    " quiet",
    " simple",
    " early",
    " late",
    " open",
    " walk",
    " run",
    " read",
    " write",
    " build",
    " bring",
    " carry",
    " think",
    " learn",
    " play",
];

/// Domain tag that separates the shared-prefix random stream from the per-request streams.
const SHARED_PREFIX_STREAM: u64 = 0x5348_4152_4544_5052;

/// Builds the prompt text of every request in a run.
///
/// The first `shared_prefix_words` words are the same for every request (a stand-in for a shared system prompt that
/// prefix caching can reuse); the rest are drawn from a generator seeded with `(seed, request index)`, so reruns with
/// the same seed send byte-identical prompts.
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    seed: u64,
    total_words: usize,
    shared_prefix: String,
    shared_prefix_words: usize,
}

impl PromptBuilder {
    /// A builder for prompts of `total_words` words whose first `shared_prefix_words` words are shared.
    ///
    /// `shared_prefix_words` is clamped to `total_words`.
    pub fn new(seed: u64, total_words: usize, shared_prefix_words: usize) -> Self {
        let shared_prefix_words = shared_prefix_words.min(total_words);
        let mut rng = SplitMix64::new(mix(seed) ^ SHARED_PREFIX_STREAM);
        let shared_prefix = random_words(&mut rng, shared_prefix_words);
        Self { seed, total_words, shared_prefix, shared_prefix_words }
    }

    /// The prompt text of request number `index`.
    pub fn prompt(&self, index: u64) -> String {
        let mut rng = SplitMix64::new(mix(self.seed) ^ mix(index.wrapping_add(1)));
        let mut text = self.shared_prefix.clone();
        text.push_str(&random_words(&mut rng, self.total_words - self.shared_prefix_words));
        text
    }
}

fn random_words(rng: &mut SplitMix64, count: usize) -> String {
    (0..count).map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]).collect()
}

/// Steele, Lea and Flood's SplitMix64: tiny, fast, and good enough to pick words.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }
}

/// SplitMix64's output finalizer; also used to decorrelate seeds before combining them.
fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        text.split(' ').skip(1).collect()
    }

    #[test]
    fn every_word_is_a_distinct_lowercase_word_with_one_leading_space() {
        for word in WORDS {
            let rest = word.strip_prefix(' ').expect("leading space");
            assert!(!rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase()), "{word:?}");
        }
        let distinct: std::collections::HashSet<_> = WORDS.iter().collect();
        assert_eq!(distinct.len(), WORDS.len());
    }

    #[test]
    fn prompt_has_the_requested_word_count() {
        let builder = PromptBuilder::new(7, 128, 32);
        for index in 0..5 {
            let text = builder.prompt(index);
            assert!(text.starts_with(' '));
            assert_eq!(words(&text).len(), 128);
        }
    }

    #[test]
    fn shared_prefix_is_identical_and_remainder_differs() {
        let builder = PromptBuilder::new(3, 64, 40);
        let first = builder.prompt(0);
        let second = builder.prompt(1);
        let (first, second) = (words(&first), words(&second));
        assert_eq!(first[..40], second[..40]);
        assert_ne!(first[40..], second[40..]);
    }

    #[test]
    fn prompts_are_reproducible_per_seed() {
        assert_eq!(PromptBuilder::new(9, 50, 10).prompt(4), PromptBuilder::new(9, 50, 10).prompt(4));
        assert_ne!(PromptBuilder::new(9, 50, 0).prompt(4), PromptBuilder::new(10, 50, 0).prompt(4));
    }

    #[test]
    fn without_shared_prefix_prompts_differ_from_the_first_word_on() {
        let builder = PromptBuilder::new(0, 16, 0);
        assert_ne!(builder.prompt(0), builder.prompt(1));
    }

    #[test]
    fn shared_prefix_longer_than_prompt_is_clamped() {
        let builder = PromptBuilder::new(0, 8, 20);
        assert_eq!(words(&builder.prompt(0)).len(), 8);
        assert_eq!(builder.prompt(0), builder.prompt(1));
    }
}
