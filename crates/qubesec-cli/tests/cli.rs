//! End-to-end tests of the `qubesec` binary against the CLI contract:
//! every command's happy path and every exit-code rule.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Scratch, cert_issue, keygen, qubesec, qubesec_with_stdin};

const KEMS: [&str; 4] = ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024", "X-Wing"];
const ML_DSA: [&str; 3] = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"];
/// The fast SLH-DSA sets (the `s` sets are slow to sign in debug builds).
const SLH_DSA: [&str; 2] = ["SLH-DSA-SHA2-128f", "SLH-DSA-SHAKE-128f"];

fn pem_label(pem: &[u8]) -> String {
    let text = String::from_utf8(pem.to_vec()).expect("PEM is text");
    let first = text.lines().next().expect("PEM has a first line");
    first.trim_start_matches("-----BEGIN ").trim_end_matches("-----").to_owned()
}

fn flip_byte(data: &mut [u8], index: usize) {
    data[index] ^= 0x01;
}

// ---------------------------------------------------------------- kem

#[test]
fn kem_round_trip_every_algorithm() {
    let s = Scratch::new();
    for alg in KEMS {
        let (key, public) = keygen(&s, "kem", alg, alg);
        assert_eq!(pem_label(&std::fs::read(&key).unwrap()), "PRIVATE KEY");
        assert_eq!(pem_label(&std::fs::read(&public).unwrap()), "PUBLIC KEY");
        assert_eq!(s.mode(&format!("{alg}.key.pem")), 0o600, "private key must be 0600");

        let ct = s.path(&format!("{alg}.ct"));
        let ss1 = s.path(&format!("{alg}.ss1"));
        let ss2 = s.path(&format!("{alg}.ss2"));
        qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &ct, "--secret", &ss1]).success();
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &ct, "--secret", &ss2]).success();
        let sender = s.read(&format!("{alg}.ss1"));
        assert_eq!(sender.len(), 32);
        assert_eq!(sender, s.read(&format!("{alg}.ss2")), "{alg}: secrets differ");
        assert_eq!(s.mode(&format!("{alg}.ss1")), 0o600);
        assert_eq!(s.mode(&format!("{alg}.ss2")), 0o600);
        let expected_ct_len = match alg {
            "ML-KEM-512" => 768,
            "ML-KEM-768" => 1088,
            "ML-KEM-1024" => 1568,
            _ => 1120,
        };
        assert_eq!(s.read(&format!("{alg}.ct")).len(), expected_ct_len);
    }
}

#[test]
fn kem_seed_only_private_key_form() {
    // RFC 9935 seed-only: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { [0] 64 bytes } },
    // 86 bytes of DER in all for ML-KEM; ML-DSA's 32-byte seed gives 54 bytes.
    let s = Scratch::new();
    for (kind, alg, der_len) in [("kem", "ML-KEM-768", 86_usize), ("sig", "ML-DSA-65", 54)] {
        let (key, _) = keygen(&s, kind, alg, alg);
        let pem = String::from_utf8(std::fs::read(&key).unwrap()).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // 4 base64 characters per 3 bytes, with padding.
        assert_eq!(b64.len(), der_len.div_ceil(3) * 4, "{alg}: unexpected PKCS#8 size:\n{pem}");
    }
}

#[test]
fn kem_names_are_case_insensitive() {
    let s = Scratch::new();
    keygen(&s, "kem", "ml-kem-768", "lower");
    keygen(&s, "kem", "x-wing", "xwing");
}

#[test]
fn kem_wrong_but_well_formed_ciphertext_gives_the_implicit_rejection_secret() {
    let s = Scratch::new();
    for alg in KEMS {
        let (key, public) = keygen(&s, "kem", alg, alg);
        let ct = s.path("ct");
        qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &ct, "--secret", &s.path("ss")]).success();
        let mut bad = s.read("ct");
        flip_byte(&mut bad, 100);
        let bad_ct = s.write("bad.ct", &bad);
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &bad_ct, "--secret", &s.path("rej1")]).success();
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &bad_ct, "--secret", &s.path("rej2")]).success();
        let rejected = s.read("rej1");
        assert_eq!(rejected.len(), 32);
        assert_ne!(rejected, s.read("ss"), "{alg}: a tampered ciphertext must not give the real secret");
        assert_eq!(rejected, s.read("rej2"), "{alg}: implicit rejection is deterministic");
    }
}

