//! Interoperability with pyca/cryptography (>= 48), both directions, for every
//! parameter set Python supports: ML-KEM-768/1024 and ML-DSA-44/65/87.
//!
//! The Python side lives in `tests/interop/pyca.py`. These tests FAIL (they do
//! not skip) when `python3` or `cryptography >= 48` is missing: interop is part
//! of the contract, so a machine that cannot check it must say so loudly.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{Scratch, cert_issue, keygen, qubesec};

const PY_KEMS: [&str; 2] = ["ML-KEM-768", "ML-KEM-1024"];
const PY_SIGS: [&str; 3] = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"];

fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyca.py")
}

fn python() -> String {
    std::env::var("QUBESEC_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Checks once per test binary that Python and cryptography >= 48 are usable.
fn require_python() {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let out = Command::new(python()).arg(helper()).arg("check").output().map_err(|e| {
            format!(
                "cannot run `{}` ({e}). The interop tests need Python 3 with pyca/cryptography >= 48 \
                 (`pip install 'cryptography>=48'`); set QUBESEC_PYTHON to choose the interpreter.",
                python()
            )
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "`{} pyca.py check` failed: {}The interop tests need pyca/cryptography >= 48 with ML-KEM \
                 and ML-DSA support (`pip install 'cryptography>=48'`).",
                python(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Runs a helper sub-command and asserts it succeeded; returns its stdout.
#[track_caller]
fn py(args: &[&str]) -> String {
    require_python();
    let out = Command::new(python()).arg(helper()).args(args).output().expect("run python3");
    assert!(
        out.status.success(),
        "pyca.py {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs a helper sub-command expected to fail with exit 1 (a failed check).
#[track_caller]
fn py_fails(args: &[&str]) {
    require_python();
    let out = Command::new(python()).arg(helper()).args(args).output().expect("run python3");
    assert_eq!(
        out.status.code(),
        Some(1),
        "pyca.py {args:?} should fail its check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_loads_our_keys_byte_for_byte() {
    let s = Scratch::new();
    for (kind, algs) in [("kem", &PY_KEMS[..]), ("sig", &PY_SIGS[..])] {
        for alg in algs {
            let (key, public) = keygen(&s, kind, alg, alg);
            py(&["load-private", &key, &public, alg]);
        }
    }
}

#[test]
fn python_decapsulates_our_ciphertexts() {
    let s = Scratch::new();
    for alg in PY_KEMS {
        let (key, public) = keygen(&s, "kem", alg, alg);
        let (ct, ours, theirs) = (s.path("ct"), s.path("ours"), s.path("theirs"));
        qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &ct, "--secret", &ours]).success();
        py(&["kem-decaps", &key, &ct, &theirs]);
        assert_eq!(s.read("ours"), s.read("theirs"), "{alg}: Python recovers a different secret");

        // Implicit rejection agrees too: a tampered ciphertext gives the same
        // (wrong) secret on both sides.
        let mut bad = s.read("ct");
        bad[0] ^= 0x80;
        let bad_ct = s.write("bad.ct", &bad);
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &bad_ct, "--secret", &s.path("rej-ours")]).success();
        py(&["kem-decaps", &key, &bad_ct, &s.path("rej-theirs")]);
        assert_eq!(s.read("rej-ours"), s.read("rej-theirs"), "{alg}: implicit rejection differs");
        assert_ne!(s.read("rej-ours"), s.read("ours"));
    }
}

#[test]
fn we_decapsulate_python_ciphertexts_to_our_keys() {
    let s = Scratch::new();
    for alg in PY_KEMS {
        let (key, public) = keygen(&s, "kem", alg, alg);
        let (ct, theirs, ours) = (s.path("ct"), s.path("theirs"), s.path("ours"));
        py(&["kem-encaps", &public, &ct, &theirs]);
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &ct, "--secret", &ours]).success();
        assert_eq!(s.read("ours"), s.read("theirs"), "{alg}: we recover a different secret");
    }
}

#[test]
fn python_keys_work_in_qubesec() {
    let s = Scratch::new();
    for alg in PY_KEMS {
        let (key, public) = (s.path(&format!("{alg}.py.key")), s.path(&format!("{alg}.py.pub")));
        py(&["keygen", alg, &key, &public]);
        // Python key pair, qubesec encapsulates and decapsulates.
        let (ct, ss1, ss2) = (s.path("ct"), s.path("ss1"), s.path("ss2"));
        qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &ct, "--secret", &ss1]).success();
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &ct, "--secret", &ss2]).success();
        assert_eq!(s.read("ss1"), s.read("ss2"), "{alg}");
        // And Python agrees.
        py(&["kem-decaps", &key, &ct, &s.path("ss3")]);
        assert_eq!(s.read("ss1"), s.read("ss3"), "{alg}");
        // Same fingerprint from the private and the public key.
        let a = qubesec(["fingerprint", &key]).success().stdout;
        let b = qubesec(["fingerprint", &public]).success().stdout;
        assert_eq!(a, b, "{alg}");
    }
    for alg in PY_SIGS {
        let (key, public) = (s.path(&format!("{alg}.py.key")), s.path(&format!("{alg}.py.pub")));
        py(&["keygen", alg, &key, &public]);
        let msg = s.write("msg", format!("signed by qubesec with a Python {alg} key"));
        let sig = s.path("sig");
        qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig]).success();
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig]).success();
        py(&["sig-verify", &public, &msg, &sig]);
    }
}

