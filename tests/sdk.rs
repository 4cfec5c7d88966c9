//! The real server with the real default model, driven by the official OpenAI and Anthropic Python SDKs
//! and by LangChain's OpenAI (Responses API) and Anthropic chat models.

use std::process::Command;

use hearth_models::WeightFormat;

use hearth_server::config::EmbeddingModelConfig;

use crate::util::{config, default_embedding_model, default_model, init, python, root};

#[test]
fn python_sdk_suites() {
    init();
    let mut config = config(default_model(), WeightFormat::Q8_0);
    config.model.embedding =
        Some(EmbeddingModelConfig { path: default_embedding_model(), served_model_name: None, optional: false });
    let state = hearth_server::start(&config).unwrap();
    let (model_id, embedding_id) = crate::util::served_ids(&state);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(hearth_server::serve(
        listener,
        hearth_server::app(state),
        async {
            let _ = stopped.await;
        },
        hearth_server::ServeOptions::plain(std::time::Duration::from_secs(30)),
    ));

    let failed: Vec<&str> = [
        "test_chat.py",
        "test_sampling.py",
        "test_embeddings.py",
        "test_structured.py",
        "test_tools.py",
        "test_responses.py",
        "test_messages.py",
        "test_langchain.py",
    ]
    .into_iter()
    .filter(|suite| {
        let status = Command::new(python())
            .arg(root().join("tests/sdk").join(suite))
            .env("HEARTH_BASE_URL", format!("http://{address}/v1"))
            .env("HEARTH_MODEL", &model_id)
            .env("HEARTH_EMBEDDING_MODEL", &embedding_id)
            .env("HEARTH_ROOT", root())
            .env("PYTHONUNBUFFERED", "1")
            .status()
            .expect("running a Python SDK suite");
        !status.success()
    })
    .collect();

    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
    assert!(failed.is_empty(), "Python SDK suites failed: {failed:?}");
}
