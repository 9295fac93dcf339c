//! `QuantumCertificate`: self-signed or issued by a CA `QuantumCertificate`, kept in a
//! `kubernetes.io/tls` Secret, re-issued on spec or issuer change and renewed at `renewalTime`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use qubesec_core::x509::{
    BACKDATE, Certificate, CertificateParams, DistinguishedName, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectPublicKey,
};
use qubesec_core::{PrivateKey, PublicKey, SigningKey};

use super::keypair::rotation_period;
use super::{log_result, owned_config, points_at, referrers, signing_key};
use crate::context::Context;
use crate::crd::{
    CertificateStatus, QuantumCertificate, QuantumCertificateSpec, QuantumSignatureKeyPair, Revision, RotationPolicy,
    Usage, is_ready, push_revision,
};
use crate::duration;
use crate::error::{Error, Result};
use crate::outputs::{apply_secret, fingerprint, owned_secret, secret_data, short};
use crate::reconcile::{Outcome, State, error_policy, finish, fresh, managed, namespace};

managed!(QuantumCertificate, "certificate");

pub(crate) fn controller(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = Controller::new(ctx.watch_api::<QuantumCertificate>(), watcher::Config::default());
    let (s1, s2) = (c.store(), c.store());
    c.owns(ctx.watch_api::<Secret>(), owned_config::<QuantumCertificate>())
        .watches(ctx.watch_api::<QuantumCertificate>(), watcher::Config::default(), move |issuer| {
            referrers(&s1, |c: &QuantumCertificate| {
                c.spec.issuer_ref.as_ref().is_some_and(|r| points_at(c, &r.name, r.namespace.as_deref(), &issuer))
            })
        })
        .watches(ctx.watch_api::<QuantumSignatureKeyPair>(), watcher::Config::default(), move |kp| {
            referrers(&s2, |c: &QuantumCertificate| {
                c.spec.key_pair_ref.as_ref().is_some_and(|r| points_at(c, &r.name, r.namespace.as_deref(), &kp))
            })
        })
        .run(reconcile, error_policy::<QuantumCertificate>, ctx)
        .for_each(log_result)
        .boxed()
}

async fn reconcile(obj: Arc<QuantumCertificate>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let Some(obj) = fresh(&*obj, &ctx).await? else { return Ok(Action::await_change()) };
    let result = reconcile_inner(&obj, &ctx).await;
    finish(&*obj, &ctx, started, result).await
}

/// What an issuing CA contributes.
struct Issuer {
    cert: Certificate,
    key: SigningKey,
    chain_pem: String,
    ca_pem: String,
}

async fn issuer(ctx: &Context, ns: &str, name: &str) -> Result<Option<Issuer>> {
    let Some(ca) = ctx.api::<QuantumCertificate>(ns).get_opt(name).await? else { return Ok(None) };
    if !ca.spec.is_ca {
        return Err(Error::user(
            "IssuerNotCA",
            format!("spec.issuerRef: QuantumCertificate {name} is not a CA (isCA: false)"),
        ));
    }
    if !is_ready(ca.status.as_ref().map(|s| &s.common), ca.metadata.generation) {
        return Ok(None);
    }
    let secret_name = ca.status.as_ref().and_then(|s| s.secret_name.clone()).unwrap_or_else(|| ca.name_any());
    let Some(secret) = ctx.api::<Secret>(ns).get_opt(&secret_name).await? else { return Ok(None) };
    let (Some(crt), Some(key), Some(ca_crt)) =
        (secret_data(&secret, "tls.crt"), secret_data(&secret, "tls.key"), secret_data(&secret, "ca.crt"))
    else {
        return Ok(None);
    };
    let bad = |what: &str, e: qubesec_core::Error| {
        Error::user("InvalidIssuer", format!("issuer Secret {secret_name}: {what}: {e}"))
    };
    let cert = Certificate::from_pem(crt).map_err(|e| bad("tls.crt", e))?;
    let key =
        PrivateKey::from_pem(key).map_err(|e| bad("tls.key", e))?.into_signature().map_err(|e| bad("tls.key", e))?;
    let to_text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Error::user("InvalidIssuer", "issuer PEM is not UTF-8"));
    Ok(Some(Issuer { cert, key, chain_pem: to_text(crt)?, ca_pem: to_text(ca_crt)? }))
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

