//! `QuantumCertificate`: self-signed or issued by a CA `QuantumCertificate`, kept in a
//! `kubernetes.io/tls` Secret, re-issued on spec, issuer or key change and renewed at `renewalTime`.
//!
//! The certificate is built from the spec by the operator (the CA key never signs bytes a
//! tenant chose); the issuer's limits carry over: notAfter is capped at the issuer's (with a
//! `ValidityCapped` Warning event), and a CA under a CA with pathLen `n` gets at most `n - 1`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use qubesec_core::x509::{
    BACKDATE, Certificate, CertificateParams, DistinguishedName, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectPublicKey,
};
use qubesec_core::{PrivateKey, PublicKey, SigningKey};
use zeroize::Zeroizing;

use super::keypair::{load_private_key, private_key_pem, purpose_mismatch, rotation_period};
use crate::cache::{Run, Stores, Target};
use crate::crd::{
    CertificateStatus, KeyPurpose, OutputStatus, QuantumCertificate, QuantumCertificateSpec, Revision, RotationPolicy,
    Usage, is_ready, push_revision,
};
use crate::duration;
use crate::error::{Error, Result};
use crate::outputs::{OutputMetadata, SecretData, fingerprint, found, secret_data, short, write};
use crate::reconcile::{Managed, Outcome, Reconcile, State, managed, namespace};

managed!(QuantumCertificate, "certificate", CertificateStatus);

impl Reconcile for QuantumCertificate {
    fn references(&self) -> Vec<Target> {
        let own = self.namespace().unwrap_or_default();
        let mut refs = Vec::new();
        if let Some(r) = &self.spec.issuer_ref {
            refs.push(("QuantumCertificate", r.namespace.clone().unwrap_or_else(|| own.clone()), r.name.clone()));
        }
        if let Some(r) = &self.spec.key_pair_ref {
            refs.push(("QuantumSignatureKeyPair", r.namespace.clone().unwrap_or(own), r.name.clone()));
        }
        refs
    }

    fn store(stores: &Stores) -> &Store<Self> {
        &stores.certificates
    }

    async fn reconcile(obj: Arc<Self>, run: Arc<Run>) -> Result<Outcome<CertificateStatus>> {
        reconcile_inner(&obj, &run).await
    }
}

/// Why a certificate is (re-)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The first certificate.
    Issued,
    /// The Secret is gone.
    SecretRegenerated,
    /// A spec field that goes into the certificate changed.
    SpecChanged,
    /// The issuer's certificate changed (renewed, re-keyed, replaced).
    IssuerChanged,
    /// The referenced key pair rotated its key.
    KeyPairRotated,
    /// notAfter has passed.
    Expired,
    /// The renewal time has come.
    Renewed,
    /// The Secret holds another certificate than the recorded one.
    SecretModified,
}

impl Reason {
    /// The Event reason and type.
    fn event(self) -> (&'static str, EventType) {
        match self {
            Self::Issued => ("Issued", EventType::Normal),
            Self::SecretRegenerated => ("SecretRegenerated", EventType::Warning),
            Self::SpecChanged => ("SpecChanged", EventType::Normal),
            Self::IssuerChanged => ("IssuerChanged", EventType::Normal),
            Self::KeyPairRotated => ("KeyPairRotated", EventType::Normal),
            Self::Expired => ("Expired", EventType::Warning),
            Self::Renewed => ("Renewed", EventType::Normal),
            Self::SecretModified => ("SecretModified", EventType::Warning),
        }
    }
}

/// The certificate a Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredCert {
    /// `sha256:` over the certificate's DER.
    pub(crate) fingerprint: String,
    /// `sha256:` over its subject public key.
    pub(crate) key_fingerprint: String,
    /// notAfter.
    pub(crate) not_after: SystemTime,
    /// When it is due for renewal ([`renewal_time`]).
    pub(crate) renewal: SystemTime,
    /// Whether `tls.key` is there.
    pub(crate) has_key: bool,
}