#[test]
fn python_verifies_our_signatures() {
    let s = Scratch::new();
    let msg = s.write("msg", b"interop message \x00\xff");
    for alg in PY_SIGS {
        let (key, public) = keygen(&s, "sig", alg, alg);
        let (sig, sig_ctx) = (s.path("sig"), s.path("sig-ctx"));
        qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig]).success();
        py(&["sig-verify", &public, &msg, &sig]);
        qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig_ctx, "--context", "71756265736563"])
            .success();
        py(&["sig-verify", &public, &msg, &sig_ctx, "71756265736563"]);
        // The context is bound: Python rejects it without, or with another one.
        py_fails(&["sig-verify", &public, &msg, &sig_ctx]);
        py_fails(&["sig-verify", &public, &msg, &sig, "00"]);
    }
}

#[test]
fn we_verify_python_signatures() {
    let s = Scratch::new();
    let msg = s.write("msg", b"signed in Python");
    for alg in PY_SIGS {
        let (key, public) = (s.path(&format!("{alg}.py.key")), s.path(&format!("{alg}.py.pub")));
        py(&["keygen", alg, &key, &public]);
        let (sig, sig_ctx) = (s.path("sig"), s.path("sig-ctx"));
        py(&["sig-sign", &key, &msg, &sig]);
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig]).success();
        py(&["sig-sign", &key, &msg, &sig_ctx, "ff00"]);
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig_ctx, "--context", "ff00"]).success();
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig_ctx]).fails(1, &["invalid"]);
        let mut tampered = s.read("sig");
        tampered[42] ^= 0x04;
        let bad = s.write("bad.sig", &tampered);
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &bad]).fails(1, &["invalid"]);
    }
}

#[test]
fn fingerprint_is_sha256_of_the_der_spki() {
    let s = Scratch::new();
    for (kind, alg) in [("kem", "ML-KEM-768"), ("kem", "ML-KEM-1024"), ("sig", "ML-DSA-44"), ("sig", "ML-DSA-87")] {
        let (key, public) = keygen(&s, kind, alg, alg);
        let expected = py(&["spki-sha256", &public]).trim().to_owned();
        assert_eq!(expected.len(), 64);
        let want = format!("sha256:{expected}\n{}\n", &expected[..10]);
        assert_eq!(qubesec(["fingerprint", &public]).success().stdout_text(), want, "{alg} public key");
        assert_eq!(qubesec(["fingerprint", &key]).success().stdout_text(), want, "{alg} private key");
    }
}

