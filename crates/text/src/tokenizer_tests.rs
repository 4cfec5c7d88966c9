//! Unit tests of [`Tokenizer`] on tiny hand-made vocabularies.

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