/// What the certificate plan looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Digest of the spec fields that go into the certificate.
    pub(crate) spec_digest: String,
    /// The issuer certificate's fingerprint now (`None`: self-signed).
    pub(crate) issuer: Option<String>,
    /// With `keyPairRef`: the key pair's current fingerprint.
    pub(crate) key_pair: Option<String>,
    /// What the status recorded at the last issuance: spec digest, issuer, certificate.
    pub(crate) recorded_digest: Option<String>,
    /// The issuer fingerprint recorded.
    pub(crate) recorded_issuer: Option<String>,
    /// The certificate fingerprint recorded.
    pub(crate) recorded_certificate: Option<String>,
    /// The certificate in the Secret.
    pub(crate) stored: Option<StoredCert>,
}

/// Keep the stored certificate (`None`) or issue one, and why: cert-manager's policy chain,
/// each reason a check in order (pure).
pub(crate) fn plan(o: &Observed, now: SystemTime) -> Option<Reason> {
    let Some(c) = o.stored.as_ref().filter(|c| c.has_key) else {
        return Some(if o.recorded_certificate.is_some() { Reason::SecretRegenerated } else { Reason::Issued });
    };
    let issued_before = o.recorded_digest.is_some();
    if issued_before && o.recorded_digest.as_deref() != Some(o.spec_digest.as_str()) {
        Some(Reason::SpecChanged)
    } else if issued_before && o.recorded_issuer != o.issuer {
        Some(Reason::IssuerChanged)
    } else if o.key_pair.as_ref().is_some_and(|f| *f != c.key_fingerprint) {
        Some(Reason::KeyPairRotated)
    } else if now >= c.not_after {
        Some(Reason::Expired)
    } else if now >= c.renewal {
        Some(Reason::Renewed)
    } else if o.recorded_certificate.as_ref().is_some_and(|f| *f != c.fingerprint) {
        Some(Reason::SecretModified)
    } else {
        None
    }
}

/// When a certificate is due: `renewBefore` ahead of notAfter, or two thirds into its actual
/// validity when `renewBefore` is not shorter than that (a validity capped by the issuer);
/// earlier if `every` after issuance comes first.
pub(crate) fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    every: Option<Duration>,
) -> SystemTime {
    let issued = not_before.checked_add(BACKDATE).unwrap_or(not_before);
    let lifetime = not_after.duration_since(issued).unwrap_or_default();
    let before_expiry = if renew_before < lifetime {
        not_after.checked_sub(renew_before).unwrap_or(issued)
    } else {
        issued.checked_add(lifetime / 3 * 2).unwrap_or(not_after)
    };
    every.and_then(|e| issued.checked_add(e)).map_or(before_expiry, |t| t.min(before_expiry))
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default()
}

/// What an issuing CA contributes.
struct Issuer {
    cert: Certificate,
    key_pem: Zeroizing<Vec<u8>>,
    chain_pem: String,
    ca_pem: String,
}

/// The issuing CA; `Ok(None)` while it is not Ready.
fn issuer(run: &Run, ns: &str, name: &str) -> Result<Option<Issuer>> {
    let Some(ca) = run.stores.certificates.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
    if !ca.spec.is_ca {
        return Err(Error::user(
            "IssuerNotCA",
            format!("spec.issuerRef: QuantumCertificate {name} is not a CA (isCA: false)"),
        ));
    }
    if !is_ready(ca.common_status(), ca.metadata.generation) {
        return Ok(None);
    }
    let secret_name = ca.status().and_then(|s| s.output.secret_name.clone()).unwrap_or_else(|| ca.name_any());
    let Some(secret) = run.stores.secrets.get(&ObjectRef::new(&secret_name).within(ns)) else { return Ok(None) };
    let (Some(crt), Some(key), Some(ca_crt)) =
        (secret_data(&secret, "tls.crt"), secret_data(&secret, "tls.key"), secret_data(&secret, "ca.crt"))
    else {
        return Ok(None);
    };
    let cert = Certificate::from_pem(crt)
        .map_err(|e| Error::user("InvalidIssuer", format!("issuer Secret {secret_name}: tls.crt: {e}")))?;
    if ca.status().and_then(|s| s.certificate_fingerprint.clone()) != Some(cert.fingerprint().to_string()) {
        // The CA is being re-issued; its status change brings us back.
        return Ok(None);
    }
    let to_text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Error::user("InvalidIssuer", "issuer PEM is not UTF-8"));
    Ok(Some(Issuer { cert, key_pem: Zeroizing::new(key.to_vec()), chain_pem: to_text(crt)?, ca_pem: to_text(ca_crt)? }))
}

