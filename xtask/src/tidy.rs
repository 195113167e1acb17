//! Architecture rules checked as tests (run by `cargo xtask ci tidy`, and by plain
//! `cargo test -p xtask`): the layering of `docs/ARCHITECTURE.md`.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    /// Layer of each workspace library crate.
    const LAYERS: [(&str, u8); 11] = [
        ("aauth-keys", 0),
        ("aauth-headers", 0),
        ("aauth-tokens", 1),
        ("aauth-signing", 1),
        ("aauth-metadata", 2),
        ("aauth-resource", 3),
        ("aauth-agent", 3),
        // OAuth beside AAuth: access tokens of OAuth authorization servers.
        ("aauth-oauth", 3),
        ("aauth-person-server", 4),
        ("aauth-access-server", 4),
        // The binary: it composes every role, so it is above them all.
        ("aauth-cli", 5),
    ];

    /// The edges allowed inside one layer, each one way: the RFC 9421 profile reads its
    /// `jwt` scheme's tokens; the roles of layer 3 take OAuth tokens beside AAuth
    /// (`aauth-oauth` depends on no role).
    const SAME_LAYER: [(&str, &str); 3] = [
        ("aauth-signing", "aauth-tokens"),
        ("aauth-resource", "aauth-oauth"),
        ("aauth-agent", "aauth-oauth"),
    ];

    /// The roles: they never depend on one another.
    const ROLES: [&str; 4] = [
        "aauth-resource",
        "aauth-agent",
        "aauth-person-server",
        "aauth-access-server",
    ];

    /// Test-only crates: they may depend on any library (their fixtures build whole
    /// servers), but no library may have one as a normal dependency; integration tests,
    /// benches and the demo harness take them as dev-dependencies.
    const TEST_SUPPORT: [&str; 1] = ["aauth-test-support"];

    /// Crates that do I/O or pick a runtime: never below layer 2.
    const IO_CRATES: [&str; 6] = ["tokio", "hyper", "hyper-util", "axum", "reqwest", "mio"];

    struct Graph {
        /// package name → names of its normal (non-dev, non-build) dependencies.
        normal: BTreeMap<String, BTreeSet<String>>,
        workspace: BTreeSet<String>,
    }

    fn metadata() -> Graph {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(crate::root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
        let ids: BTreeMap<String, String> = v["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap_or_default().to_owned(),
                    p["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let workspace = v["workspace_members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|id| ids.get(id.as_str().unwrap_or_default()).cloned())
            .collect();
        let mut normal = BTreeMap::new();
        for node in v["resolve"]["nodes"].as_array().expect("resolve") {
            let name = ids[node["id"].as_str().unwrap_or_default()].clone();
            let deps = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
                })
                .map(|d| ids[d["pkg"].as_str().unwrap_or_default()].clone())
                .collect();
            normal.insert(name, deps);
        }
        Graph { normal, workspace }
    }

    fn closure(g: &Graph, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_owned()];
        while let Some(n) = stack.pop() {
            for d in g.normal.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }

    #[test]
    fn tidy_dependencies_point_down_only() {
        let g = metadata();
        let layer: BTreeMap<&str, u8> = LAYERS.into_iter().collect();
        for (krate, l) in LAYERS {
            for dep in &g.normal[krate] {
                if let Some(dl) = layer.get(dep.as_str()) {
                    assert!(
                        *dl < l || SAME_LAYER.contains(&(krate, dep.as_str())),
                        "{krate} (layer {l}) must not depend on {dep} (layer {dl})"
                    );
                }
            }
        }
    }

    #[test]
    fn tidy_roles_never_depend_on_roles() {
        let g = metadata();
        let roles = ROLES;
        for krate in &roles {
            for dep in &g.normal[*krate] {
                assert!(
                    !roles.contains(&dep.as_str()),
                    "{krate} must not depend on the role {dep}: share through layer 2"
                );
            }
        }
    }

    #[test]
    fn tidy_core_layers_do_no_io() {
        let g = metadata();
        for (krate, _) in LAYERS.into_iter().filter(|&(_, l)| l < 2) {
            let all = closure(&g, krate);
            for io in IO_CRATES {
                assert!(
                    !all.contains(io),
                    "{krate} must not depend on {io}, even indirectly"
                );
            }
        }
    }

    #[test]
    fn tidy_xtask_links_no_workspace_crate() {
        let g = metadata();
        for dep in &g.normal["xtask"] {
            assert!(!g.workspace.contains(dep), "xtask must not depend on {dep}");
        }
    }

    #[test]
    fn tidy_no_library_links_test_support() {
        let g = metadata();
        for krate in g
            .workspace
            .iter()
            .filter(|k| !TEST_SUPPORT.contains(&k.as_str()))
        {
            for support in TEST_SUPPORT {
                assert!(
                    !g.normal[krate].contains(support),
                    "{krate} must not depend on {support} (test-only: a dev-dependency)"
                );
            }
        }
    }

    #[test]
    fn tidy_every_crate_has_a_layer() {
        for dir in std::fs::read_dir(crate::root().join("crates")).expect("crates/") {
            let name = dir
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                LAYERS.iter().any(|&(k, _)| k == name) || TEST_SUPPORT.contains(&name.as_str()),
                "crates/{name} has no layer in xtask/src/tidy.rs (see docs/ARCHITECTURE.md)"
            );
        }
    }

    #[test]
    fn tidy_every_crate_uses_workspace_lints() {
        for dir in std::fs::read_dir(crate::root().join("crates")).expect("crates/") {
            let path = dir.expect("entry").path().join("Cargo.toml");
            let text = std::fs::read_to_string(&path).expect("Cargo.toml");
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{} must inherit the workspace lints",
                path.display()
            );
        }
    }
    /// Every `.rs` file under `crates/*/src`, with its path relative to the root.
    fn library_sources() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir)
                .expect("a source directory")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let root = crate::root();
        let mut files = Vec::new();
        for krate in std::fs::read_dir(root.join("crates"))
            .expect("crates/")
            .flatten()
        {
            let src = krate.path().join("src");
            if src.is_dir() {
                walk(&src, &mut files);
            }
        }
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                let rel = path
                    .strip_prefix(&root)
                    .map_or_else(|_| path.display().to_string(), |p| p.display().to_string());
                (rel, text)
            })
            .collect()
    }

    /// The longest a source file in `crates/*/src` may be.
    const MAX_FILE_LINES: usize = 1200;
    /// The longest a function in `crates/*/src` may be, from `fn` to its closing brace.
    const MAX_FN_LINES: usize = 120;

    #[test]
    fn tidy_no_source_file_over_1200_lines() {
        for (path, text) in library_sources() {
            let n = text.lines().count();
            assert!(
                n <= MAX_FILE_LINES,
                "{path} has {n} lines (at most {MAX_FILE_LINES}: cut it into modules)"
            );
        }
    }

    /// `(name, first line, length)` of every function in `text` (a `fn` item whose body
    /// closes at its own indentation, as rustfmt writes it).
    fn functions(text: &str) -> Vec<(String, usize, usize)> {
        let lines: Vec<&str> = text.lines().collect();
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let rest = [
                "pub(crate) ",
                "pub(super) ",
                "pub ",
                "const ",
                "async ",
                "unsafe ",
            ]
            .iter()
            .fold(trimmed, |t, p| t.strip_prefix(p).unwrap_or(t));
            let rest = ["const ", "async ", "unsafe "]
                .iter()
                .fold(rest, |t, p| t.strip_prefix(p).unwrap_or(t));
            let Some(name) = rest.strip_prefix("fn ") else {
                continue;
            };
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The signature ends with `{` (a body) or `;` (a declaration).
            let Some(open) = (i..lines.len()).find(|&j| {
                let l = lines[j].trim_end();
                l.ends_with('{') || l.ends_with(';')
            }) else {
                continue;
            };
            if lines[open].trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
                found.push((name, i + 1, end - i + 1));
            }
        }
        found
    }

    #[test]
    fn tidy_no_function_over_120_lines() {
        let mut long = Vec::new();
        for (path, text) in library_sources() {
            for (name, line, n) in functions(&text) {
                if n > MAX_FN_LINES {
                    long.push(format!("{path}:{line} `{name}` is {n} lines"));
                }
            }
        }
        assert!(
            long.is_empty(),
            "functions over {MAX_FN_LINES} lines (cut them into named steps):\n{}",
            long.join("\n")
        );
    }

    #[test]
    fn tidy_the_function_scanner_sees_functions() {
        let text = "fn a() {\n    x();\n}\n\nimpl S {\n    pub(super) async fn b(\n        &self,\n    ) -> u8 {\n        1\n    }\n\n    fn c(&self);\n}\n";
        assert_eq!(
            functions(text),
            vec![("a".to_owned(), 1, 3), ("b".to_owned(), 6, 5)]
        );
    }

    #[test]
    fn tidy_no_too_many_arguments_allowance() {
        for (path, text) in library_sources() {
            assert!(
                !text.contains("too_many_arguments"),
                "{path} allows too_many_arguments: give the arguments a struct"
            );
        }
    }

    #[test]
    fn tidy_servers_say_why_a_default_is_right() {
        for (path, text) in library_sources().into_iter().filter(|(p, _)| {
            p.starts_with("crates/aauth-person-server/")
                || p.starts_with("crates/aauth-access-server/")
        }) {
            for (i, line) in text.lines().enumerate() {
                assert!(
                    !line.contains("unwrap_or_default()") || line.contains("// default:"),
                    "{path}:{}: unwrap_or_default without a `// default:` reason on its line",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn tidy_no_reference_outside_the_repository() {
        let out = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(crate::root())
            .output()
            .expect("git ls-files runs");
        // Spelled in pieces so that this file does not match itself.
        let outside = [
            ["..", "/shared/"].concat(),
            ["/work", "/"].concat(),
            ["security-", "catalogue"].concat(),
            ["shared/", "design"].concat(),
        ];
        for path in String::from_utf8_lossy(&out.stdout).split('\0') {
            let Ok(text) = std::fs::read_to_string(crate::root().join(path)) else {
                continue; // binary or gone
            };
            for needle in &outside {
                assert!(
                    !text.contains(needle.as_str()),
                    "{path} refers to `{needle}`, outside the repository"
                );
            }
        }
    }

    /// Every requirement id the code cites (`PS-13`, `AG-61`, `AP-07`, …) is defined in
    /// `docs/conformance.md`, so that someone with only the repository can look it up.
    #[test]
    fn tidy_every_cited_requirement_id_is_defined() {
        let root = crate::root();
        let defined =
            std::fs::read_to_string(root.join("docs/conformance.md")).expect("the id map");
        let out = Command::new("git")
            .args(["ls-files", "-z", "crates", "tests", "xtask"])
            .current_dir(&root)
            .output()
            .expect("git ls-files runs");
        for path in String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| p.ends_with(".rs"))
        {
            let Ok(text) = std::fs::read_to_string(root.join(path)) else {
                continue;
            };
            for id in requirement_ids(&text) {
                assert!(
                    defined.contains(&format!("| {id} |")),
                    "{path} cites {id}, which docs/conformance.md does not define"
                );
            }
        }
    }

    /// The ids of the form `PS-13` (a role prefix, a hyphen, digits) in `text`.
    fn requirement_ids(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        for prefix in ["PS-", "AG-", "AS-", "RS-", "AP-"] {
            let mut from = 0;
            while let Some(at) = text[from..].find(prefix) {
                let at = from + at;
                from = at + prefix.len();
                let before = at.checked_sub(1).map(|i| bytes[i]);
                if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    continue;
                }
                let digits: String = text[from..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if !digits.is_empty() {
                    out.push(format!("{prefix}{digits}"));
                }
            }
        }
        out
    }
}