#[test]
fn kem_wrong_length_ciphertext_is_bad_input() {
    let s = Scratch::new();
    let (key, public) = keygen(&s, "kem", "ML-KEM-768", "k");
    let ct = s.path("ct");
    qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &ct, "--secret", &s.path("ss")]).success();
    let full = s.read("ct");
    for (name, bytes) in
        [("short.ct", &full[..1087]), ("long.ct", &[&full[..], &[0u8][..]].concat()[..]), ("empty.ct", &[][..])]
    {
        let path = s.write(name, bytes);
        qubesec(["kem", "decaps", "--key", &key, "--ciphertext", &path, "--secret", &s.path("out")])
            .fails(2, &[name, "1088"]);
    }
    assert!(!s.dir().join("out").exists(), "no secret may be written on failure");
}

#[test]
fn kem_commands_reject_signature_keys() {
    let s = Scratch::new();
    let (sig_key, sig_pub) = keygen(&s, "sig", "ML-DSA-65", "dsa");
    let (_, kem_pub) = keygen(&s, "kem", "ML-KEM-768", "kem");
    let ct = s.path("ct");
    qubesec(["kem", "encaps", "--pub", &kem_pub, "--ciphertext", &ct, "--secret", &s.path("ss")]).success();
    qubesec(["kem", "decaps", "--key", &sig_key, "--ciphertext", &ct, "--secret", &s.path("x")])
        .fails(2, &["dsa.key.pem", "wrong key type", "ML-DSA-65"]);
    qubesec(["kem", "encaps", "--pub", &sig_pub, "--ciphertext", &s.path("c2"), "--secret", &s.path("s2")])
        .fails(2, &["dsa.pub.pem", "wrong key type"]);
    // A public key where a private key belongs, and vice versa.
    qubesec(["kem", "decaps", "--key", &kem_pub, "--ciphertext", &ct, "--secret", &s.path("x")])
        .fails(2, &["kem.pub.pem", "PRIVATE KEY"]);
    qubesec([
        "kem",
        "encaps",
        "--pub",
        &s.path("kem.key.pem"),
        "--ciphertext",
        &s.path("c3"),
        "--secret",
        &s.path("s3"),
    ])
    .fails(2, &["kem.key.pem", "PUBLIC KEY"]);
}

#[test]
fn keygen_rejects_the_wrong_kind_of_algorithm() {
    let s = Scratch::new();
    qubesec(["kem", "keygen", "--alg", "ML-DSA-65", "--key", &s.path("k"), "--pub", &s.path("p")])
        .fails(2, &["--alg", "ML-DSA-65 is a signature algorithm", "ML-KEM-512, ML-KEM-768, ML-KEM-1024, X-Wing"]);
    qubesec(["sig", "keygen", "--alg", "ML-KEM-768", "--key", &s.path("k"), "--pub", &s.path("p")])
        .fails(2, &["--alg", "ML-KEM-768 is a KEM", "ML-DSA-44", "SLH-DSA-SHAKE-256f"]);
    // A deprecated alias of the wrong kind: an error, not a warning.
    qubesec(["kem", "keygen", "--alg", "Dilithium3", "--key", &s.path("k"), "--pub", &s.path("p")])
        .fails(2, &["signature algorithm"]);
    assert!(s.entries().is_empty(), "nothing may be written: {:?}", s.entries());
}

#[test]
fn unknown_algorithm_is_bad_input_and_lists_the_choices() {
    let s = Scratch::new();
    qubesec(["kem", "keygen", "--alg", "RSA-2048", "--key", &s.path("k"), "--pub", &s.path("p")])
        .fails(2, &["--alg", "RSA-2048", "ML-KEM-768"]);
    qubesec(["sig", "keygen", "--alg", "Ed25519", "--key", &s.path("k"), "--pub", &s.path("p")])
        .fails(2, &["--alg", "Ed25519", "ML-DSA-65"]);
}

#[test]
fn deprecated_aliases_warn_once_and_proceed() {
    let s = Scratch::new();
    for (kind, alias, canonical) in [
        ("kem", "Kyber512", "ML-KEM-512"),
        ("kem", "kyber768", "ML-KEM-768"),
        ("kem", "Kyber1024", "ML-KEM-1024"),
        ("sig", "Dilithium2", "ML-DSA-44"),
        ("sig", "DILITHIUM3", "ML-DSA-65"),
        ("sig", "Dilithium5", "ML-DSA-87"),
    ] {
        let (key, public) = (s.path(&format!("{alias}.key")), s.path(&format!("{alias}.pub")));
        let run = qubesec([kind, "keygen", "--alg", alias, "--key", &key, "--pub", &public]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "exactly one warning line: {:?}", run.stderr);
        assert!(run.stderr.contains("deprecated") && run.stderr.contains(canonical), "{:?}", run.stderr);
        // The key really is the canonical parameter set: same SPKI size as a fresh canonical key.
        let (_, reference) = keygen(&s, kind, canonical, &format!("ref-{canonical}"));
        assert_eq!(std::fs::read(&public).unwrap().len(), std::fs::read(&reference).unwrap().len(), "{alias}");
    }
}

