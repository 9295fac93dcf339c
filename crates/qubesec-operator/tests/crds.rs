//! The committed CRD manifests match the Rust types, and carry the validation the API promises.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

#[test]
fn committed_crds_are_up_to_date() {
    let manifests = qubesec_operator::crd::manifests().unwrap();
    assert_eq!(manifests.len(), 9);
    let mut on_disk: Vec<String> = std::fs::read_dir(crd_dir())
        .expect("deploy/crds exists (run `cargo xtask crdgen`)")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = manifests.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    assert_eq!(on_disk, expected, "deploy/crds has other files than the nine CRDs: run `cargo xtask crdgen`");
    for (name, yaml) in manifests {
        let committed = std::fs::read_to_string(crd_dir().join(&name)).unwrap();
        assert!(committed == yaml, "deploy/crds/{name} is stale: run `cargo xtask crdgen`");
    }
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
