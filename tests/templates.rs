//! The chat templates the supported families ship (`tests/fixtures/templates/`), rendered by Hearth and by
//! Hugging Face's way of rendering them (jinja2; `tests/fixtures/chat-template-reference.json`, made by
//! `make_template_reference.py`): the same prompt text, or an error where the template raises one. Where a
//! template asks for today's date (`strftime_now`), the reference holds `{{NOW:format}}` and the test puts in
//! what `date -u` prints.

use hearth_text::ChatTemplate;
use serde_json::Value;

use crate::util::{root, text_messages};

#[test]
fn family_templates_render_as_hugging_face_does() {
    let fixtures = root().join("tests/fixtures");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("chat-template-reference.json")).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let source = std::fs::read_to_string(fixtures.join(format!("templates/{name}.jinja"))).unwrap();
        let template =
            ChatTemplate::new(&source, case["bos_token"].as_str().unwrap(), case["eos_token"].as_str().unwrap())
                .unwrap();
        let messages = text_messages(&case["messages"]);
        let kwargs = case["chat_template_kwargs"].as_object().unwrap();
        let rendered = template.render(&messages, &[], case["add_generation_prompt"].as_bool().unwrap(), kwargs);
        match (&case["prompt"], rendered) {
            (Value::String(expected), Ok(rendered)) => {
                assert_eq!(rendered.text, with_dates(expected), "{name}: {case}")
            }
            (Value::Null, Err(error)) => {
                let expected = case["error"].as_str().unwrap();
                assert!(error.to_string().contains(expected), "{name}: {error} does not say {expected:?}");
            }
            (_, rendered) => panic!("{name}: {rendered:?} where jinja2 gave {case}"),
        }
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());
}

/// `text` with every `{{NOW:format}}` replaced by `date -u +format`.
fn with_dates(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{NOW:") {
        let end = start + rest[start..].find("}}").expect("a closed placeholder");
        let format = &rest[start + "{{NOW:".len()..end];
        let date = std::process::Command::new("date").arg("-u").arg(format!("+{format}")).output().unwrap();
        out.push_str(&rest[..start]);
        out.push_str(String::from_utf8(date.stdout).unwrap().trim_end_matches('\n'));
        rest = &rest[end + 2..];
    }
    out + rest
}