/// When `cert` is due: `renewBefore` ahead of notAfter, or `every` after it was issued, whichever is first.
fn renewal_time(cert: &Certificate, renew_before: Duration, every: Option<Duration>) -> SystemTime {
    let before_expiry = cert.not_after().checked_sub(renew_before).unwrap_or(SystemTime::UNIX_EPOCH);
    let issued = cert.not_before().checked_add(BACKDATE).unwrap_or(before_expiry);
    every.and_then(|e| issued.checked_add(e)).map_or(before_expiry, |t| t.min(before_expiry))
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default()
}

pub(crate) async fn reconcile_inner(obj: &QuantumCertificate, ctx: &Context) -> Result<Outcome<CertificateStatus>> {
    let spec = &obj.spec;
    let name = spec.secret_name.clone().unwrap_or_else(|| obj.name_any());
    let ns = namespace(obj)?;
    let previous = obj.status.clone().unwrap_or_default();
    let validity = duration::parse(&spec.duration).map_err(|e| user("spec.duration", e))?;
    let renew_before = duration::parse(&spec.renew_before).map_err(|e| user("spec.renewBefore", e))?;
    if renew_before >= validity {
        return Err(user("spec.renewBefore", "must be shorter than spec.duration"));
    }
    let issuer = match &spec.issuer_ref {
        None => None,
        Some(r) => {
            let ins = ctx.ref_namespace(&ns, "spec.issuerRef", r.namespace.as_deref())?;
            match issuer(ctx, &ins, &r.name).await? {
                Some(i) => Some(i),
                None => {
                    let msg = format!("waiting for issuer QuantumCertificate {} to be Ready", r.name);
                    return Ok(Outcome::new(previous, State::pending("WaitingForIssuer", msg)));
                }
            }
        }
    };
    let issuer_fp = issuer.as_ref().map(|i| i.cert.fingerprint().to_string());
    let every = rotation_period(spec.rotation.as_ref())?;
    // The schedule and the history limit do not change what a certificate says: not in the digest.
    let issued_fields = QuantumCertificateSpec { rotation: None, revision_history_limit: None, ..spec.clone() };
    let digest = fingerprint(&serde_json::to_vec(&issued_fields).map_err(|e| Error::bug(e.to_string()))?);
    // With spec.keyPairRef, the key pair's current fingerprint: a rotation there re-issues here.
    let wanted_key_fp = match &spec.key_pair_ref {
        Some(r) => {
            let kns = ctx.ref_namespace(&ns, "spec.keyPairRef", r.namespace.as_deref())?;
            let kp = ctx.api::<QuantumSignatureKeyPair>(&kns).get_opt(&r.name).await?;
            kp.and_then(|k| k.status).and_then(|s| s.fingerprint)
        }
        None => None,
    };
    let existing = owned_secret(ctx, obj, &name).await?;
    let stored_cert =
        existing.as_ref().and_then(|s| secret_data(s, "tls.crt")).and_then(|p| Certificate::from_pem(p).ok());
    let stored_key = existing
        .as_ref()
        .and_then(|s| secret_data(s, "tls.key"))
        .and_then(|p| PrivateKey::from_pem(p).ok())
        .and_then(|k| k.into_signature().ok());
    let now = SystemTime::now();

    let reissue: Option<(&'static str, EventType)> = match (&stored_cert, &stored_key) {
        (Some(c), Some(_)) => {
            if previous.spec_digest.as_deref() != Some(digest.as_str()) && previous.spec_digest.is_some() {
                Some(("SpecChanged", EventType::Normal))
            } else if previous.issuer_fingerprint != issuer_fp && previous.spec_digest.is_some() {
                Some(("IssuerChanged", EventType::Normal))
            } else if wanted_key_fp.as_ref().is_some_and(|f| *f != c.key_fingerprint().to_string()) {
                Some(("KeyPairRotated", EventType::Normal))
            } else if now >= renewal_time(c, renew_before, every) {
                Some(("Renewed", EventType::Normal))
            } else if previous.certificate_fingerprint.as_ref().is_some_and(|f| *f != c.fingerprint().to_string()) {
                Some(("SecretModified", EventType::Warning))
            } else {
                None
            }
        }
        _ if previous.certificate_fingerprint.is_some() => Some(("SecretRegenerated", EventType::Warning)),
        _ => Some(("Issued", EventType::Normal)),
    };

    let cert = match (reissue, stored_cert) {
        (None, Some(cert)) => cert,
        (why, _) => {
            let (reason, type_) = why.unwrap_or(("Issued", EventType::Normal));
            let key = match &spec.key_pair_ref {
                Some(r) => {
                    let kns = ctx.ref_namespace(&ns, "spec.keyPairRef", r.namespace.as_deref())?;
                    match signing_key(ctx, &kns, &r.name).await? {
                        Some((k, _)) => k,
                        None => {
                            let msg = format!("waiting for QuantumSignatureKeyPair {} to be Ready", r.name);
                            return Ok(Outcome::new(previous, State::pending("WaitingForKeyPair", msg)));
                        }
                    }
                }
                None => {
                    let pk = spec.private_key.clone().unwrap_or_default();
                    let (alg, _) = pk.algorithm.resolve().map_err(|e| Error::bug(e.to_string()))?;
                    match stored_key {
                        Some(k) if pk.rotation_policy == RotationPolicy::Never && k.algorithm() == alg => k,
                        _ => ctx
                            .metrics
                            .crypto("keygen", alg.name(), || SigningKey::generate(alg))
                            .map_err(|e| Error::bug(format!("key generation: {e}")))?,
                    }
                }
            };
            let public = PublicKey::from(key.verifying_key().map_err(|e| Error::bug(e.to_string()))?.clone());
            let spk = SubjectPublicKey::from_spki_der(&public.to_spki_der().map_err(|e| Error::bug(e.to_string()))?)
                .map_err(|e| Error::bug(e.to_string()))?;
            let p = params(spec, validity)?;
            let signer_alg = issuer.as_ref().map_or_else(|| key.algorithm(), |i| i.key.algorithm()).name();
            let cert = ctx
                .metrics
                .crypto("certificate-issue", signer_alg, || match &issuer {
                    None => p.self_signed(&key),
                    Some(i) => p.issue(&spk, &i.cert, &i.key),
                })
                .map_err(|e| Error::user("IssuanceFailed", format!("cannot issue the certificate: {e}")))?;
            let leaf_pem = cert.to_pem().map_err(|e| Error::bug(e.to_string()))?;
            let (chain, ca) = match &issuer {
                None => (leaf_pem.clone(), leaf_pem.clone()),
                Some(i) => (format!("{leaf_pem}{}", i.chain_pem), i.ca_pem.clone()),
            };
            let key_pem = PrivateKey::Signature(key).to_pkcs8_pem().map_err(|e| Error::bug(e.to_string()))?;
            let data = BTreeMap::from([
                ("tls.crt".to_owned(), chain.into_bytes()),
                ("tls.key".to_owned(), key_pem.as_bytes().to_vec()),
                ("ca.crt".to_owned(), ca.into_bytes()),
            ]);
            apply_secret(ctx, obj, &name, Some("kubernetes.io/tls"), data).await?;
            let note = format!(
                "{reason}: certificate {} (serial {}) valid until {}",
                short(&cert.fingerprint().to_string()),
                cert.serial_hex(),
                rfc3339(cert.not_after())
            );
            ctx.event(obj, type_, reason, note).await;
            cert
        }
    };
    let renewal = renewal_time(&cert, renew_before, every);
    ctx.metrics.certificate(&ns, &obj.name_any(), cert.not_after(), renewal);
    let key_fp = cert.key_fingerprint().to_string();
    let cert_fp = cert.fingerprint().to_string();
    let replaced = previous.certificate_fingerprint.as_ref().filter(|f| **f != cert_fp);
    let revision = previous.revision.unwrap_or(u32::from(previous.certificate_fingerprint.is_some()));
    let revision =
        if previous.certificate_fingerprint.as_ref() == Some(&cert_fp) { revision.max(1) } else { revision + 1 };
    let retired = replaced.map(|old| Revision {
        revision: revision.saturating_sub(1),
        fingerprint: previous.fingerprint.clone().unwrap_or_default(),
        created_at: previous.not_before.clone(),
        retired_at: rfc3339(now),
        serial_number: previous.serial_number.clone(),
        certificate_fingerprint: Some(old.clone()),
        not_after: previous.not_after.clone(),
    });
    let history = push_revision(&previous.history, retired, spec.revision_history_limit);
    let status = CertificateStatus {
        algorithm: Some(
            cert.public_key().map(|k| k.algorithm().name().to_owned()).unwrap_or_else(|_| "composite".to_owned()),
        ),
        not_before: Some(rfc3339(cert.not_before())),
        not_after: Some(rfc3339(cert.not_after())),
        renewal_time: Some(rfc3339(renewal)),
        serial_number: Some(cert.serial_hex()),
        short_fingerprint: Some(short(&key_fp)),
        fingerprint: Some(key_fp),
        certificate_fingerprint: Some(cert_fp),
        issuer_fingerprint: issuer_fp,
        spec_digest: Some(digest),
        secret_name: Some(name.clone()),
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
