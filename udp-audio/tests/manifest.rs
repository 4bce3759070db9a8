//! The library package stays a library: no command-line crate among its normal (or build)
//! dependencies and no binary; the program is the `udp-audio-cli` package in `cli/`.

/// Crates only a program needs: argument parsing, the workspace's flag values and output
/// conventions, log output, signal handlers.
const CLI_CRATES: [&str; 5] = [
    "clap",
    "cli-values",
    "cli-conventions",
    "tracing-subscriber",
    "signal-hook",
];

/// The names of the crates `manifest` lists in its dependency tables other than
/// `[dev-dependencies]` (`[dependencies]`, `[build-dependencies]`, and the same under
/// `[target.'cfg(...)']`).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let parts: Vec<&str> = header.trim_end_matches(']').split('.').collect();
            in_deps = false;
            match parts
                .iter()
                .position(|p| *p == "dependencies" || *p == "build-dependencies")
            {
                // [dependencies.NAME]
                Some(i) if i + 1 < parts.len() => names.push(parts[i + 1].to_string()),
                Some(_) => in_deps = true,
                None => {}
            }
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            names.push(name.trim_matches('"').to_string());
        }
    }
    names
}

#[test]
fn the_library_pulls_no_command_line_crate_and_has_no_binary() {
    let manifest = include_str!("../Cargo.toml");
    let deps = normal_dependencies(manifest);
    assert!(deps.contains(&"hound".to_string()), "parsed: {deps:?}");
    for name in CLI_CRATES {
        assert!(
            !deps.iter().any(|d| d == name),
            "udp-audio depends on {name}: it belongs to udp-audio/cli ({deps:?})"
        );
    }
    assert!(
        !manifest.contains("[[bin]]"),
        "the program is the udp-audio-cli package"
    );
}

#[test]
fn the_dependency_tables_are_read_as_cargo_reads_them() {
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nserde.workspace = true\n\
                    clap = { version = \"4\" }\n# comment\n\n[dev-dependencies]\nproptest = \"1\"\n\n\
                    [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n\
                    [dependencies.signal-hook]\nversion = \"0.3\"\n";
    assert_eq!(
        normal_dependencies(manifest),
        ["serde", "clap", "libc", "signal-hook"]
    );
}
