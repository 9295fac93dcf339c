//! The `kms` image, its static pod and the install guide agree on the user
//! the plugin runs as and on who owns the host directories it reads, and the
//! static pod's probes are the right ones (liveness never touches the
//! backend). Read from the files as shipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `USER uid:gid` of the Dockerfile stage `stage`.
fn dockerfile_user(stage: &str) -> Option<(u32, u32)> {
    let text = read("deploy/images/Dockerfile");
    let mut in_stage = false;
    let mut user = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(from) = line.strip_prefix("FROM ") {
            in_stage = from.split_whitespace().collect::<Vec<_>>().ends_with(&["AS", stage]);
            continue;
        }
        if in_stage && let Some(u) = line.strip_prefix("USER ") {
            let (uid, gid) = u.split_once(':').unwrap_or((u, u));
            user = Some((uid.trim().parse().unwrap(), gid.trim().parse().unwrap()));
        }
    }
    user
}

#[test]
fn image_static_pod_and_install_guide_agree_on_the_user() {
    let (uid, gid) = dockerfile_user("kms").expect("the kms image stage sets USER uid:gid");
    assert_ne!(uid, 0, "the kms image runs as a non-root user");

    let pod: serde_yaml::Value = serde_yaml::from_str(&read("deploy/kms/qubesec-kms.yaml")).unwrap();
    let sc = &pod["spec"]["securityContext"];
    assert_eq!(sc["runAsUser"].as_u64(), Some(u64::from(uid)), "static pod runAsUser");
    assert_eq!(sc["runAsGroup"].as_u64(), Some(u64::from(gid)), "static pod runAsGroup");
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));

    // Every hostPath the pod mounts is created by the guide, owned by that user.
    let guide = read("docs/kms.md");
    let install = guide
        .lines()
        .find(|l| l.trim_start().starts_with("install -d") && l.contains("/etc/qubesec-kms"))
        .expect("docs/kms.md creates the directories with `install -d`");
    assert!(install.contains(&format!("-o {uid}")) && install.contains(&format!("-g {gid}")), "{install}");
    assert!(install.contains("-m 0700"), "{install}");
    for vol in pod["spec"]["volumes"].as_sequence().unwrap() {
        let path = vol["hostPath"]["path"].as_str().unwrap();
        let created = path.replace("/var/run/", "/run/");
        assert!(install.contains(path) || install.contains(&created), "docs/kms.md does not create {path}: {install}");
        assert_eq!(
            vol["hostPath"]["type"].as_str(),
            Some("Directory"),
            "{path}: must exist (owned by {uid}), not be created root-owned"
        );
    }
    // Commands that write keys on the host run as that user too.
    assert!(guide.contains(&format!("setpriv --reuid={uid} --regid={gid}")), "docs/kms.md runs qubesec-kms as {uid}");
    assert!(
        guide.contains(&format!("d /run/qubesec-kms 0700 {uid} {gid}")),
        "docs/kms.md recreates the socket directory at boot"
    );
}

#[test]
fn liveness_never_touches_the_backend() {
    let pod: serde_yaml::Value = serde_yaml::from_str(&read("deploy/kms/qubesec-kms.yaml")).unwrap();
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/livez"));
    assert_eq!(
        c["startupProbe"]["httpGet"]["path"].as_str(),
        Some("/livez"),
        "a slow HSM at boot must not restart the pod"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
}
