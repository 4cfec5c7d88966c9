//! `Config::resolve`: the layers' precedence, the defaults file, and the checks on what they name.

use super::*;

#[test]
fn default_toml_equals_the_code_defaults() {
    let text = include_str!("../../../../config/default.toml");
    let file = parse_file(text).unwrap();
    assert_eq!(Config::merge(&ServeArgs::default(), file).unwrap(), Config::default_resolved());
}

#[test]
fn model_flags_pair_files_and_directories_with_names() {
    let dir = std::env::temp_dir().join(format!("hearth-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chat = dir.join("chat.gguf");
    let other = dir.join("other.gguf");
    std::fs::write(&chat, b"").unwrap();
    std::fs::write(&other, b"").unwrap();
    let args = ServeArgs {
        model: vec![chat.clone(), dir.clone()],
        served_model_name: vec!["chat".into(), "embed".into()],
        ..ServeArgs::default()
    };
    let model = Config::merge(&args, FileConfig::default()).unwrap().model;
    assert_eq!((&model.path, model.served_model_name.as_deref()), (&Some(chat.clone()), Some("chat")));
    let embedding = model.embedding.unwrap();
    assert_eq!(
        (embedding.path, embedding.served_model_name.as_deref(), embedding.optional),
        (dir.clone(), Some("embed"), false)
    );
    let only_chat = ServeArgs { model: vec![chat.clone()], ..ServeArgs::default() };
    assert_eq!(Config::merge(&only_chat, FileConfig::default()).unwrap().model.embedding, None);
    let two_chats = ServeArgs { model: vec![chat.clone(), other], ..ServeArgs::default() };
    assert!(Config::merge(&two_chats, FileConfig::default()).is_err());
    let missing = ServeArgs { model: vec![chat, dir.join("nope")], ..ServeArgs::default() };
    let error = Config::merge(&missing, FileConfig::default()).unwrap_err().to_string();
    assert!(error.contains("no such file"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_override_the_file() {
    let file = parse_file("[server]\nport = 9000\nhost = \"0.0.0.0\"\n[engine]\nmax_num_seqs = 4").unwrap();
    let args = ServeArgs { port: Some(9100), ..ServeArgs::default() };
    let config = Config::merge(&args, file).unwrap();
    assert_eq!((config.server.host.as_str(), config.server.port), ("0.0.0.0", 9100));
    assert_eq!(config.engine.limits.max_running, 4);
}

#[test]
fn the_playground_is_on_unless_a_layer_turns_it_off() {
    let playground =
        |args: ServeArgs, file: &str| Config::merge(&args, parse_file(file).unwrap()).unwrap().server.playground;
    assert!(playground(ServeArgs::default(), ""));
    assert!(!playground(ServeArgs::default(), "[server]\nplayground = false"));
    assert!(!playground(ServeArgs { no_playground: true, ..ServeArgs::default() }, "[server]\nplayground = true"));
}

#[test]
fn sizes_take_binary_and_decimal_units() {
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
    assert_eq!(parse_size("1.5G"), Ok(1_500_000_000));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert!(parse_size("lots").is_err());
    assert!(parse_size("3 parsecs").is_err());
    let file = parse_file("[engine]\nkv_cache_memory = \"64MiB\"\nprefix_caching = false").unwrap();
    let engine = Config::merge(&ServeArgs::default(), file).unwrap().engine;
    assert_eq!((engine.kv_cache_memory, engine.limits.prefix_caching), (Some(64 << 20), false));
}

#[test]
fn tls_needs_both_files_from_any_layer() {
    let dir = std::env::temp_dir().join(format!("hearth-tls-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, b"").unwrap();
    std::fs::write(&key, b"").unwrap();
    let error = |args: ServeArgs| Config::merge(&args, FileConfig::default()).unwrap_err().to_string();
    assert!(error(ServeArgs { tls_cert: Some(cert.clone()), ..ServeArgs::default() })
        .starts_with("--tls-cert is set but --tls-key is missing"));
    assert!(error(ServeArgs { tls_key: Some(key.clone()), ..ServeArgs::default() })
        .starts_with("--tls-key is set but --tls-cert is missing"));
    // Each file resolves on its own: the key from the config file, the certificate from the flag.
    let key_in_file = parse_file(&format!("[server]\ntls_key = {key:?}")).unwrap();
    let cert_flag = ServeArgs { tls_cert: Some(cert.clone()), ..ServeArgs::default() };
    let server = Config::merge(&cert_flag, key_in_file).unwrap().server;
    assert_eq!(server.tls, Some(TlsFiles { cert, key }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(parse_file("[server]\nprot = 1").is_err());
}

#[test]
fn models_directories_replace_the_default_model_and_flags_override_the_file() {
    let dir = std::env::temp_dir().join(format!("hearth-config-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = parse_file(&format!(
        "[models]\ndirs = [{:?}]\nmax_loaded = 3\nmemory = \"2GiB\"\nidle_unload_seconds = 60\npinned = [\"a\"]\n\
         [models.aliases]\nfast = \"a\"\n",
        dir.display().to_string()
    ))
    .unwrap();
    let args = ServeArgs { max_loaded_models: Some(0), pin_models: vec!["b".into()], ..ServeArgs::default() };
    let config = Config::merge(&args, file).unwrap();
    assert_eq!(config.model.path, None, "a models directory alone serves no default model");
    assert_eq!(config.model.embedding, None);
    let models = config.models;
    assert_eq!(models.dirs, std::slice::from_ref(&dir));
    assert_eq!(models.max_loaded, None, "0 from the flag means no limit");
    assert_eq!(models.memory, Some(2 << 30));
    assert_eq!(models.idle_unload, Some(std::time::Duration::from_secs(60)));
    assert_eq!(models.pinned, ["b"], "the flag replaces the file's list");
    assert_eq!(models.aliases.get("fast").map(String::as_str), Some("a"));
    let missing = ServeArgs { models_dir: vec![dir.join("nope")], ..ServeArgs::default() };
    let error = Config::merge(&missing, FileConfig::default()).unwrap_err().to_string();
    assert!(error.contains("no such directory"), "{error}");
}