// ---------------------------------------------------------------- sig

#[test]
fn sig_round_trip_ml_dsa_and_slh_dsa() {
    let s = Scratch::new();
    let msg = s.write("msg", b"attack at dawn");
    for alg in ML_DSA.iter().chain(SLH_DSA.iter()) {
        let (key, public) = keygen(&s, "sig", alg, alg);
        assert_eq!(s.mode(&format!("{alg}.key.pem")), 0o600);
        let sig = s.path(&format!("{alg}.sig"));
        qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig]).success();
        let run = qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig]).success();
        assert_eq!(run.stdout_text(), "OK\n");

        // With a context.
        let sig_ctx = s.path(&format!("{alg}.ctx.sig"));
        qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig_ctx, "--context", "0a0B0c"]).success();
        qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig_ctx, "--context", "0a0b0c"]).success();
    }
}

#[test]
fn ml_dsa_signing_is_hedged() {
    let s = Scratch::new();
    let msg = s.write("msg", b"same message");
    let (key, _) = keygen(&s, "sig", "ML-DSA-44", "k");
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("a")]).success();
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("b")]).success();
    assert_eq!(s.read("a").len(), 2420);
    assert_ne!(s.read("a"), s.read("b"), "hedged signing must randomize");
}

#[test]
fn invalid_signatures_exit_1() {
    let s = Scratch::new();
    let msg = s.write("msg", b"attack at dawn");
    let (key, public) = keygen(&s, "sig", "ML-DSA-65", "k");
    let sig = s.path("sig");
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &sig, "--context", "aa"]).success();
    let good = s.read("sig");

    // Tampered signature.
    let mut tampered = good.clone();
    flip_byte(&mut tampered, 10);
    let bad = s.write("tampered.sig", &tampered);
    let run = qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &bad, "--context", "aa"])
        .fails(1, &["tampered.sig", "invalid"]);
    assert!(run.stdout.is_empty());

    // Wrong context, no context.
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig, "--context", "ab"]).fails(1, &["invalid"]);
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig]).fails(1, &["invalid"]);

    // Tampered message.
    let other = s.write("other", b"attack at dusk");
    qubesec(["sig", "verify", "--pub", &public, "--in", &other, "--sig", &sig, "--context", "aa"])
        .fails(1, &["invalid"]);

    // Truncated and empty signatures are checked and invalid, too.
    let short = s.write("short.sig", &good[..100]);
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &short, "--context", "aa"])
        .fails(1, &["invalid"]);
    let empty = s.write("empty.sig", b"");
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &empty, "--context", "aa"])
        .fails(1, &["invalid"]);

    // Someone else's key.
    let (_, other_pub) = keygen(&s, "sig", "ML-DSA-65", "other");
    qubesec(["sig", "verify", "--pub", &other_pub, "--in", &msg, "--sig", &sig, "--context", "aa"])
        .fails(1, &["invalid"]);
    // A key of another parameter set.
    let (_, pub44) = keygen(&s, "sig", "ML-DSA-44", "p44");
    qubesec(["sig", "verify", "--pub", &pub44, "--in", &msg, "--sig", &sig, "--context", "aa"]).fails(1, &["invalid"]);
}

#[test]
fn context_rules() {
    let s = Scratch::new();
    let msg = s.write("msg", b"m");
    let (key, public) = keygen(&s, "sig", "ML-DSA-44", "k");
    let max = "ab".repeat(255);
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("sig"), "--context", &max]).success();
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &s.path("sig"), "--context", &max]).success();

    let too_long = "ab".repeat(256);
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("x"), "--context", &too_long])
        .fails(2, &["--context", "256 bytes", "255"]);
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &s.path("sig"), "--context", &too_long])
        .fails(2, &["--context", "255"]);
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("x"), "--context", "xyz"])
        .fails(2, &["--context", "not valid hex"]);
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("x"), "--context", "abc"])
        .fails(2, &["--context", "odd number"]);
    assert!(!s.dir().join("x").exists());
    // An empty --context is the empty context.
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("e"), "--context", ""]).success();
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &s.path("e")]).success();
}

#[test]
fn sig_commands_reject_kem_keys() {
    let s = Scratch::new();
    let msg = s.write("msg", b"m");
    let (kem_key, kem_pub) = keygen(&s, "kem", "ML-KEM-768", "kem");
    qubesec(["sig", "sign", "--key", &kem_key, "--in", &msg, "--out", &s.path("sig")])
        .fails(2, &["kem.key.pem", "wrong key type", "ML-KEM-768"]);
    let sig = s.write("sig", [0u8; 2420]);
    qubesec(["sig", "verify", "--pub", &kem_pub, "--in", &msg, "--sig", &sig])
        .fails(2, &["kem.pub.pem", "wrong key type"]);
}

