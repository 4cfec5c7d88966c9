//! Unit tests of [`Tokenizer`] on tiny hand-made vocabularies; tests/tokenizers.rs checks the real
//! Gemma and SmolLM2 vocabularies against llama.cpp.

use super::*;

fn prompt(text: &str, content_spans: Vec<std::ops::Range<usize>>) -> RenderedPrompt {
    RenderedPrompt { text: text.to_string(), content_spans }
}

/// GPT-2's printable stand-in for byte `b`.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable(b) {
        return char::from(b);
    }
    char::from_u32(256 + (0..b).filter(|&x| !printable(x)).count() as u32).unwrap()
}

/// A byte-level vocabulary: the 256 byte characters, then a few merges and specials.
fn bpe_vocab(pre: Option<&str>) -> GgufVocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(["he", "ll", "llo", "<|im_end|>"].map(String::from));
    let mut token_types = vec![TokenType::Normal; tokens.len()];
    token_types[259] = TokenType::Control;
    GgufVocab {
        model: "gpt2".into(),
        pre: pre.map(String::from),
        tokens,
        token_types,
        merges: ["h e", "l l", "ll o"].map(String::from).to_vec(),
        bos: Some(259),
        eos: Some(259),
        ..GgufVocab::default()
    }
}

#[test]
fn unknown_pre_tokenizers_are_start_up_errors() {
    let err = Tokenizer::from_gguf(&bpe_vocab(Some("made-up"))).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedPre(ref name) if name == "made-up"), "{err}");
    assert!(err.to_string().contains("llama-bpe"), "the message lists what is supported: {err}");
    let err = Tokenizer::from_gguf(&GgufVocab { model: "t5".into(), ..bpe_vocab(None) }).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedModel(_)), "{err}");
}

#[test]
fn bpe_defaults_depend_on_the_pre_tokenizer() {
    let t = Tokenizer::from_gguf(&bpe_vocab(Some("llama-bpe"))).unwrap();
    assert_eq!(t.encode_completion_prompt("hello").unwrap(), [259, 256, 258], "Llama 3 adds BOS");
    let t = Tokenizer::from_gguf(&bpe_vocab(Some("qwen2"))).unwrap();
    assert_eq!(t.encode_completion_prompt("hello").unwrap(), [256, 258]);
    assert_eq!(t.encode_text("don't").unwrap().len(), 5);
}

#[test]
fn end_of_generation_texts_are_control_tokens_whatever_their_type() {
    let mut vocab = bpe_vocab(Some("qwen2"));
    vocab.tokens[258] = "<end_of_turn>".into(); // an ordinary token in the file
    vocab.merges.pop();
    vocab.eot = Some(257);
    let t = Tokenizer::from_gguf(&vocab).unwrap();
    assert_eq!(t.end_of_generation(), [259, 257, 258]);
    assert!(t.is_control(258) && t.is_control(259) && !t.is_control(256));
    assert_eq!(t.encode_with_control("he<end_of_turn>").unwrap(), [256, 258]);
    assert_ne!(t.encode_text("<end_of_turn>").unwrap(), [258]);
}

#[test]
fn chat_prompts_get_one_bos_and_control_tokens_only_outside_content() {
    let mut vocab = bpe_vocab(Some("qwen2"));
    vocab.add_bos = Some(true);
    vocab.tokens[258] = "<s>".into();
    vocab.token_types[258] = TokenType::Control;
    vocab.merges.pop();
    vocab.bos = Some(258);
    let t = Tokenizer::from_gguf(&vocab).unwrap();
    // The template wrote `<s>` itself: no second BOS (llama.cpp strips the text and adds BOS).
    let content = 8..18;
    let p = prompt("<s>hello<|im_end|>", vec![content]);
    assert_eq!(t.encode_prompt(&p).unwrap()[..4], [258, 256, 257, b'o' as u32]);
    assert_eq!(t.encode_prompt(&p).unwrap().len(), 4 + 10, "content's `<|im_end|>` stays text");
    assert_eq!(t.encode_prompt(&prompt("x", vec![])).unwrap(), [258, b'x' as u32]);
}

/// A SentencePiece vocabulary: specials, byte tokens, and scored pieces.
fn spm_vocab(add_space_prefix: Option<bool>) -> GgufVocab {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<start>", "<b>"].map(String::from).to_vec();
    let mut token_types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Control];
    token_types.push(TokenType::UserDefined);
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(TokenType::Byte);
    }
    // Ids 261.. : scores make "▁hello" form through "he", "ll", "hell"; "▁" alone is a token too.
    let pieces = [("▁", -1.0), ("h", -2.0), ("e", -2.0), ("l", -2.0), ("o", -2.0), ("he", -3.0), ("ll", -3.5)];
    let pieces = pieces.iter().chain(&[("hell", -4.0), ("hello", -4.5), ("▁hello", -5.0), ("x", -2.0)]);
    let mut scores = vec![0.0; tokens.len()];
    for &(text, score) in pieces {
        tokens.push(text.to_string());
        token_types.push(TokenType::Normal);
        scores.push(score);
    }
    GgufVocab {
        model: "llama".into(),
        tokens,
        token_types,
        scores,
        bos: Some(1),
        eos: Some(2),
        unknown: Some(0),
        add_space_prefix,
        ..GgufVocab::default()
    }
}

const HELLO: u32 = 270; // "▁hello"
const SPACE: u32 = 261; // "▁"
const X: u32 = 271;

fn byte(b: u8) -> u32 {
    5 + b as u32
}

