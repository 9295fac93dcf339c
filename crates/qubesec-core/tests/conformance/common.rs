use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

/// `../shared/vectors` relative to the workspace (override: `QUBESEC_VECTORS`).
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("QUBESEC_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"));
    assert!(
        dir.join("README.md").is_file(),
        "test vectors not found at {}: check out `shared/` beside the repository (or set QUBESEC_VECTORS)",
        dir.display()
    );
    dir
}

pub fn load(rel: &str) -> Value {
    let path = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Hex field (either case); a missing field is empty.
pub fn hx(v: &Value, field: &str) -> Vec<u8> {
    v.get(field)
        .and_then(Value::as_str)
        .map(|s| hex::decode(s).unwrap_or_else(|e| panic!("{field}: {e}")))
        .unwrap_or_default()
}

pub fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some_and(|f| !f.is_null())
}

pub fn groups(v: &Value) -> impl Iterator<Item = (&Value, &Value)> {
    v["testGroups"]
        .as_array()
        .expect("testGroups")
        .iter()
        .flat_map(|g| g["tests"].as_array().expect("tests").iter().map(move |t| (g, t)))
}

/// Wycheproof: is this case expected to succeed?
pub fn valid(t: &Value) -> bool {
    match t["result"].as_str() {
        Some("valid") => true,
        Some("invalid") => false,
        other => panic!("tcId {}: unexpected result {other:?}", t["tcId"]),
    }
}

/// Per-file bookkeeping: passes, failures with reasons, and cases that do not apply.
pub struct Tally {
    file: String,
    passed: usize,
    not_applicable: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    pub fn new(file: &str) -> Self {
        Self { file: file.to_owned(), passed: 0, not_applicable: Vec::new(), failures: Vec::new() }
    }

    pub fn check(&mut self, id: impl std::fmt::Display, ok: bool, why: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(format!("case {id}: {}", why()));
        }
    }

    pub fn not_applicable(&mut self, id: impl std::fmt::Display, why: &str) {
        self.not_applicable.push(format!("{id} ({why})"));
    }

    pub fn finish(self) {
        let na = if self.not_applicable.is_empty() {
            String::new()
        } else {
            format!(", {} not applicable: {}", self.not_applicable.len(), self.not_applicable.join(", "))
        };
        let _ = writeln!(
            std::io::stderr(),
            "vectors {}: {} cases passed, {} failed{na}",
            self.file,
            self.passed,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{}: {} failures:\n{}",
            self.file,
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(self.passed > 0, "{}: ran zero cases", self.file);
    }
}