#[test]
fn message_from_stdin() {
    let s = Scratch::new();
    let (key, public) = keygen(&s, "sig", "ML-DSA-44", "k");
    let sig = s.path("sig");
    qubesec_with_stdin(["sig", "sign", "--key", &key, "--in", "-", "--out", &sig], b"piped").success();
    let msg = s.write("msg", b"piped");
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &sig]).success();
    qubesec_with_stdin(["sig", "verify", "--pub", &public, "--in", "-", "--sig", &sig], b"piped").success();
}

// ---------------------------------------------------------------- bad inputs

#[test]
fn missing_files_are_bad_input() {
    let s = Scratch::new();
    let nope = s.path("nope.pem");
    let (key, public) = keygen(&s, "sig", "ML-DSA-44", "k");
    let msg = s.write("msg", b"m");
    qubesec(["kem", "encaps", "--pub", &nope, "--ciphertext", &s.path("c"), "--secret", &s.path("s")])
        .fails(2, &["nope.pem", "No such file"]);
    qubesec(["kem", "decaps", "--key", &nope, "--ciphertext", &s.path("c"), "--secret", &s.path("s")])
        .fails(2, &["nope.pem"]);
    qubesec(["sig", "sign", "--key", &key, "--in", &s.path("nomsg"), "--out", &s.path("sig")]).fails(2, &["nomsg"]);
    qubesec(["sig", "verify", "--pub", &public, "--in", &msg, "--sig", &s.path("nosig")]).fails(2, &["nosig"]);
    qubesec(["fingerprint", &nope]).fails(2, &["nope.pem"]);
    // A directory where a file belongs.
    qubesec(["fingerprint", s.dir().to_str().unwrap()]).fails(2, &["directory"]);
    // An output in a directory that does not exist.
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("no/such/dir/sig")])
        .fails(2, &["no/such/dir/sig"]);
}

#[test]
fn malformed_pem_is_bad_input() {
    let s = Scratch::new();
    let msg = s.write("msg", b"m");
    let (good_key, good_pub) = keygen(&s, "sig", "ML-DSA-44", "good");
    let good_key_pem = String::from_utf8(std::fs::read(&good_key).unwrap()).unwrap();
    let good_pub_pem = String::from_utf8(std::fs::read(&good_pub).unwrap()).unwrap();

    let garbage = s.write("garbage.pem", b"this is not PEM at all\n");
    let binary = s.write("binary.pem", [0xffu8, 0x00, 0x80, 0x12]);
    let broken_b64 = s.write("b64.pem", good_key_pem.replace('A', "*"));
    let truncated_key = {
        // Drop the last base64 line: valid PEM framing, truncated DER.
        let mut lines: Vec<&str> = good_key_pem.lines().collect();
        lines.remove(lines.len() - 2);
        s.write("truncated.pem", lines.join("\n") + "\n")
    };
    let truncated_pub = {
        let mut lines: Vec<&str> = good_pub_pem.lines().collect();
        lines.remove(lines.len() - 2);
        s.write("truncated.pub.pem", lines.join("\n") + "\n")
    };
    let unknown_label = s.write("label.pem", good_key_pem.replace("PRIVATE KEY", "EC PRIVATE KEY"));

    for key in [&garbage, &binary, &broken_b64, &truncated_key, &unknown_label] {
        let name = std::path::Path::new(key).file_name().unwrap().to_str().unwrap();
        qubesec(["sig", "sign", "--key", key, "--in", &msg, "--out", &s.path("sig")]).fails(2, &[name]);
        qubesec(["kem", "decaps", "--key", key, "--ciphertext", &msg, "--secret", &s.path("ss")]).fails(2, &[name]);
        qubesec(["fingerprint", key]).fails(2, &[name]);
    }
    for public in [&garbage, &truncated_pub] {
        let name = std::path::Path::new(public).file_name().unwrap().to_str().unwrap();
        qubesec(["sig", "verify", "--pub", public, "--in", &msg, "--sig", &msg]).fails(2, &[name]);
        qubesec(["kem", "encaps", "--pub", public, "--ciphertext", &s.path("c"), "--secret", &s.path("ss")])
            .fails(2, &[name]);
    }
    qubesec(["sig", "sign", "--key", &truncated_key, "--in", &msg, "--out", &s.path("sig")])
        .fails(2, &["truncated.pem", "PKCS#8"]);
    assert!(!s.dir().join("sig").exists() && !s.dir().join("ss").exists());
}