#[test]
fn certificates_are_accepted_wherever_a_public_key_is_read() {
    // Python cannot issue ML-DSA certificates yet, so pyca.py assembles a
    // minimal X.509 v3 certificate by hand and signs it with ML-DSA.
    let s = Scratch::new();
    let (ca_key, ca_pub) = keygen(&s, "sig", "ML-DSA-65", "ca");
    let (kem_key, kem_pub) = keygen(&s, "kem", "ML-KEM-768", "kem");
    let (sig_cert, kem_cert) = (s.path("ca.crt"), s.path("kem.crt"));
    py(&["make-cert", &ca_pub, &ca_key, &sig_cert]);
    py(&["make-cert", &kem_pub, &ca_key, &kem_cert]);

    // fingerprint: the certificate's key, which is the public key's fingerprint.
    for (cert, public) in [(&sig_cert, &ca_pub), (&kem_cert, &kem_pub)] {
        let from_cert = qubesec(["fingerprint", cert]).success().stdout_text();
        assert_eq!(from_cert, qubesec(["fingerprint", public]).success().stdout_text());
        let independent = py(&["spki-sha256", cert]);
        assert!(from_cert.starts_with(&format!("sha256:{}", independent.trim())));
    }

    // kem encaps to a certificate.
    let (ct, ss1, ss2) = (s.path("ct"), s.path("ss1"), s.path("ss2"));
    qubesec(["kem", "encaps", "--pub", &kem_cert, "--ciphertext", &ct, "--secret", &ss1]).success();
    qubesec(["kem", "decaps", "--key", &kem_key, "--ciphertext", &ct, "--secret", &ss2]).success();
    assert_eq!(s.read("ss1"), s.read("ss2"));

    // sig verify against a certificate.
    let msg = s.write("msg", b"m");
    let sig = s.path("sig");
    qubesec(["sig", "sign", "--key", &ca_key, "--in", &msg, "--out", &sig]).success();
    qubesec(["sig", "verify", "--pub", &sig_cert, "--in", &msg, "--sig", &sig]).success();

    // Wrong key type through a certificate is still bad input.
    qubesec(["kem", "encaps", "--pub", &sig_cert, "--ciphertext", &ct, "--secret", &ss1])
        .fails(2, &["ca.crt", "wrong key type"]);
}

