//! The runtime's layers, bottom first: a module uses modules of its own layer or below, never
//! one above (the call path knows nothing of the server that hosts it, the client nothing of
//! the proxy). The test reads every `crate::<module>` path in the sources (comments aside) and
//! fails on one that points up, or on a module that no layer lists.

const LAYERS: &[&[&str]] = &[
    // Wire facts, messages, files.
    &[
        "api",
        "build",
        "wire",
        "version",
        "names",
        "persist",
        "folders",
        "error",
        "message",
        "compression",
        "tls",
        "reply",
        "random",
    ],
    // Configuration, logs, caller metadata, the admin gate.
    &["config", "nats", "logs", "metadata", "auth"],
    &["events"],
    // One call: its path through a hosted method, its metrics and its trace context.
    &["call", "telemetry"],
    &["manager", "client"],
    &["proxy", "services"],
    &["server", "cli", "__private", "fuzz_api", "layering"],
    // The guides (documentation only).
    &["docs"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`, with the top-level module it belongs to.
fn sources(dir: &std::path::Path, top: Option<&str>, out: &mut Vec<(String, std::path::PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let module = top.map_or(name.clone(), str::to_owned);
        if path.is_dir() {
            sources(&path, Some(&module), out);
        } else if path.extension().is_some_and(|e| e == "rs") && !(top.is_none() && name == "lib") {
            out.push((module, path));
        }
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let mut files = Vec::new();
    sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut files);
    assert!(files.len() > 60, "the sources were found: {} files", files.len());
    let mut upward = Vec::new();
    for (module, path) in &files {
        let Some(own) = layer_of(module) else {
            upward.push(format!("{module}: in no layer of layering.rs"));
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let used: String = line[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if let Some(theirs) = layer_of(&used).filter(|&theirs| theirs > own) {
                    upward.push(format!("{}: {module} (layer {own}) uses {used} (layer {theirs})", path.display()));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up a layer:\n{}", upward.join("\n"));
}