fn user(field: &str, e: impl std::fmt::Display) -> Error {
    Error::user("InvalidSpec", format!("{field}: {e}"))
}

/// Certificate parameters from the spec.
fn params(spec: &QuantumCertificateSpec, validity: Duration) -> Result<CertificateParams> {
    let subject = match &spec.subject {
        Some(s) => s.parse::<DistinguishedName>().map_err(|e| user("spec.subject", e))?,
        None => DistinguishedName::new(),
    };
    let mut p = CertificateParams::new(subject).valid_for(validity);
    if spec.is_ca {
        p = p.ca(spec.path_len);
    }
    for d in &spec.dns_names {
        p.subject_alt_names.push(SubjectAltName::dns(d).map_err(|e| user("spec.dnsNames", e))?);
    }
    for ip in &spec.ip_addresses {
        let ip: IpAddr = ip.parse().map_err(|e| user("spec.ipAddresses", format!("{ip:?}: {e}")))?;
        p.subject_alt_names.push(SubjectAltName::Ip(ip));
    }
    for u in &spec.uris {
        p.subject_alt_names.push(SubjectAltName::uri(u).map_err(|e| user("spec.uris", e))?);
    }
    for m in &spec.email_addresses {
        p.subject_alt_names.push(SubjectAltName::email(m).map_err(|e| user("spec.emailAddresses", e))?);
    }
    let mut ku = Vec::new();
    for u in &spec.usages {
        match u {
            Usage::DigitalSignature => ku.push(KeyUsage::DigitalSignature),
            Usage::ContentCommitment => ku.push(KeyUsage::NonRepudiation),
            Usage::CertSign => ku.push(KeyUsage::KeyCertSign),
            Usage::CrlSign => ku.push(KeyUsage::CrlSign),
            Usage::ServerAuth => p.extended_key_usage.push(ExtendedKeyUsage::ServerAuth),
            Usage::ClientAuth => p.extended_key_usage.push(ExtendedKeyUsage::ClientAuth),
            Usage::CodeSigning => p.extended_key_usage.push(ExtendedKeyUsage::CodeSigning),
            Usage::EmailProtection => p.extended_key_usage.push(ExtendedKeyUsage::EmailProtection),
            Usage::Timestamping => p.extended_key_usage.push(ExtendedKeyUsage::TimeStamping),
            Usage::OcspSigning => p.extended_key_usage.push(ExtendedKeyUsage::OcspSigning),
        }
    }
    if !ku.is_empty() {
        p.key_usage = Some(ku);
    }
    Ok(p)
}

/// Where the certificate's key comes from at issuance.
enum KeySource {
    /// A key pair's private key (PEM) with the fingerprint it must have.
    KeyPair(Zeroizing<Vec<u8>>, String),
    /// The key in the Secret (kept across renewals), if it is usable for `alg`; else a new one.
    Stored(Option<Zeroizing<Vec<u8>>>, qubesec_core::SignatureAlgorithm),
}