#[test]
fn pkcs8_with_an_inconsistent_both_form_is_rejected() {
    // A "both" ML-DSA-44 key whose expanded half is zeros: must not load.
    // DER: SEQUENCE { INTEGER 0, SEQUENCE { OID 2.16.840.1.101.3.4.3.17 },
    //                 OCTET STRING { SEQUENCE { OCTET STRING (32), OCTET STRING (2560) } } }
    let mut inner = vec![0x04, 0x20];
    inner.extend([7u8; 32]);
    inner.extend([0x04, 0x82, 0x0a, 0x00]);
    inner.extend(vec![0u8; 2560]);
    let mut both = vec![0x30, 0x82];
    both.extend(u16::try_from(inner.len()).unwrap().to_be_bytes());
    both.extend(inner);
    let mut body = vec![0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11];
    body.extend([0x04, 0x82]);
    body.extend(u16::try_from(both.len()).unwrap().to_be_bytes());
    body.extend(both);
    let mut der = vec![0x30, 0x82];
    der.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    der.extend(body);
    let pem = pem_encode("PRIVATE KEY", &der);
    let s = Scratch::new();
    let key = s.write("both.pem", pem);
    let msg = s.write("msg", b"m");
    qubesec(["sig", "sign", "--key", &key, "--in", &msg, "--out", &s.path("sig")])
        .fails(2, &["both.pem", "inconsistent"]);
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

// ---------------------------------------------------------------- outputs

#[test]
fn keygen_replaces_existing_files_atomically_with_secret_mode() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let key = s.write("k.pem", b"old key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let public = s.write("p.pem", b"old pub");
    qubesec(["kem", "keygen", "--alg", "ML-KEM-512", "--key", &key, "--pub", &public]).success();
    assert_eq!(pem_label(&s.read("k.pem")), "PRIVATE KEY");
    assert_eq!(pem_label(&s.read("p.pem")), "PUBLIC KEY");
    assert_eq!(s.mode("k.pem"), 0o600, "an overwritten private key must become 0600");
    assert_eq!(s.entries(), vec!["k.pem", "p.pem"], "no temporary files left behind");
}

#[test]
fn keygen_refuses_the_same_file_for_key_and_pub() {
    let s = Scratch::new();
    let same = s.path("same.pem");
    qubesec(["sig", "keygen", "--alg", "ML-DSA-44", "--key", &same, "--pub", &same]).fails(2, &["same file"]);
    qubesec(["kem", "keygen", "--alg", "ML-KEM-512", "--key", &same, "--pub", &same]).fails(2, &["same file"]);
    assert!(s.entries().is_empty());
    let (_, public) = keygen(&s, "kem", "ML-KEM-512", "k");
    qubesec(["kem", "encaps", "--pub", &public, "--ciphertext", &same, "--secret", &same]).fails(2, &["same file"]);
    assert!(!s.dir().join("same.pem").exists());
}

// ---------------------------------------------------------------- kdf

const RFC5869_OKM: &str = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";

#[test]
fn kdf_rfc5869_test_case_1() {
    let s = Scratch::new();
    let ikm = s.write("ikm", [0x0bu8; 22]);
    let out = s.path("okm");
    qubesec([
        "kdf",
        "--hash",
        "sha256",
        "--ikm",
        &ikm,
        "--salt-hex",
        "000102030405060708090a0b0c",
        "--info-hex",
        "f0f1f2f3f4f5f6f7f8f9",
        "--len",
        "42",
        "--out",
        &out,
    ])
    .success();
    assert_eq!(hex_of(&s.read("okm")), RFC5869_OKM);
    assert_eq!(s.mode("okm"), 0o600);
}

#[test]
fn kdf_every_hash_and_length_limits() {
    let s = Scratch::new();
    let ikm = s.write("ikm", b"input key material");
    for (hash, hash_len) in [("sha256", 32), ("sha384", 48), ("sha512", 64), ("sha3-256", 32), ("sha3-512", 64)] {
        let max = 255 * hash_len;
        qubesec(["kdf", "--hash", hash, "--ikm", &ikm, "--len", &max.to_string(), "--out", &s.path(hash)]).success();
        assert_eq!(s.read(hash).len(), max);
        qubesec(["kdf", "--hash", hash, "--ikm", &ikm, "--len", &(max + 1).to_string(), "--out", &s.path("x")])
            .fails(2, &["--len", "out of range", &max.to_string()]);
    }
    // Different hashes give different keys; salt and info matter. (Not salt
    // "00": HMAC zero-pads its key, so that equals the empty salt.)
    qubesec(["kdf", "--hash", "SHA256", "--ikm", &ikm, "--len", "32", "--out", &s.path("a")]).success();
    qubesec(["kdf", "--hash", "sha3-256", "--ikm", &ikm, "--len", "32", "--out", &s.path("b")]).success();
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "32", "--salt-hex", "01", "--out", &s.path("c")])
        .success();
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "32", "--info-hex", "00", "--out", &s.path("d")])
        .success();
    let outs: Vec<Vec<u8>> = ["a", "b", "c", "d"].iter().map(|n| s.read(n)).collect();
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            assert_ne!(outs[i], outs[j]);
        }
    }
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "0", "--out", &s.path("x")]).fails(2, &["--len"]);
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "ten", "--out", &s.path("x")])
        .fails(2, &["--len", "ten"]);
    qubesec(["kdf", "--hash", "md5", "--ikm", &ikm, "--len", "16", "--out", &s.path("x")])
        .fails(2, &["--hash", "md5", "sha3-512"]);
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "16", "--salt-hex", "0g", "--out", &s.path("x")])
        .fails(2, &["--salt-hex", "not valid hex"]);
    qubesec(["kdf", "--hash", "sha256", "--ikm", &ikm, "--len", "16", "--info-hex", "123", "--out", &s.path("x")])
        .fails(2, &["--info-hex", "odd"]);
    qubesec(["kdf", "--hash", "sha256", "--ikm", &s.path("none"), "--len", "16", "--out", &s.path("x")])
        .fails(2, &["none"]);
    assert!(!s.dir().join("x").exists());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- fingerprint