/// Our chain (ML-DSA-87 root, ML-DSA-65 intermediate, ML-DSA-44 leaf from a
/// CSR, and an ML-KEM-768 leaf): Python parses every certificate and CSR and
/// verifies each signature over the TBS bytes with the issuer's public key.
#[test]
fn python_parses_and_verifies_our_certificates_and_csrs() {
    let s = Scratch::new();
    let (root_key, _) = keygen(&s, "sig", "ML-DSA-87", "root");
    let (int_key, int_pub) = keygen(&s, "sig", "ML-DSA-65", "int");
    let (leaf_key, _) = keygen(&s, "sig", "ML-DSA-44", "leaf");
    let (_, kem_pub) = keygen(&s, "kem", "ML-KEM-768", "kem");
    let (root, int, leaf, kem, csr) =
        (s.path("root.pem"), s.path("int.pem"), s.path("leaf.pem"), s.path("kem.pem"), s.path("leaf.csr"));
    qubesec([
        "cert",
        "self-sign",
        "--key",
        &root_key,
        "--subject",
        "CN=Root CA,O=QubeSec,C=DE",
        "--ca",
        "--days",
        "3650",
        "--out",
        &root,
    ])
    .success();
    qubesec([
        "cert",
        "issue",
        "--ca-cert",
        &root,
        "--ca-key",
        &root_key,
        "--pub",
        &int_pub,
        "--subject",
        "CN=Issuing CA,O=QubeSec",
        "--ca",
        "--path-len",
        "0",
        "--out",
        &int,
    ])
    .success();
    qubesec([
        "csr",
        "create",
        "--key",
        &leaf_key,
        "--subject",
        "CN=api.example.com,O=Tenant",
        "--dns",
        "api.example.com",
        "--ip",
        "10.1.2.3",
        "--uri",
        "spiffe://cluster.local/ns/a/sa/b",
        "--out",
        &csr,
    ])
    .success();
    qubesec([
        "cert",
        "issue",
        "--ca-cert",
        &int,
        "--ca-key",
        &int_key,
        "--csr",
        &csr,
        "--eku",
        "serverAuth",
        "--days",
        "30",
        "--out",
        &leaf,
    ])
    .success();
    cert_issue(&int, &int_key, &kem_pub, "CN=kem", &[], &kem).success();

    let csr_info = py(&["check-csr", &csr]);
    assert!(csr_info.contains(r#""subject": "CN=api.example.com,O=Tenant""#), "{csr_info}");
    assert!(csr_info.contains("10.1.2.3") && csr_info.contains("spiffe://cluster.local/ns/a/sa/b"), "{csr_info}");

    let root_info = py(&["check-cert", &root, &root]);
    assert!(root_info.contains(r#""subject": "CN=Root CA,O=QubeSec,C=DE""#), "{root_info}");
    assert!(
        root_info.contains(r#""2.5.29.19": {"critical": true, "value": {"ca": true, "path_length": null}}"#),
        "{root_info}"
    );
    assert!(
        root_info.contains(r#""sig_oid": "2.16.840.1.101.3.4.3.19""#) && root_info.contains(r#""version": "v3""#),
        "{root_info}"
    );
    let int_info = py(&["check-cert", &int, &root]);
    assert!(int_info.contains(r#""path_length": 0"#) && int_info.contains(r#""key_cert_sign""#), "{int_info}");
    let leaf_info = py(&["check-cert", &leaf, &int]);
    for needle in [
        r#""api.example.com""#,
        r#""10.1.2.3""#,
        r#""1.3.6.1.5.5.7.3.1""#,
        r#""days": 30"#,
        r#""sig_oid": "2.16.840.1.101.3.4.3.18""#,
    ] {
        assert!(leaf_info.contains(needle), "{needle} in {leaf_info}");
    }
    let kem_info = py(&["check-cert", &kem, &int]);
    assert!(kem_info.contains(r#""2.5.29.15": {"critical": true, "value": ["key_encipherment"]}"#), "{kem_info}");

    // A certificate checked against the wrong issuer key fails in Python too.
    py_fails(&["check-cert", &leaf, &root]);
}

/// A chain built and signed by Python (its own DER, pyca's ML-DSA) verifies with
/// `qubesec cert verify`; we can issue under Python's root with Python's key.
#[test]
fn we_verify_certificates_python_produces() {
    let s = Scratch::new();
    py(&["make-chain", s.dir().to_str().unwrap()]);
    let (root, leaf, root_key) = (s.path("py-root.pem"), s.path("py-leaf.pem"), s.path("py-root.key"));
    assert_eq!(qubesec(["cert", "verify", "--ca", &root, &leaf]).success().stdout_text(), "OK\n");
    qubesec(["cert", "verify", "--ca", &root, "--host", "py.example.com", &leaf]).success();
    qubesec(["cert", "verify", "--ca", &root, "--host", "other.example.com", &leaf]).fails(1, &["not valid for host"]);
    let shown = qubesec(["cert", "show", &leaf]).success().stdout_text();
    assert!(shown.contains("Subject:          CN=pyca leaf") && shown.contains("DNS:py.example.com"), "{shown}");

    let (_, mine) = keygen(&s, "sig", "ML-DSA-44", "mine");
    let issued = s.path("mine.pem");
    cert_issue(&root, &root_key, &mine, "CN=mine", &[], &issued).success();
    qubesec(["cert", "verify", "--ca", &root, &issued]).success();
    py(&["check-cert", &issued, &root]);
}