/// What an issuance made, and how long its key generation and its signing took.
struct Issued {
    cert: Certificate,
    key_pem: Zeroizing<String>,
    keygen: Option<(&'static str, Duration)>,
    /// The algorithm of the key that signed the certificate (its own, or the issuer's).
    signer: &'static str,
    signing: Duration,
}

/// Issues on the crypto pool: loads or makes the key, loads the issuer's key, signs.
fn issue(
    params: CertificateParams,
    key: KeySource,
    issuer: Option<(Certificate, Zeroizing<Vec<u8>>)>,
) -> Result<Issued> {
    let mut keygen = None;
    let key = match key {
        KeySource::KeyPair(pem, fp) => load_private_key(&pem, &fp, "spec.keyPairRef")?
            .into_signature()
            .map_err(|e| Error::user("WrongKeyType", format!("spec.keyPairRef: {e}")))?,
        KeySource::Stored(pem, alg) => {
            let kept = pem
                .and_then(|p| PrivateKey::from_pem(&p).ok())
                .and_then(|k| k.into_signature().ok())
                .filter(|k| k.algorithm() == alg);
            match kept {
                Some(k) => k,
                None => {
                    let started = std::time::Instant::now();
                    let k = SigningKey::generate(alg).map_err(|e| Error::bug(format!("key generation: {e}")))?;
                    keygen = Some((alg.name(), started.elapsed()));
                    k
                }
            }
        }
    };
    let public = PublicKey::from(key.verifying_key().map_err(|e| Error::bug(e.to_string()))?.clone());
    let spk = SubjectPublicKey::from_spki_der(&public.to_spki_der().map_err(|e| Error::bug(e.to_string()))?)
        .map_err(|e| Error::bug(e.to_string()))?;
    let (issued, signer, signing) = match issuer {
        None => {
            let started = std::time::Instant::now();
            (params.self_signed(&key), key.algorithm().name(), started.elapsed())
        }
        Some((cert, pem)) => {
            let ca_key = PrivateKey::from_pem(&pem)
                .and_then(PrivateKey::into_signature)
                .map_err(|e| Error::user("InvalidIssuer", format!("issuer Secret: tls.key: {e}")))?;
            let started = std::time::Instant::now();
            (params.issue(&spk, &cert, &ca_key), ca_key.algorithm().name(), started.elapsed())
        }
    };
    let cert = issued.map_err(|e| Error::user("IssuanceFailed", format!("cannot issue the certificate: {e}")))?;
    let key_pem = PrivateKey::Signature(key).to_pkcs8_pem().map_err(|e| Error::bug(e.to_string()))?;
    Ok(Issued { cert, key_pem, keygen, signer, signing })
}

/// The `kubernetes.io/tls` Secret for `cert`.
fn tls_secret(cert: &Certificate, chain: String, key_pem: &[u8], ca: String) -> Result<SecretData> {
    let key_fp = cert.key_fingerprint().to_string();
    let alg = cert.public_key().map(|k| k.algorithm().name().to_owned()).unwrap_or_else(|_| "composite".to_owned());
    let meta = OutputMetadata {
        certificate_fingerprint: Some(cert.fingerprint().to_string()),
        serial_number: Some(cert.serial_hex()),
        not_after: Some(rfc3339(cert.not_after())),
        ..OutputMetadata::new(
            "QuantumCertificate",
            &alg,
            &key_fp,
            &rfc3339(cert.not_before().checked_add(BACKDATE).unwrap_or(cert.not_before())),
        )
    };
    Ok(SecretData {
        type_: "kubernetes.io/tls",
        data: BTreeMap::from([
            ("tls.crt".to_owned(), chain.into_bytes()),
            ("tls.key".to_owned(), key_pem.to_vec()),
            ("ca.crt".to_owned(), ca.into_bytes()),
            ("metadata".to_owned(), meta.to_json().into_bytes()),
        ]),
    })
}

pub(crate) async fn reconcile_inner(obj: &QuantumCertificate, run: &Run) -> Result<Outcome<CertificateStatus>> {
    // Observe.
    let spec = &obj.spec;
    let name = spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let ns = namespace(obj)?;
    let previous = obj.status().cloned().unwrap_or_default();
    let validity = duration::parse(&spec.duration).map_err(|e| user("spec.duration", e))?;
    let renew_before = duration::parse(&spec.renew_before).map_err(|e| user("spec.renewBefore", e))?;
    if renew_before >= validity {
        return Err(user("spec.renewBefore", "must be shorter than spec.duration"));
    }
    let every = rotation_period(spec.rotation.as_ref())?;
    let issuer = match &spec.issuer_ref {
        None => None,
        Some(r) => {
            let ins = run.ref_namespace(&ns, "spec.issuerRef", r.namespace.as_deref())?;
            match issuer(run, &ins, &r.name)? {
                Some(i) => Some(i),
                None => {
                    let msg = format!("waiting for issuer QuantumCertificate {} to be Ready", r.name);
                    return Ok(Outcome::new(previous, State::pending("WaitingForIssuer", msg)));
                }
            }
        }
    };
    // With spec.keyPairRef: the key pair, which must be meant for this role (a CA key only for
    // CA certificates, a signing key never for one), and its current fingerprint.
    let key_pair = match &spec.key_pair_ref {
        Some(r) => {
            let kns = run.ref_namespace(&ns, "spec.keyPairRef", r.namespace.as_deref())?;
            let kp = run.stores.signature_key_pairs.get(&ObjectRef::new(&r.name).within(&kns));
            let needs = if spec.is_ca { KeyPurpose::CertificateAuthority } else { KeyPurpose::Signing };
            if let Some(kp) = kp.as_ref().filter(|kp| kp.spec.purpose != needs) {
                let use_ = if spec.is_ca { "a CA QuantumCertificate" } else { "a QuantumCertificate that is not a CA" };
                return Err(purpose_mismatch(&r.name, kp.spec.purpose, needs, "spec.keyPairRef", use_));
            }
            Some((kns, r.name.clone(), kp.and_then(|k| k.status().and_then(|s| s.output.fingerprint.clone()))))
        }
        None => None,
    };
    let secret = found::<Secret, _>(run, obj, &name)?;
    secret.refuse_foreign(obj, &name, "spec.secretName")?;
    let stored_cert = secret.ours().and_then(|s| secret_data(s, "tls.crt")).and_then(|p| Certificate::from_pem(p).ok());
    // The schedule and the history limit do not change what a certificate says: not in the digest.
    let issued_fields = QuantumCertificateSpec { rotation: None, revision_history_limit: None, ..spec.clone() };
    let spec_digest = fingerprint(&serde_json::to_vec(&issued_fields).map_err(|e| Error::bug(e.to_string()))?);
    let observed = Observed {
        spec_digest: spec_digest.clone(),
        issuer: issuer.as_ref().map(|i| i.cert.fingerprint().to_string()),
        key_pair: key_pair.as_ref().and_then(|(_, _, fp)| fp.clone()),
        recorded_digest: previous.spec_digest.clone(),
        recorded_issuer: previous.issuer_fingerprint.clone(),
        recorded_certificate: previous.certificate_fingerprint.clone(),
        stored: stored_cert.as_ref().map(|c| StoredCert {
            fingerprint: c.fingerprint().to_string(),
            key_fingerprint: c.key_fingerprint().to_string(),
            not_after: c.not_after(),
            renewal: renewal_time(c.not_before(), c.not_after(), renew_before, every),
            has_key: secret.ours().and_then(|s| secret_data(s, "tls.key")).is_some(),
        }),
    };
    let now = SystemTime::now();
    // Plan.
    let reason = plan(&observed, now);
    // Apply.
    let cert = match (reason, stored_cert) {
        (None, Some(cert)) => {
            // Kept: the Secret still gets its `metadata` key if it predates it.
            let s = secret.ours().ok_or_else(|| Error::bug("kept a certificate without its Secret"))?;
            let text = |k: &str| String::from_utf8_lossy(secret_data(s, k).unwrap_or_default()).into_owned();
            let key_pem = secret_data(s, "tls.key").unwrap_or_default().to_vec();
            let desired = tls_secret(&cert, text("tls.crt"), &key_pem, text("ca.crt"))?;
            write::<Secret, _>(run, obj, &name, "spec.secretName", &secret, &desired).await?;
            cert
        }
        (why, _) => {
            let why = why.unwrap_or(Reason::Issued);
            let key = match &key_pair {
                Some((kns, kname, _)) => {
                    let Some((pem, fp)) = private_key_pem(run, &run.stores.signature_key_pairs, kns, kname) else {
                        let msg = format!("waiting for QuantumSignatureKeyPair {kname} to be Ready");
                        return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
                    };
                    KeySource::KeyPair(pem, fp)
                }
                None => {
                    let pk = spec.private_key.clone().unwrap_or_default();
                    let (alg, _) = pk.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
                    let keep = pk.rotation_policy == RotationPolicy::Never;
                    let pem = secret
                        .ours()
                        .and_then(|s| secret_data(s, "tls.key"))
                        .filter(|_| keep)
                        .map(|p| Zeroizing::new(p.to_vec()));
                    KeySource::Stored(pem, alg)
                }
            };
            let params = params(spec, validity)?;
            let requested_not_after = params.not_after;
            let issuer_parts = issuer.as_ref().map(|i| (i.cert.clone(), i.key_pem.clone()));
            let (issued, _) = run.crypto.run(move || issue(params, key, issuer_parts)).await?;
            let Issued { cert, key_pem, keygen, signer, signing } = issued?;
            if let Some((alg, took)) = keygen {
                run.metrics.crypto_took("keygen", alg, took);
            }
            run.metrics.crypto_took("certificate-issue", signer, signing);
            let leaf_pem = cert.to_pem().map_err(|e| Error::bug(e.to_string()))?;
            let (chain, ca) = match &issuer {
                None => (leaf_pem.clone(), leaf_pem),
                Some(i) => (format!("{leaf_pem}{}", i.chain_pem), i.ca_pem.clone()),
            };
            write::<Secret, _>(
                run,
                obj,
                &name,
                "spec.secretName",
                &secret,
                &tls_secret(&cert, chain, key_pem.as_bytes(), ca)?,
            )
            .await?;
            let (reason, type_) = why.event();
            let note = format!(
                "{reason}: certificate {} (serial {}) valid until {}",
                short(&cert.fingerprint().to_string()),
                cert.serial_hex(),
                rfc3339(cert.not_after())
            );
            run.event(obj, type_, reason, note).await;
            let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if secs(cert.not_after()) < secs(requested_not_after) {
                let note = format!(
                    "notAfter capped at the issuer's notAfter {} (spec.duration {} reaches further); \
                     renewal follows the issuer's",
                    rfc3339(cert.not_after()),
                    spec.duration
                );
                run.event(obj, EventType::Warning, "ValidityCapped", note).await;
            }
            cert
        }
    };
    let renewal = renewal_time(cert.not_before(), cert.not_after(), renew_before, every);
    run.metrics.certificate(&ns, &obj.name_any(), cert.not_after(), renewal);
    let key_fp = cert.key_fingerprint().to_string();
    let cert_fp = cert.fingerprint().to_string();
    let replaced = previous.certificate_fingerprint.as_ref().filter(|f| **f != cert_fp);
    let revision = previous.revision.unwrap_or(u32::from(previous.certificate_fingerprint.is_some()));
    let revision =
        if previous.certificate_fingerprint.as_ref() == Some(&cert_fp) { revision.max(1) } else { revision + 1 };
    let retired = replaced.map(|old| Revision {
        revision: revision.saturating_sub(1),
        fingerprint: previous.output.fingerprint.clone().unwrap_or_default(),
        created_at: previous.not_before.clone(),
        retired_at: rfc3339(now),
        serial_number: previous.serial_number.clone(),
        certificate_fingerprint: Some(old.clone()),
        not_after: previous.not_after.clone(),
    });
    let history = push_revision(&previous.history, retired, spec.revision_history_limit);
    let algorithm =
        cert.public_key().map(|k| k.algorithm().name().to_owned()).unwrap_or_else(|_| "composite".to_owned());
    let status = CertificateStatus {
        output: OutputStatus::new(algorithm, Some(key_fp), Some(name.clone())),
        not_before: Some(rfc3339(cert.not_before())),
        not_after: Some(rfc3339(cert.not_after())),
        renewal_time: Some(rfc3339(renewal)),
        serial_number: Some(cert.serial_hex()),
        certificate_fingerprint: Some(cert_fp),
        issuer_fingerprint: observed.issuer,
        spec_digest: Some(spec_digest),
        revision: Some(revision),
        history,
        ..CertificateStatus::default()
    };
    let mut outcome = Outcome::new(
        status,
        State::ready("Issued", format!("certificate in Secret {name}, renews at {}", rfc3339(renewal))),
    );
    outcome.requeue = Some(renewal.duration_since(SystemTime::now()).unwrap_or_default().max(Duration::from_secs(1)));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    /// A certificate issued at 0 (notBefore back-dated), valid 1000 s, renewal at 700.
    fn current() -> Observed {
        Observed {
            spec_digest: "sha256:spec".into(),
            issuer: Some("sha256:ca".into()),
            key_pair: None,
            recorded_digest: Some("sha256:spec".into()),
            recorded_issuer: Some("sha256:ca".into()),
            recorded_certificate: Some("sha256:cert".into()),
            stored: Some(StoredCert {
                fingerprint: "sha256:cert".into(),
                key_fingerprint: "sha256:key".into(),
                not_after: at(1000),
                renewal: at(700),
                has_key: true,
            }),
        }
    }

    #[test]
    fn every_reissue_reason_is_planned() {
        let now = at(100);
        let with = |f: &dyn Fn(&mut Observed)| {
            let mut o = current();
            f(&mut o);
            o
        };
        let cases: Vec<(&str, Observed, SystemTime, Option<Reason>)> = vec![
            ("unchanged", current(), now, None),
            (
                "first issuance",
                with(&|o| *o = Observed { spec_digest: "sha256:spec".into(), ..Observed::default() }),
                now,
                Some(Reason::Issued),
            ),
            ("Secret deleted", with(&|o| o.stored = None), now, Some(Reason::SecretRegenerated)),
            (
                "tls.key removed",
                with(&|o| o.stored.as_mut().into_iter().for_each(|c| c.has_key = false)),
                now,
                Some(Reason::SecretRegenerated),
            ),
            ("spec changed", with(&|o| o.spec_digest = "sha256:new-spec".into()), now, Some(Reason::SpecChanged)),
            (
                "issuer changed",
                with(&|o| o.issuer = Some("sha256:renewed-ca".into())),
                now,
                Some(Reason::IssuerChanged),
            ),
            ("issuer removed", with(&|o| o.issuer = None), now, Some(Reason::IssuerChanged)),
            (
                "key pair rotated",
                with(&|o| o.key_pair = Some("sha256:new-key".into())),
                now,
                Some(Reason::KeyPairRotated),
            ),
            ("same key pair key", with(&|o| o.key_pair = Some("sha256:key".into())), now, None),
            ("renewal due", current(), at(700), Some(Reason::Renewed)),
            ("expired", current(), at(1000), Some(Reason::Expired)),
            (
                "Secret modified",
                with(&|o| o.stored.as_mut().into_iter().for_each(|c| c.fingerprint = "sha256:other".into())),
                now,
                Some(Reason::SecretModified),
            ),
            (
                "adopted after a lost status write",
                with(&|o| {
                    o.recorded_digest = None;
                    o.recorded_issuer = None;
                    o.recorded_certificate = None;
                }),
                now,
                None,
            ),
        ];
        for (what, o, now, want) in cases {
            assert_eq!(plan(&o, now), want, "{what}");
        }
        // The first applicable reason wins: a spec change outranks expiry.
        let both = with(&|o| o.spec_digest = "sha256:new-spec".into());
        assert_eq!(plan(&both, at(2000)), Some(Reason::SpecChanged));
    }

    #[test]
    fn issuance_reports_keygen_and_signer_algorithms() {
        use qubesec_core::SignatureAlgorithm::{MlDsa44, MlDsa65, MlDsa87};
        let dn = || "CN=test".parse::<DistinguishedName>().unwrap();
        let params = || CertificateParams::new(dn()).valid_for(Duration::from_secs(3600));
        let ca_params = || params().ca(None);
        // Self-signed with a new key: keygen and signing both under the new key's algorithm.
        let ca = issue(ca_params(), KeySource::Stored(None, MlDsa87), None).unwrap();
        assert_eq!(ca.keygen.map(|(a, _)| a), Some("ML-DSA-87"));
        assert_eq!(ca.signer, "ML-DSA-87");
        // Issued by that CA with a new ML-DSA-44 key: keygen under ML-DSA-44, signing under the CA's.
        let ca_key = Zeroizing::new(ca.key_pem.as_bytes().to_vec());
        let leaf = issue(params(), KeySource::Stored(None, MlDsa44), Some((ca.cert.clone(), ca_key))).unwrap();
        assert_eq!(leaf.keygen.map(|(a, _)| a), Some("ML-DSA-44"));
        assert_eq!(leaf.signer, "ML-DSA-87");
        // A kept key is not generated again.
        let kept = Zeroizing::new(leaf.key_pem.as_bytes().to_vec());
        let again = issue(params(), KeySource::Stored(Some(kept), MlDsa44), None).unwrap();
        assert!(again.keygen.is_none());
        assert_eq!(again.cert.key_fingerprint(), leaf.cert.key_fingerprint());
        // Self-signed with a key pair's key: no keygen, signed under the key pair's algorithm.
        let key = SigningKey::generate(MlDsa65).unwrap();
        let fp = qubesec_core::Fingerprint::of_public_key(&PublicKey::from(key.verifying_key().unwrap().clone()))
            .unwrap()
            .to_string();
        let pem = Zeroizing::new(PrivateKey::Signature(key).to_pkcs8_pem().unwrap().as_bytes().to_vec());
        let own = issue(ca_params(), KeySource::KeyPair(pem, fp), None).unwrap();
        assert!(own.keygen.is_none());
        assert_eq!(own.signer, "ML-DSA-65");
    }

    #[test]
    fn renewal_time_follows_renew_before_rotation_and_capped_validity() {
        let not_before = at(0);
        let issued = not_before + BACKDATE;
        let day = Duration::from_secs(86_400);
        let not_after = issued + 90 * day;
        assert_eq!(renewal_time(not_before, not_after, 30 * day, None), not_after - 30 * day);
        assert_eq!(renewal_time(not_before, not_after, 30 * day, Some(7 * day)), issued + 7 * day);
        // Capped by the issuer to 10 days: renewBefore 30 days would be in the past; renew at 2/3.
        let capped = issued + 10 * day;
        let r = renewal_time(not_before, capped, 30 * day, None);
        assert!(r > issued && r < capped, "renewal {r:?} not inside the capped validity");
        assert_eq!(r.duration_since(issued).unwrap().as_secs(), 10 * 86_400 / 3 * 2);
    }
}
