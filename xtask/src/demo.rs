//! `cargo xtask demo --cli`: a walk-through of the `qubesec` CLI.
//!
//! Builds `qubesec` and walks through the post-quantum lifecycle in a temp
//! directory: ML-KEM and X-Wing encapsulation, ML-DSA signatures (with a
//! tampered message rejected), HKDF, fingerprints. Fails loudly if any step
//! does not behave as it should.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::util;

struct Qubesec {
    bin: PathBuf,
    dir: PathBuf,
}

impl Qubesec {
    /// Runs `qubesec ARGS` in the demo dir, echoing the command, and returns (exit code, stdout).
    fn run(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        println!("$ qubesec {}", args.join(" "));
        let out = Command::new(&self.bin).args(args).current_dir(&self.dir).output().context("running qubesec")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(-1), stdout))
    }

    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let (code, out) = self.run(args)?;
        ensure!(code == 0, "qubesec {} exited {code}", args.join(" "));
        Ok(out)
    }

    fn read(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name)).with_context(|| format!("reading {name}"))
    }
}

pub(crate) fn run() -> anyhow::Result<()> {
    util::cargo(&["build", "--release", "--quiet", "-p", "qubesec-cli"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| util::root().join("target"));
    let dir = target.join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let q = Qubesec { bin: target.join("release/qubesec"), dir: dir.clone() };

    for alg in ["ML-KEM-768", "X-Wing"] {
        println!("\n== Key encapsulation with {alg}");
        q.ok(&["kem", "keygen", "--alg", alg, "--key", "alice.key.pem", "--pub", "alice.pub.pem"])?;
        q.ok(&["fingerprint", "alice.pub.pem"])?;
        q.ok(&["kem", "encaps", "--pub", "alice.pub.pem", "--ciphertext", "ct.bin", "--secret", "bob.ss"])?;
        q.ok(&["kem", "decaps", "--key", "alice.key.pem", "--ciphertext", "ct.bin", "--secret", "alice.ss"])?;
        ensure!(q.read("alice.ss")? == q.read("bob.ss")?, "{alg}: shared secrets differ");
        println!("shared secrets match ({} bytes, not shown)", q.read("alice.ss")?.len());
    }

    println!("\n== Session key from the shared secret (HKDF-SHA3-256)");
    q.ok(&[
        "kdf",
        "--hash",
        "sha3-256",
        "--ikm",
        "alice.ss",
        "--info-hex",
        "71756265736563",
        "--len",
        "32",
        "--out",
        "session.key",
    ])?;

    println!("\n== Signatures with ML-DSA-65");
    std::fs::write(dir.join("manifest.yaml"), "apiVersion: v1\nkind: ConfigMap\n")?;
    q.ok(&["sig", "keygen", "--alg", "ML-DSA-65", "--key", "signer.key.pem", "--pub", "signer.pub.pem"])?;
    let fp = q.ok(&["fingerprint", "signer.pub.pem"])?;
    ensure!(fp.lines().count() == 2 && fp.starts_with("sha256:"), "unexpected fingerprint output {fp:?}");
    q.ok(&[
        "sig",
        "sign",
        "--key",
        "signer.key.pem",
        "--in",
        "manifest.yaml",
        "--out",
        "manifest.sig",
        "--context",
        "71756265736563",
    ])?;
    let verify = [
        "sig",
        "verify",
        "--pub",
        "signer.pub.pem",
        "--in",
        "manifest.yaml",
        "--sig",
        "manifest.sig",
        "--context",
        "71756265736563",
    ];
    q.ok(&verify)?;
    std::fs::write(dir.join("manifest.yaml"), "apiVersion: v1\nkind: Secret\n")?;
    let (code, _) = q.run(&verify)?;
    if code != 1 {
        bail!("a tampered message should fail verification with exit 1, got {code}");
    }
    println!("tampered manifest rejected (exit 1), as it should be");

    println!(
        "\n== A certificate chain: ML-DSA-87 root, composite ML-DSA-65 + ECDSA P-256 intermediate, leaf from a CSR"
    );
    q.ok(&["sig", "keygen", "--alg", "ML-DSA-87", "--key", "ca.key.pem", "--pub", "ca.pub.pem"])?;
    q.ok(&[
        "cert",
        "self-sign",
        "--key",
        "ca.key.pem",
        "--subject",
        "CN=Demo Root CA,O=QubeSec",
        "--ca",
        "--days",
        "3650",
        "--out",
        "ca.pem",
    ])?;
    q.ok(&["sig", "keygen", "--alg", "MLDSA65-ECDSA-P256-SHA512", "--key", "int.key.pem", "--pub", "int.pub.pem"])?;
    q.ok(&[
        "cert",
        "issue",
        "--ca-cert",
        "ca.pem",
        "--ca-key",
        "ca.key.pem",
        "--pub",
        "int.pub.pem",
        "--subject",
        "CN=Demo Hybrid CA",
        "--ca",
        "--path-len",
        "0",
        "--out",
        "int.pem",
    ])?;
    q.ok(&[
        "csr",
        "create",
        "--key",
        "signer.key.pem",
        "--subject",
        "CN=api.demo.svc",
        "--dns",
        "api.demo.svc",
        "--out",
        "api.csr",
    ])?;
    q.ok(&[
        "cert",
        "issue",
        "--ca-cert",
        "int.pem",
        "--ca-key",
        "int.key.pem",
        "--csr",
        "api.csr",
        "--eku",
        "serverAuth",
        "--days",
        "30",
        "--out",
        "api.pem",
    ])?;
    q.ok(&["cert", "show", "api.pem"])?;
    q.ok(&["cert", "verify", "--ca", "ca.pem", "--intermediate", "int.pem", "--host", "api.demo.svc", "api.pem"])?;
    let (code, _) = q.run(&["cert", "verify", "--ca", "ca.pem", "api.pem"])?;
    ensure!(code == 1, "a chain missing its intermediate should fail with exit 1, got {code}");
    println!("chain without the intermediate rejected (exit 1), as it should be");

    println!("\n== Random bytes");
    q.ok(&["rand", "--bytes", "16", "--hex"])?;
    println!("\ndemo passed; files in {}", display(&dir));
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
