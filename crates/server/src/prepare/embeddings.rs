//! `/v1/embeddings` inputs as token ids, within the model's and the request's limits.

use hearth_protocol::Prompt;
use hearth_text::TokenizerError;

use super::{limits, token_ids};
use crate::error::ApiError;
use crate::model::ServedEmbedder;

/// Each input of an embedding request as token ids, every one non-empty and within the model's limit,
/// and all of them within [`limits::MAX_EMBEDDING_TOKENS`].
pub fn embedding_inputs(input: &Prompt, model: &ServedEmbedder) -> Result<Vec<Vec<u32>>, ApiError> {
    use limits::{MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_TOKENS};
    let limit = model.worker.info().max_tokens;
    let vocab = model.tokenizer.vocab_size();
    let count = match input {
        Prompt::Text(_) | Prompt::Tokens(_) => 1,
        Prompt::Texts(texts) => texts.len(),
        Prompt::TokenLists(lists) => lists.len(),
    };
    if count == 0 || count > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("`input` must hold 1 to {MAX_EMBEDDING_INPUTS} inputs, got {count}"),
        ));
    }
    let too_long = |i: usize, tokens: String| {
        ApiError::Invalid {
        message: format!(
            "This model's maximum context length is {limit} tokens, however input {i} has {tokens} tokens. Please reduce the length of the input."
        ),
        param: Some("input".into()),
        code: Some("context_length_exceeded"),
    }
    };
    let encode = |i: usize, text: &String| {
        if text.is_empty() {
            return Err(ApiError::invalid("input", "`input` must not contain empty strings"));
        }
        model.tokenizer.encode_within(text, limit).map_err(|e| match e {
            TokenizerError::TooLong { at_least, .. } => too_long(i, format!("at least {at_least}")),
            TokenizerError::Uncut { .. } => ApiError::invalid("input", format!("input {i}: {e}")),
            e => ApiError::Internal(e.to_string()),
        })
    };
    let ids = |ids: &Vec<i64>| token_ids("input", ids, vocab);
    let (mut inputs, mut total) = (Vec::with_capacity(count), 0usize);
    for i in 0..count {
        let tokens = match input {
            Prompt::Text(text) => encode(i, text)?,
            Prompt::Texts(texts) => encode(i, &texts[i])?,
            Prompt::Tokens(tokens) => ids(tokens)?,
            Prompt::TokenLists(lists) => ids(&lists[i])?,
        };
        if tokens.is_empty() {
            return Err(ApiError::invalid("input", format!("input {i} has no tokens")));
        }
        if tokens.len() > limit {
            return Err(too_long(i, tokens.len().to_string()));
        }
        total += tokens.len();
        if total > MAX_EMBEDDING_TOKENS {
            return Err(ApiError::invalid(
                "input",
                format!(
                    "the inputs may hold at most {MAX_EMBEDDING_TOKENS} tokens together; the first {} hold {total}",
                    i + 1
                ),
            ));
        }
        inputs.push(tokens);
    }
    Ok(inputs)
}