fn assert_fingerprint_shape(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(stdout.ends_with('\n'));
    assert_eq!(lines.len(), 2, "exactly two lines: {stdout:?}");
    let long = lines[0].strip_prefix("sha256:").expect("sha256: prefix");
    assert_eq!(long.len(), 64);
    assert!(long.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "lowercase hex: {long}");
    assert_eq!(lines[1], &long[..10]);
    long.to_owned()
}

#[test]
fn fingerprint_of_public_and_private_keys_agree() {
    let s = Scratch::new();
    for (kind, alg) in [("kem", "ML-KEM-768"), ("kem", "X-Wing"), ("sig", "ML-DSA-87"), ("sig", "SLH-DSA-SHA2-128s")] {
        let (key, public) = keygen(&s, kind, alg, alg);
        let from_pub = assert_fingerprint_shape(&qubesec(["fingerprint", &public]).success().stdout_text());
        let from_key = assert_fingerprint_shape(&qubesec(["fingerprint", &key]).success().stdout_text());
        assert_eq!(from_pub, from_key, "{alg}");
    }
}

#[test]
fn fingerprint_rejects_other_pem_blocks() {
    let s = Scratch::new();
    let f = s.write("csr.pem", "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n");
    qubesec(["fingerprint", &f]).fails(2, &["csr.pem", "CERTIFICATE REQUEST"]);
}

// ---------------------------------------------------------------- rand

