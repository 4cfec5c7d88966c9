//! Bounds on the request fields whose size drives memory or CPU, each answered with a 400 naming the
//! field. The body limit (4 MiB) bounds everything else; prompts are bounded by the context
//! (`Tokenizer::encode_*_within`), and `n` × `max_tokens` by `n` ≤ 16 and the context.

use hearth_protocol::{ChatCompletionRequest, SamplingOptions};
use serde_json::Value;

use crate::error::ApiError;

/// Most messages in one chat request (OpenAI's limit).
pub const MAX_MESSAGES: usize = 2048;
/// Most tools in one chat request (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Most bytes of one JSON schema written as compact JSON: a tool's `parameters` or `response_format`'s.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most `logit_bias` entries (OpenAI allows 300).
pub const MAX_LOGIT_BIAS: usize = 1024;
/// Most stop strings (OpenAI's limit).
pub const MAX_STOP: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 1024;
/// Most inputs in one embedding request (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Most tokens in all inputs of one embedding request together (OpenAI's limit).
pub const MAX_EMBEDDING_TOKENS: usize = 300_000;

/// Checks the counts and sizes of a chat request's messages, tools and schema.
pub fn chat(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    messages(req.messages.len())?;
    let tools = req.tools.as_deref().unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid("tools", format!("at most {MAX_TOOLS} tools are allowed, got {}", tools.len())));
    }
    for (i, tool) in tools.iter().enumerate() {
        if let Some(parameters) = &tool.function.parameters {
            schema(&format!("tools[{i}].function.parameters"), parameters)?;
        }
    }
    if let Some(schema_value) = req.response_format.as_ref().and_then(|f| f.json_schema.as_ref()?.schema.as_ref()) {
        schema("response_format", schema_value)?;
    }
    Ok(())
}

/// Checks the number of messages in a conversation.
pub fn messages(count: usize) -> Result<(), ApiError> {
    if count > MAX_MESSAGES {
        return Err(ApiError::invalid(
            "messages",
            format!("`messages` may hold at most {MAX_MESSAGES} messages, got {count}"),
        ));
    }
    Ok(())
}

/// Checks the sizes of the sampling fields both generation endpoints share.
pub fn sampling(opts: &SamplingOptions) -> Result<(), ApiError> {
    let bias = opts.logit_bias.as_ref().map_or(0, |b| b.len());
    if bias > MAX_LOGIT_BIAS {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("`logit_bias` may hold at most {MAX_LOGIT_BIAS} entries, got {bias}"),
        ));
    }
    Ok(())
}

/// Checks the stop strings: how many, none empty, none too long.
pub fn stop(stop: &[String]) -> Result<(), ApiError> {
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOP} stop sequences are allowed, got {}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop sequences must not be empty"));
    }
    if let Some(long) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid(
            "stop",
            format!("stop sequences may be at most {MAX_STOP_BYTES} bytes long, got one of {}", long.len()),
        ));
    }
    Ok(())
}

/// A 400 naming `param` when `value` is longer than [`MAX_SCHEMA_BYTES`] as compact JSON.
fn schema(param: &str, value: &Value) -> Result<(), ApiError> {
    let mut counter = ByteCounter { bytes: 0 };
    if serde_json::to_writer(&mut counter, value).is_err() {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` may be at most {MAX_SCHEMA_BYTES} bytes long as JSON"),
        ));
    }
    Ok(())
}

/// Counts written bytes and fails past [`MAX_SCHEMA_BYTES`], so a schema is never written out whole.
struct ByteCounter {
    bytes: usize,
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > MAX_SCHEMA_BYTES {
            return Err(std::io::Error::other("schema too long"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_measured_as_compact_json() {
        let small = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(schema("response_format", &small).is_ok());
        let big = serde_json::json!({"enum": vec!["x".repeat(100); 700]});
        let err = schema("tools[3].function.parameters", &big).unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("tools[3].function.parameters"));
    }

    #[test]
    fn stop_strings_are_bounded_in_number_and_length() {
        assert!(stop(&vec!["a".to_string(); 4]).is_ok());
        assert!(stop(&vec!["a".to_string(); 5]).is_err());
        assert!(stop(&[String::new()]).is_err());
        assert!(stop(&["a".repeat(MAX_STOP_BYTES)]).is_ok());
        assert!(stop(&["a".repeat(MAX_STOP_BYTES + 1)]).is_err());
    }
}
