//! Architecture rules checked as tests (run by `cargo xtask ci tidy`, and by plain
//! `cargo test -p xtask`): the layering of `docs/ARCHITECTURE.md`.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    /// Layer of each workspace library crate.
    const LAYERS: [(&str, u8); 9] = [
        ("aauth-keys", 0),
        ("aauth-headers", 0),
        ("aauth-tokens", 1),
        ("aauth-signing", 1),
        ("aauth-metadata", 2),
        ("aauth-resource", 3),
        ("aauth-agent", 3),
        ("aauth-person-server", 4),
        ("aauth-access-server", 4),
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
                        *dl < l
                            || (*dl == l
                                && l == 1
                                && krate == "aauth-signing"
                                && dep == "aauth-tokens"),
                        "{krate} (layer {l}) must not depend on {dep} (layer {dl})"
                    );
                }
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
}
