//! A throwaway PKI: a CA, the apiserver's serving certificate, an admin client
//! certificate (group `system:masters`) and the service-account key pair.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// The user name in the admin client certificate.
pub(crate) const ADMIN_USER: &str = "qubesec-testenv-admin";

/// The written PKI files.
#[derive(Debug, Clone)]
pub(crate) struct PkiFiles {
    pub(crate) ca_cert: PathBuf,
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) sa_key: PathBuf,
    pub(crate) sa_pub: PathBuf,
    /// PEM contents the kubeconfig embeds.
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// Generates every key and certificate and writes them into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<PkiFiles> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "qubesec-testenv-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "10.0.0.1".to_owned(),
    ])?;
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate()?;
    let serving_cert = serving.signed_by(&serving_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, ADMIN_USER);
    client.distinguished_name.push(DnType::OrganizationName, "system:masters");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca)?;

    let sa = KeyPair::generate()?;

    let files = PkiFiles {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    };
    write(&files.ca_cert, &files.ca_pem)?;
    write(&files.serving_cert, &serving_cert.pem())?;
    write(&files.serving_key, &serving_key.serialize_pem())?;
    write(&files.sa_key, &sa.serialize_pem())?;
    write(&files.sa_pub, &sa.public_key_pem())?;
    write(&dir.join("admin.crt"), &files.client_cert_pem)?;
    write(&dir.join("admin.key"), &files.client_key_pem)?;
    Ok(files)
}

impl PkiFiles {
    /// A kubeconfig for the admin user against `server`, with everything embedded.
    pub(crate) fn kubeconfig(&self, server: &str) -> String {
        let b64 = |s: &str| STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: qubesec-testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_USER}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: qubesec-testenv
  context:
    cluster: qubesec-testenv
    user: {ADMIN_USER}
current-context: qubesec-testenv
",
            ca = b64(&self.ca_pem),
            cert = b64(&self.client_cert_pem),
            key = b64(&self.client_key_pem),
        )
    }
}

/// Writes a file readable only by its owner (they hold private keys).
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("could not create {}", path.display()), e))?;
    f.write_all(contents.as_bytes()).map_err(|e| Error::io(format!("could not write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_pki_and_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path()).unwrap();
        for p in [&pki.ca_cert, &pki.serving_cert, &pki.serving_key, &pki.sa_key] {
            assert!(std::fs::read_to_string(p).unwrap().starts_with("-----BEGIN"));
        }
        let sa_pub = std::fs::read_to_string(&pki.sa_pub).unwrap();
        assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"), "{sa_pub}");
        let kc = pki.kubeconfig("https://127.0.0.1:1234");
        let parsed = kube::config::Kubeconfig::from_yaml(&kc).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("qubesec-testenv"));
        assert_eq!(parsed.clusters.len(), 1);
    }
}
