//! `cargo xtask tidy`: architecture invariants that `cargo metadata` can check.
//!
//! - `qubesec-core` depends on no other project crate.
//! - The service crates (`qubesec-cli`, `qubesec-kms`, `qubesec-operator`) never
//!   depend on each other, and no project crate depends on a binary-only crate.
//! - `qubesec-testenv` is only ever a dev-dependency (or used by `xtask`).

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

const CORE: &str = "qubesec-core";
const SERVICES: &[&str] = &["qubesec-cli", "qubesec-kms", "qubesec-operator"];
const DEV_ONLY: &[&str] = &["qubesec-testenv"];

/// One dependency edge between two workspace crates.
struct Edge {
    from: String,
    to: String,
    dev_only: bool,
}

pub(crate) fn run() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(crate::util::root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let packages = meta["packages"].as_array().context("metadata has no packages")?;

    // name -> has a library target
    let mut has_lib = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let lib = p["targets"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "lib" || k == "rlib")))
        });
        has_lib.insert(name, lib);
    }
    let mut edges = Vec::new();
    for p in packages {
        let from = p["name"].as_str().unwrap_or_default();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let to = d["name"].as_str().unwrap_or_default();
            if has_lib.contains_key(to) {
                edges.push(Edge {
                    from: from.to_owned(),
                    to: to.to_owned(),
                    dev_only: d["kind"].as_str() == Some("dev"),
                });
            }
        }
    }
    let problems = check(&edges, &has_lib);
    if !problems.is_empty() {
        bail!("tidy: dependency direction violated:\n  {}", problems.join("\n  "));
    }
    eprintln!("tidy: {} workspace dependency edges respect the architecture", edges.len());
    Ok(())
}

fn check(edges: &[Edge], has_lib: &BTreeMap<String, bool>) -> Vec<String> {
    let mut problems = Vec::new();
    for e in edges {
        if e.from == CORE && !e.dev_only {
            problems.push(format!("{CORE} must not depend on project crate {}", e.to));
        }
        if SERVICES.contains(&e.from.as_str()) && SERVICES.contains(&e.to.as_str()) {
            problems.push(format!("{} must not depend on {} (services meet only in core)", e.from, e.to));
        }
        if has_lib.get(&e.to) == Some(&false) {
            problems.push(format!("{} depends on binary-only crate {}", e.from, e.to));
        }
        // xtask is developer tooling (it runs `testenv up`), never shipped.
        if DEV_ONLY.contains(&e.to.as_str()) && !e.dev_only && e.from != "xtask" {
            problems.push(format!("{} may use {} only as a dev-dependency", e.from, e.to));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str, dev_only: bool) -> Edge {
        Edge { from: from.into(), to: to.into(), dev_only }
    }

    fn libs() -> BTreeMap<String, bool> {
        [
            ("qubesec-core", true),
            ("qubesec-cli", true),
            ("qubesec-kms", true),
            ("qubesec-operator", true),
            ("qubesec-testenv", true),
            ("bin-only", false),
        ]
        .into_iter()
        .map(|(n, l)| (n.to_owned(), l))
        .collect()
    }

    #[test]
    fn accepts_the_intended_shape() {
        let edges = [
            edge("qubesec-cli", "qubesec-core", false),
            edge("qubesec-kms", "qubesec-testenv", true),
            edge("qubesec-operator", "qubesec-core", false),
            edge("qubesec-operator", "qubesec-testenv", true),
        ];
        assert!(check(&edges, &libs()).is_empty());
    }

    #[test]
    fn rejects_each_violation() {
        let libs = libs();
        assert_eq!(check(&[edge("qubesec-core", "qubesec-kms", false)], &libs).len(), 1);
        assert_eq!(check(&[edge("qubesec-cli", "qubesec-kms", false)], &libs).len(), 1);
        assert_eq!(check(&[edge("qubesec-kms", "bin-only", false)], &libs).len(), 1);
        assert_eq!(check(&[edge("qubesec-kms", "qubesec-testenv", false)], &libs).len(), 1);
        assert_eq!(check(&[edge("qubesec-operator", "qubesec-cli", false)], &libs).len(), 1);
        assert_eq!(check(&[edge("qubesec-operator", "qubesec-testenv", false)], &libs).len(), 1);
    }
}
