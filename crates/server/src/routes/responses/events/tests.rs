use super::*;
use hearth_protocol::{PromptTokensDetails, Usage};

fn request(extra: Value) -> ResponsesRequest {
    let mut body = json!({"model": "m", "input": "hi"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(body).unwrap()
}

fn text(text: &str) -> ChatPiece {
    ChatPiece::Piece(Piece::Text { choice: 0, text: text.into(), tokens: Vec::new() })
}

fn finish(reason: FinishReason) -> ChatPiece {
    ChatPiece::Piece(Piece::Finish { choice: 0, reason, stop: None })
}

fn done(prompt: u32, completion: u32) -> ChatPiece {
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 0 }),
    };
    ChatPiece::Piece(Piece::Done { usage })
}

/// Every event of `pieces` and the folded response; counts one token per reasoning word.
fn run(req: &ResponsesRequest, pieces: Vec<ChatPiece>) -> (Vec<Value>, Response) {
    let mut writer = ResponseWriter::new(req, "m", |text| text.split_whitespace().count() as u32);
    let mut events = writer.start();
    for piece in pieces {
        events.extend(writer.piece(piece));
    }
    (events, writer.finished().expect("ended"))
}

/// The event types, with each text event's text.
fn outline(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_string();
            match e.get("delta").or(e.get("text")).or(e.get("arguments")).and_then(Value::as_str) {
                Some(text) => format!("{kind} {text}"),
                None => kind,
            }
        })
        .collect()
}

/// OpenAI's documented stream of a text answer, event for event, numbered from 0.
#[test]
fn a_text_answer_streams_as_openai_documents() {
    let req = request(json!({}));
    let (events, response) = run(&req, vec![text("Hi"), text(" there"), finish(FinishReason::Stop), done(9, 2)]);
    assert_eq!(
        outline(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta Hi",
            "response.output_text.delta  there",
            "response.output_text.done Hi there",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], json!(i));
    }
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    let item_id = response.output[0].clone();
    let OutputItem::Message { id, status, content, .. } = item_id else { panic!("a message") };
    assert_eq!(status, "completed");
    assert_eq!(content[0].text, "Hi there");
    assert_eq!(events[4]["item_id"], json!(id));
    assert_eq!((events[4]["output_index"].clone(), events[4]["content_index"].clone()), (json!(0), json!(0)));
    assert_eq!(events[3]["part"], json!({"type": "output_text", "text": "", "annotations": []}));
    assert_eq!(events[8]["item"]["status"], "completed");
    assert_eq!(events[9]["response"]["status"], "completed");
    assert_eq!(events[9]["response"]["usage"]["total_tokens"], 11);
    assert_eq!(response.text.format.unwrap().kind, "text");
}

#[test]
fn hitting_max_output_tokens_is_incomplete() {
    let req = request(json!({"max_output_tokens": 2, "metadata": {"k": "v"}}));
    let (events, response) = run(&req, vec![text("Once upon"), finish(FinishReason::Length), done(9, 2)]);
    assert_eq!(events.last().unwrap()["type"], "response.incomplete");
    assert_eq!(response.status, "incomplete");
    assert_eq!(response.incomplete_details.unwrap().reason, "max_output_tokens");
    assert!(matches!(&response.output[0], OutputItem::Message { status, .. } if status == "incomplete"));
    assert_eq!(response.metadata["k"], "v");
}

#[test]
fn reasoning_then_a_function_call_are_two_items() {
    let req = request(json!({}));
    let call = ChatPiece::Call { choice: 0, index: 0, id: "call_xyz".into(), name: "get_weather".into() };
    let args = |t: &str| ChatPiece::Arguments { choice: 0, index: 0, text: t.into() };
    let pieces = vec![
        ChatPiece::Reasoning { choice: 0, text: "need the weather".into() },
        call,
        args("{\"city\":"),
        args("\"Oslo\"}"),
        finish(FinishReason::ToolCalls),
        done(30, 12),
    ];
    let (events, response) = run(&req, pieces);
    assert_eq!(
        outline(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta need the weather",
            "response.reasoning_text.done need the weather",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta {\"city\":",
            "response.function_call_arguments.delta \"Oslo\"}",
            "response.function_call_arguments.done {\"city\":\"Oslo\"}",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(events[8]["item"]["arguments"], "");
    assert_eq!(events[8]["output_index"], 1);
    let OutputItem::FunctionCall { id, call_id, arguments, status, .. } = &response.output[1] else { panic!("a call") };
    assert_eq!((id.as_str(), call_id.as_str(), status.as_str()), ("fc_xyz", "call_xyz", "completed"));
    assert_eq!(arguments, "{\"city\":\"Oslo\"}");
    assert_eq!(response.usage.unwrap().output_tokens_details.reasoning_tokens, 3 + 2);
}

#[test]
fn a_failure_ends_the_stream_with_response_failed() {
    let req = request(json!({}));
    let mut writer = ResponseWriter::new(&req, "m", |_| 0);
    writer.start();
    writer.piece(text("Hi"));
    let events = writer.failed(&ApiError::Unavailable("the server shut down".into()));
    assert_eq!(events[0]["type"], "response.failed");
    assert_eq!(events[0]["response"]["error"]["code"], "engine_unavailable");
    assert_eq!(writer.result().unwrap().status, "failed");
}