#[test]
fn spm_adds_a_space_prefix_at_the_start_and_after_special_tokens() {
    let t = Tokenizer::from_gguf(&spm_vocab(None)).unwrap();
    assert_eq!(t.encode_text("hello").unwrap(), [HELLO], "the default for llama vocabularies adds the prefix");
    assert_eq!(t.encode_with_control("<start>hello<b>x").unwrap(), [3, HELLO, 4, SPACE, X]);
    // User text keeps control-token text as text, but user-defined tokens always match.
    assert_eq!(t.encode_text("<start>").unwrap()[..2], [SPACE, byte(b'<')]);
    let t = Tokenizer::from_gguf(&spm_vocab(Some(false))).unwrap();
    assert_eq!(t.encode_text("hello").unwrap(), [269]);
    assert_eq!(t.encode_text(" hello").unwrap(), [HELLO]);
}

#[test]
fn spm_falls_back_to_bytes_and_decodes_them() {
    let t = Tokenizer::from_gguf(&spm_vocab(Some(false))).unwrap();
    let ids = t.encode_text("hé\n").unwrap();
    assert_eq!(ids, [262, byte(0xC3), byte(0xA9), byte(b'\n')]);
    assert_eq!(t.decode(&ids).unwrap(), "hé\n");
    assert_eq!(t.token_bytes(byte(b'\n')), b"\n");
    assert_eq!(t.token_bytes(HELLO), b" hello");
    assert_eq!(t.token_bytes(3), b"<start>", "control tokens stand for their text");
    assert_eq!(t.decode(&[1, HELLO, 3, 2]).unwrap(), " hello", "control tokens are not text");
    assert!(t.is_control(0) && t.is_control(3) && !t.is_control(4) && !t.is_control(HELLO));
}

#[test]
fn spm_defaults_follow_llama_cpp() {
    let t = Tokenizer::from_gguf(&spm_vocab(None)).unwrap();
    assert_eq!(t.encode_completion_prompt("x").unwrap(), [1, SPACE, X], "BOS added by default");
    let mut vocab = spm_vocab(None);
    vocab.add_bos = Some(false);
    vocab.add_eos = Some(true);
    let t = Tokenizer::from_gguf(&vocab).unwrap();
    assert_eq!(t.encode_completion_prompt("x").unwrap(), [SPACE, X, 2]);
    assert_eq!(t.end_of_generation(), [2], "EOS, and `</s>` by its text");
}

#[test]
fn spm_chat_prompts_get_one_bos_and_a_space_prefix_only_after_special_tokens() {
    let t = Tokenizer::from_gguf(&spm_vocab(None)).unwrap();
    // The template wrote `<s>` itself: no second BOS (llama.cpp strips the text and adds BOS).
    let content = 15..22;
    let p = prompt("<s><start>hello<start>", vec![content]);
    assert_eq!(t.encode_prompt(&p).unwrap()[..3], [1, 3, HELLO]);
    assert_eq!(t.encode_prompt(&p).unwrap()[3], byte(b'<'), "content's `<start>` stays text, unprefixed");
    let p = prompt("<start>x", vec![]);
    assert_eq!(t.encode_prompt(&p).unwrap(), [1, 3, SPACE, X]);
}

#[test]
fn phi3_special_tokens_swallow_the_whitespace_after_them() {
    let mut vocab = spm_vocab(Some(false));
    vocab.name = Some("Phi 3 Mini".into());
    assert_eq!(Tokenizer::from_gguf(&vocab).unwrap().encode_with_control("<start>\n x").unwrap()[1], byte(b'\n'));
    vocab.name = Some("Phi-3 Mini".into());
    let t = Tokenizer::from_gguf(&vocab).unwrap();
    assert_eq!(t.encode_with_control("<start>\n x").unwrap(), [3, X]);
    assert_eq!(t.encode_with_control("<s> x").unwrap(), [1, SPACE, X], "`<s>` keeps its whitespace");
}

#[test]
fn a_text_longer_than_the_limit_stops_early() {
    let t = Tokenizer::from_gguf(&bpe_vocab(Some("qwen2"))).unwrap();
    // The longest token, `<|im_end|>`, stands for 10 bytes: 1,000 bytes are at least 100 tokens.
    let err = t.encode_with_control_within(&"x".repeat(1_000), 99).unwrap_err();
    assert!(matches!(err, TokenizerError::TooLong { limit: 99, at_least: 100 }), "{err}");
    // Within the byte bound the text is encoded chunk by chunk and abandoned after the chunk that passes.
    let text = "hello world ".repeat(10_000);
    let all = t.encode_text(&text).unwrap().len();
    match t.encode_completion_prompt_within(&text, 1_000).unwrap_err() {
        TokenizerError::TooLong { limit: 1_000, at_least } => assert!(at_least > 1_000 && at_least < all / 2),
        other => panic!("{other}"),
    }
    assert_eq!(t.encode_completion_prompt_within(&text, all).unwrap().len(), all);
}

#[test]
fn chunked_encoding_equals_whole_encoding() {
    // Longer than a chunk, with cuts of every kind and none: both algorithms give the tokens of the whole.
    let unit = "hello world\nhe said: 'hello'  12345 héllo\tworld!! ";
    let text = format!("{}{}", unit.repeat(400), "x".repeat(20_000));
    for vocab in [bpe_vocab(Some("smollm")), bpe_vocab(None)] {
        let t = Tokenizer::from_gguf(&vocab).unwrap();
        let whole = t.encode_text(&text).unwrap();
        let pieces: Vec<u32> = text.split_inclusive('\n').flat_map(|line| t.encode_text(line).unwrap()).collect();
        assert_eq!(whole, pieces, "every newline before a letter is also a word boundary");
    }
}