#[test]
fn rand_raw_and_hex() {
    let a = qubesec(["rand", "--bytes", "32"]).success().stdout;
    let b = qubesec(["rand", "--bytes", "32"]).success().stdout;
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    let h = qubesec(["rand", "--bytes", "16", "--hex"]).success().stdout_text();
    assert_eq!(h.len(), 33);
    assert!(h.ends_with('\n'));
    assert!(h.trim_end().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    // Larger than one internal chunk.
    assert_eq!(qubesec(["rand", "--bytes", "200000"]).success().stdout.len(), 200_000);
    assert_eq!(qubesec(["rand", "--bytes", "100000", "--hex"]).success().stdout.len(), 200_001);
}

#[test]
fn rand_rejects_bad_counts() {
    qubesec(["rand", "--bytes", "0"]).fails(2, &["--bytes"]);
    qubesec(["rand", "--bytes", "lots"]).fails(2, &["--bytes", "lots"]);
    qubesec(["rand", "--bytes", "-5"]).fails(2, &["--bytes"]);
    qubesec(["rand", "--bytes", "99999999999999999999"]).fails(2, &["--bytes"]);
    assert_eq!(qubesec(["rand"]).code, 2);
}

// ---------------------------------------------------------------- cert, help, usage

/// The contract's cert commands end to end, with the exit codes: a CA chain
/// with a composite intermediate, a KEM leaf, and every kind of bad input.
#[test]
fn cert_commands_follow_the_contract() {
    let s = Scratch::new();
    let (root_key, _) = keygen(&s, "sig", "ML-DSA-65", "root");
    let (int_key, int_pub) = keygen(&s, "sig", "MLDSA87-ECDSA-P384-SHA512", "int");
    let (leaf_key, leaf_pub) = keygen(&s, "sig", "SLH-DSA-SHA2-128f", "leaf");
    let (kem_key, kem_pub) = keygen(&s, "kem", "ML-KEM-512", "kem");
    let (root, int, leaf) = (s.path("root.pem"), s.path("int.pem"), s.path("leaf.pem"));
    qubesec(["cert", "self-sign", "--key", &root_key, "--subject", "CN=Root,O=QubeSec", "--ca", "--out", &root])
        .success();
    cert_issue(&root, &root_key, &int_pub, "CN=Hybrid", &["--ca"], &int).success();
    cert_issue(
        &int,
        &int_key,
        &leaf_pub,
        "CN=leaf",
        &["--dns", "leaf.example", "--ip", "192.0.2.1", "--days", "7"],
        &leaf,
    )
    .success();
    assert_eq!(s.mode("leaf.pem") & 0o777, 0o644 & !0o022);

    // Valid: exit 0 and OK; the self-signed root against itself too.
    assert_eq!(
        qubesec(["cert", "verify", "--ca", &root, "--intermediate", &int, &leaf]).success().stdout_text(),
        "OK\n"
    );
    qubesec(["cert", "verify", "--ca", &root, &root]).success();
    // A bundle of intermediates in one file works.
    let bundle = s.write("bundle.pem", [s.read("int.pem"), s.read("root.pem")].concat());
    qubesec(["cert", "verify", "--ca", &root, "--intermediate", &bundle, &leaf]).success();
    // Invalid: exit 1 with the failing certificate and the reason.
    qubesec(["cert", "verify", "--ca", &root, &leaf]).fails(1, &["leaf.pem", "CN=leaf", "its issuer (CN=Hybrid)"]);
    qubesec(["cert", "verify", "--ca", &int, &root]).fails(1, &["CN=Root"]);
    let mut tampered = s.read("leaf.pem");
    let at = tampered.len() - 40;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = s.write("tampered.pem", tampered);
    qubesec(["cert", "verify", "--ca", &root, "--intermediate", &int, &tampered])
        .fails(1, &["signature does not verify"]);

    // fingerprint of a certificate is its key's fingerprint, composite keys included.
    let fp = |p: &str| qubesec(["fingerprint", p]).success().stdout_text();
    assert_eq!(fp(&int), fp(&int_pub));
    assert_eq!(fp(&int_key), fp(&int_pub));

    // show summarizes.
    let shown = qubesec(["cert", "show", &leaf]).success().stdout_text();
    for needle in [
        "Subject:          CN=leaf",
        "Issuer:           CN=Hybrid",
        "Key algorithm:    SLH-DSA-SHA2-128f",
        "Signature:        MLDSA87-ECDSA-P384-SHA512",
        "DNS:leaf.example, IP:192.0.2.1",
        "CA:               no",
    ] {
        assert!(shown.contains(needle), "{needle:?} in {shown}");
    }
    assert!(shown.contains(&fp(&leaf_pub).lines().next().unwrap().to_owned()), "{shown}");

    // A KEM key gets a certificate (keyEncipherment) but cannot sign one.
    let kem_cert = s.path("kem.pem");
    cert_issue(&int, &int_key, &kem_pub, "CN=kem", &[], &kem_cert).success();
    assert!(qubesec(["cert", "show", &kem_cert]).success().stdout_text().contains("Key usage:        keyEncipherment"));
    qubesec(["cert", "self-sign", "--key", &kem_key, "--subject", "CN=x", "--out", &s.path("x.pem")])
        .fails(2, &["kem.key.pem", "must be a signature key"]);

    // Bad input: exit 2, one line naming the option or file.
    for (args, needles) in [
        (
            vec!["cert", "self-sign", "--key", &root_key, "--subject", "XX=1", "--out", "x.pem"],
            vec!["--subject", "unknown attribute type"],
        ),
        (vec!["cert", "self-sign", "--key", &root_key, "--out", "x.pem"], vec!["--subject", "is required"]),
        (
            vec!["cert", "self-sign", "--key", &root_key, "--subject", "CN=x", "--dns", "bad name", "--out", "x.pem"],
            vec!["--dns"],
        ),
        (
            vec!["cert", "self-sign", "--key", &root_key, "--subject", "CN=x", "--ip", "300.1.1.1", "--out", "x.pem"],
            vec!["--ip", "not an IPv4 or IPv6"],
        ),
        (
            vec!["cert", "self-sign", "--key", &root_key, "--subject", "CN=x", "--days", "0", "--out", "x.pem"],
            vec!["--days", "out of range"],
        ),
        (
            vec!["cert", "self-sign", "--key", &root_key, "--subject", "CN=x", "--eku", "fly", "--out", "x.pem"],
            vec!["--eku"],
        ),
        (vec!["cert", "self-sign", "--key", "missing.pem", "--subject", "CN=x", "--out", "x.pem"], vec!["missing.pem"]),
        (
            vec![
                "cert",
                "issue",
                "--ca-cert",
                &leaf,
                "--ca-key",
                &leaf_key,
                "--pub",
                &kem_pub,
                "--subject",
                "CN=x",
                "--out",
                "x.pem",
            ],
            vec!["is not a CA"],
        ),
        (
            vec![
                "cert",
                "issue",
                "--ca-cert",
                &root,
                "--ca-key",
                &int_key,
                "--pub",
                &kem_pub,
                "--subject",
                "CN=x",
                "--out",
                "x.pem",
            ],
            vec!["does not belong to the issuer"],
        ),
        (vec!["cert", "verify", "--ca", &root_key, &leaf], vec!["root.key.pem", "CERTIFICATE"]),
        (vec!["cert", "verify", "--ca", &root, &leaf_pub], vec!["leaf.pub.pem", "CERTIFICATE"]),
    ] {
        let run = qubesec(&args).fails(2, &needles);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    }
    assert!(!std::path::Path::new(&s.path("x.pem")).exists());
}

/// CSR round trip: create, issue from it (SANs copied, subject overridable), tamper.
#[test]
fn csr_create_and_issue() {
    let s = Scratch::new();
    let (ca_key, _) = keygen(&s, "sig", "ML-DSA-44", "ca");
    let (key, _) = keygen(&s, "sig", "ML-DSA-44", "svc");
    let (ca, csr, cert) = (s.path("ca.pem"), s.path("svc.csr"), s.path("svc.pem"));
    qubesec(["cert", "self-sign", "--key", &ca_key, "--subject", "CN=CA", "--ca", "--out", &ca]).success();
    qubesec([
        "csr",
        "create",
        "--key",
        &key,
        "--subject",
        "CN=svc",
        "--dns",
        "svc.ns.svc",
        "--email",
        "ops@example.com",
        "--out",
        &csr,
    ])
    .success();
    assert!(String::from_utf8(s.read("svc.csr")).unwrap().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    qubesec([
        "cert",
        "issue",
        "--ca-cert",
        &ca,
        "--ca-key",
        &ca_key,
        "--csr",
        &csr,
        "--subject",
        "CN=renamed",
        "--out",
        &cert,
    ])
    .success();
    let shown = qubesec(["cert", "show", &cert]).success().stdout_text();
    assert!(shown.contains("CN=renamed") && shown.contains("DNS:svc.ns.svc, email:ops@example.com"), "{shown}");
    assert_eq!(
        qubesec(["fingerprint", &cert]).success().stdout_text(),
        qubesec(["fingerprint", &key]).success().stdout_text()
    );

    let text = String::from_utf8(s.read("svc.csr")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = &mut lines[3];
    let flipped = if line.starts_with('A') { "B" } else { "A" };
    line.replace_range(0..1, flipped);
    let forged = s.write("forged.csr", lines.join("\n") + "\n");
    qubesec(["cert", "issue", "--ca-cert", &ca, "--ca-key", &ca_key, "--csr", &forged, "--out", &s.path("f.pem")])
        .fails(2, &["forged.csr"]);
    let both = qubesec([
        "cert",
        "issue",
        "--ca-cert",
        &ca,
        "--ca-key",
        &ca_key,
        "--csr",
        &csr,
        "--pub",
        &key,
        "--out",
        &s.path("f.pem"),
    ]);
    assert_eq!(both.code, 2, "--csr and --pub are exclusive (clap usage error)");
}

#[test]
fn help_everywhere() {
    for args in [
        vec!["--help"],
        vec!["kem", "--help"],
        vec!["kem", "keygen", "--help"],
        vec!["kem", "encaps", "--help"],
        vec!["kem", "decaps", "--help"],
        vec!["sig", "--help"],
        vec!["sig", "keygen", "--help"],
        vec!["sig", "sign", "--help"],
        vec!["sig", "verify", "--help"],
        vec!["kdf", "--help"],
        vec!["fingerprint", "--help"],
        vec!["rand", "--help"],
        vec!["cert", "--help"],
        vec!["cert", "self-sign", "--help"],
        vec!["cert", "show", "--help"],
        vec!["csr", "create", "--help"],
        vec!["cert", "issue", "--help"],
        vec!["cert", "verify", "--help"],
        vec!["help", "kem"],
    ] {
        let run = qubesec(&args).success();
        let text = run.stdout_text();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    assert!(qubesec(["--version"]).success().stdout_text().starts_with("qubesec "));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(qubesec::<[&str; 0], &str>([]).code, 2);
    assert_eq!(qubesec(["frobnicate"]).code, 2);
    assert_eq!(qubesec(["kem"]).code, 2);
    assert_eq!(qubesec(["kem", "keygen", "--alg", "ML-KEM-768"]).code, 2);
    assert_eq!(qubesec(["sig", "sign", "--key", "k.pem", "--in", "m", "--out", "s", "--bogus"]).code, 2);
}
