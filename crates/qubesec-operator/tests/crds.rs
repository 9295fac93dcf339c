//! The committed CRD manifests match the Rust types, and carry the validation the API promises.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

/// The Helm chart's copy of the CRDs (Helm installs `crds/` before the templates).
fn chart_crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/qubesec/crds")
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): run `cargo xtask crdgen`", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `dir` holds exactly the nine CRDs as `manifests()` renders them, plus `extra` files.
fn assert_holds_the_crds(dir: &Path, shown: &str, extra: &[&str]) {
    let manifests = qubesec_operator::crd::manifests().unwrap();
    assert_eq!(manifests.len(), 9);
    let mut expected: Vec<String> = manifests.iter().map(|(n, _)| n.clone()).collect();
    expected.extend(extra.iter().map(|e| (*e).to_owned()));
    expected.sort();
    assert_eq!(file_names(dir), expected, "{shown} should hold the nine CRDs and {extra:?}: run `cargo xtask crdgen`");
    for (name, yaml) in &manifests {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(committed == *yaml, "{shown}/{name} is stale: run `cargo xtask crdgen`");
    }
}

#[test]
fn committed_crds_are_up_to_date() {
    assert_holds_the_crds(&crd_dir(), "deploy/crds", &["Kustomization"]);
    let kustomization = std::fs::read_to_string(crd_dir().join("Kustomization")).unwrap();
    assert_eq!(
        kustomization,
        qubesec_operator::crd::kustomization(),
        "deploy/crds/Kustomization is stale: run `cargo xtask crdgen`"
    );
    for name in file_names(&crd_dir()).iter().filter(|n| n.ends_with(".yaml")) {
        assert!(kustomization.contains(&format!("  - {name}\n")), "the Kustomization does not list {name}");
    }
}

#[test]
fn helm_chart_carries_the_same_crds() {
    assert_holds_the_crds(&chart_crd_dir(), "deploy/helm/qubesec/crds", &[]);
}

#[test]
fn crds_carry_names_columns_and_validation() {
    for crd in qubesec_operator::crd::all() {
        let json = serde_json::to_value(&crd).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(json["spec"]["group"], "qubesec.io", "{name}");
        assert_eq!(json["spec"]["scope"], "Namespaced", "{name}");
        assert_eq!(json["spec"]["names"]["categories"][0], "qubesec", "{name}");
        assert!(json["spec"]["names"]["shortNames"][0].is_string(), "{name}");
        let version = &json["spec"]["versions"][0];
        assert_eq!(version["name"], "v1");
        assert!(version["subresources"]["status"].is_object(), "{name}: status subresource");
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in ["Ready", "Fingerprint", "Age"] {
            assert!(columns.contains(&want), "{name}: missing column {want}");
        }
        let text = json.to_string();
        assert!(text.contains("x-kubernetes-validations"), "{name}: no CEL rules");
        assert!(!text.contains("\"$ref\""), "{name}: schema must be inlined");
    }
}

#[test]
fn kem_key_pair_schema_enumerates_algorithms_and_guards_immutability() {
    let crd = serde_json::to_value(qubesec_operator::crd::all().remove(0)).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let alg = &spec["properties"]["algorithm"];
    assert_eq!(alg["default"], "ML-KEM-768");
    let names: Vec<&str> = alg["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"ML-KEM-1024") && names.contains(&"Kyber768") && !names.contains(&"RSA"));
    assert_eq!(alg["x-kubernetes-validations"][0]["rule"], "self == oldSelf");
}
