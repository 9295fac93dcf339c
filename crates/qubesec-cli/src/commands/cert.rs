//! `qubesec cert self-sign|issue|verify|show` and `qubesec csr create`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use qubesec_core::encoding;
use qubesec_core::sig::composite::CompositeSigningKey;
use qubesec_core::x509::{
    self, CertSigner, Certificate, CertificateParams, CertificateRequest, CsrPolicy, DistinguishedName,
    ExtendedKeyUsage, SubjectAltName, SubjectPublicKey,
};
use qubesec_core::{Error, PrivateKey, PublicKey, SigningKey};

use super::parse_count;
use crate::cli::{
    CertCommand, CertIssueArgs, CertProfileArgs, CertSelfSignArgs, CertShowArgs, CertVerifyArgs, CsrCommand,
    CsrCreateArgs, SanArgs,
};
use crate::error::Failure;
use crate::files::{self, PEM_LIMIT};

/// The longest validity `--days` accepts: 100 years.
const MAX_DAYS: usize = 36_500;

pub(super) fn run(command: &CertCommand, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        CertCommand::SelfSign(a) => self_sign(a),
        CertCommand::Issue(a) => issue(a),
        CertCommand::Verify(a) => verify(a, out),
        CertCommand::Show(a) => show(a, out),
    }
}

pub(super) fn run_csr(command: &CsrCommand) -> Result<(), Failure> {
    match command {
        CsrCommand::Create(a) => csr_create(a),
    }
}

/// A private key that can sign certificates.
enum Signer {
    Pq(SigningKey),
    Composite(Box<CompositeSigningKey>),
}

impl Signer {
    fn as_cert_signer(&self) -> CertSigner<'_> {
        match self {
            Self::Pq(k) => k.into(),
            Self::Composite(k) => k.as_ref().into(),
        }
    }
}

/// Reads a PEM private key that can sign: ML-DSA, SLH-DSA or composite.
fn load_signer(path: &Path, option: &str) -> Result<Signer, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    let shown = path.display();
    match PrivateKey::from_pem(&pem) {
        Ok(PrivateKey::Signature(k)) => Ok(Signer::Pq(k)),
        Ok(other) => Err(Failure::input(
            &shown,
            format_args!(
                "{option} must be a signature key (ML-DSA, SLH-DSA or composite), found {}",
                other.algorithm()
            ),
        )),
        Err(Error::UnsupportedAlgorithm { .. }) => CompositeSigningKey::from_pem(&pem)
            .map(|k| Signer::Composite(Box::new(k)))
            .map_err(|e| Failure::input(&shown, e)),
        Err(e) => Err(Failure::input(&shown, e)),
    }
}

/// Reads a PEM public key or certificate of any algorithm a certificate can carry.
fn load_subject_key(path: &Path) -> Result<SubjectPublicKey, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    let shown = path.display();
    let (label, der) = encoding::decode_pem(&pem).map_err(|e| Failure::input(&shown, e))?;
    let spki = match label.as_str() {
        encoding::PUBLIC_KEY_LABEL => der.to_vec(),
        encoding::CERTIFICATE_LABEL => {
            Certificate::from_der(&der).map_err(|e| Failure::input(&shown, e))?.public_key_spki_der()
        }
        other => {
            return Err(Failure::input(
                &shown,
                format_args!("expected a PEM \"PUBLIC KEY\" or \"CERTIFICATE\" block, found \"{other}\""),
            ));
        }
    };
    SubjectPublicKey::from_spki_der(&spki).map_err(|e| Failure::input(&shown, e))
}

fn load_certificates(path: &Path) -> Result<Vec<Certificate>, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    Certificate::chain_from_pem(&pem).map_err(|e| Failure::input(path.display(), e))
}

fn load_certificate(path: &Path) -> Result<Certificate, Failure> {
    let pem = files::read(path, Some(PEM_LIMIT))?;
    Certificate::from_pem(&pem).map_err(|e| Failure::input(path.display(), e))
}

fn parse_subject(text: &str) -> Result<DistinguishedName, Failure> {
    text.parse().map_err(|e| Failure::input("--subject", e))
}

/// The SANs and EKUs of `--dns/--ip/--uri/--email/--eku`.
fn parse_names(args: &SanArgs) -> Result<(Vec<SubjectAltName>, Vec<ExtendedKeyUsage>), Failure> {
    let mut sans = Vec::new();
    for d in &args.dns {
        sans.push(SubjectAltName::dns(d).map_err(|e| Failure::input("--dns", e))?);
    }
    for ip in &args.ip {
        let addr = ip
            .trim()
            .parse()
            .map_err(|_| Failure::input("--ip", format_args!("{ip:?} is not an IPv4 or IPv6 address")))?;
        sans.push(SubjectAltName::Ip(addr));
    }
    for u in &args.uri {
        sans.push(SubjectAltName::uri(u).map_err(|e| Failure::input("--uri", e))?);
    }
    for m in &args.email {
        sans.push(SubjectAltName::email(m).map_err(|e| Failure::input("--email", e))?);
    }
    let ekus =
        args.eku.iter().map(|e| e.parse().map_err(|err| Failure::input("--eku", err))).collect::<Result<_, _>>()?;
    Ok((sans, ekus))
}

/// Applies `--days`, `--ca`, `--path-len` and the names to `params`.
fn apply_profile(mut params: CertificateParams, profile: &CertProfileArgs) -> Result<CertificateParams, Failure> {
    let days = match &profile.days {
        Some(d) => parse_count("--days", d, 1, MAX_DAYS, "days")?,
        None => 90,
    };
    let days = u64::try_from(days).map_err(|_| Failure::input("--days", "out of range"))?;
    params = params.valid_for(Duration::from_secs(days * 24 * 3600));
    if profile.ca {
        let path_len = match &profile.path_len {
            Some(p) => Some(u8::try_from(parse_count("--path-len", p, 0, 255, "certificates")?).unwrap_or(u8::MAX)),
            None => None,
        };
        params = params.ca(path_len);
    }
    let (sans, ekus) = parse_names(&profile.names)?;
    params.subject_alt_names.extend(sans);
    params.extended_key_usage.extend(ekus);
    params.subject_alt_names.dedup();
    params.extended_key_usage.dedup();
    Ok(params)
}

fn write_cert(cert: &Certificate, out: &Path) -> Result<(), Failure> {
    let pem = cert.to_pem().map_err(|e| Failure::input(out.display(), e))?;
    files::write(out, pem.as_bytes(), files::Sensitivity::Public)
}

fn required_subject(profile: &CertProfileArgs) -> Result<DistinguishedName, Failure> {
    match &profile.subject {
        Some(s) => parse_subject(s),
        None => Err(Failure::input("--subject", "is required (e.g. --subject \"CN=example,O=QubeSec\")")),
    }
}

fn self_sign(args: &CertSelfSignArgs) -> Result<(), Failure> {
    let subject = required_subject(&args.profile)?;
    let key = load_signer(&args.key, "--key")?;
    let params = apply_profile(CertificateParams::new(subject), &args.profile)?;
    let cert = params.self_signed(key.as_cert_signer()).map_err(|e| Failure::input("cert self-sign", e))?;
    write_cert(&cert, &args.profile.out)
}

fn issue(args: &CertIssueArgs) -> Result<(), Failure> {
    let ca = load_certificate(&args.ca_cert)?;
    let ca_key = load_signer(&args.ca_key, "--ca-key")?;
    let (params, subject_key) = match (&args.public, &args.csr) {
        (_, Some(csr_path)) => {
            let pem = files::read(csr_path, Some(PEM_LIMIT))?;
            let shown = csr_path.display();
            let csr = CertificateRequest::from_pem(&pem).map_err(|e| Failure::input(&shown, e))?;
            let (mut params, key) = csr.to_params(CsrPolicy::default()).map_err(|e| match e {
                Error::VerificationFailed => Failure::input(&shown, "the request's signature does not verify"),
                other => Failure::input(&shown, other),
            })?;
            if let Some(s) = &args.profile.subject {
                params.subject = parse_subject(s)?;
            }
            (params, key)
        }
        (Some(public), None) => (CertificateParams::new(required_subject(&args.profile)?), load_subject_key(public)?),
        (None, None) => return Err(Failure::input("cert issue", "needs --pub or --csr")),
    };
    let params = apply_profile(params, &args.profile)?;
    let cert = params.issue(&subject_key, &ca, ca_key.as_cert_signer()).map_err(|e| Failure::input("cert issue", e))?;
    write_cert(&cert, &args.profile.out)
}

fn verify(args: &CertVerifyArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let cert = load_certificate(&args.cert)?;
    let anchors = load_certificates(&args.ca)?;
    let mut intermediates = Vec::new();
    for path in &args.intermediate {
        intermediates.extend(load_certificates(path)?);
    }
    let shown = args.cert.display();
    x509::verify_chain(&cert, &intermediates, &anchors, SystemTime::now()).map_err(|e| Failure::invalid(&shown, e))?;
    if let Some(host) = &args.host
        && !cert.matches_host(host)
    {
        return Err(Failure::invalid(
            &shown,
            format_args!("not valid for host {host:?} (no matching DNS or IP subject alternative name)"),
        ));
    }
    writeln!(out, "OK").map_err(|e| Failure::io("stdout", "cannot write", &e))
}

fn show(args: &CertShowArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let certs = load_certificates(&args.cert)?;
    let mut text = String::new();
    for (i, cert) in certs.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&summary(cert).map_err(|e| Failure::input(args.cert.display(), e))?);
    }
    out.write_all(text.as_bytes()).map_err(|e| Failure::io("stdout", "cannot write", &e))
}

fn algorithm(oid: &qubesec_core::x509::ObjectIdentifier) -> String {
    x509::algorithm_name(oid).map_or_else(|| format!("unknown ({oid})"), str::to_owned)
}

fn summary(cert: &Certificate) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let list = |v: Vec<String>| if v.is_empty() { "(none)".to_owned() } else { v.join(", ") };
    // Writing to a String cannot fail.
    let _ = writeln!(s, "Subject:          {}", cert.subject());
    let _ = writeln!(s, "Issuer:           {}", cert.issuer());
    let _ = writeln!(s, "Serial:           {}", cert.serial_hex());
    let _ = writeln!(s, "Not before:       {}", x509::format_time(cert.not_before()));
    let _ = writeln!(s, "Not after:        {}", x509::format_time(cert.not_after()));
    let _ = writeln!(s, "Key algorithm:    {}", algorithm(&cert.public_key_algorithm()));
    let _ = writeln!(s, "Signature:        {}", algorithm(&cert.signature_algorithm()));
    let _ = writeln!(s, "Key fingerprint:  {}", cert.key_fingerprint());
    let _ = writeln!(s, "Cert fingerprint: {}", cert.fingerprint());
    let sans = cert.subject_alt_names()?.iter().map(ToString::to_string).collect();
    let _ = writeln!(s, "SANs:             {}", list(sans));
    let ca = match cert.basic_constraints()? {
        Some(bc) if bc.ca => match bc.path_len {
            Some(n) => format!("yes (pathLen {n})"),
            None => "yes".to_owned(),
        },
        _ => "no".to_owned(),
    };
    let _ = writeln!(s, "CA:               {ca}");
    let usage = cert.key_usage()?.unwrap_or_default().iter().map(ToString::to_string).collect();
    let _ = writeln!(s, "Key usage:        {}", list(usage));
    let eku = cert.extended_key_usage()?.unwrap_or_default().iter().map(ToString::to_string).collect();
    let _ = writeln!(s, "Extended usage:   {}", list(eku));
    let self_signed = cert.is_self_issued() && cert.verify_signed_by(cert).is_ok();
    let _ = writeln!(s, "Self-signed:      {}", if self_signed { "yes" } else { "no" });
    Ok(s)
}

fn csr_create(args: &CsrCreateArgs) -> Result<(), Failure> {
    let subject = parse_subject(&args.subject)?;
    let (sans, ekus) = parse_names(&args.names)?;
    let key = load_signer(&args.key, "--key")?;
    let csr = CertificateRequest::create(&subject, &sans, &ekus, key.as_cert_signer())
        .map_err(|e| Failure::input("csr create", e))?;
    let pem = csr.to_pem().map_err(|e| Failure::input(args.out.display(), e))?;
    files::write(&args.out, pem.as_bytes(), files::Sensitivity::Public)
}

/// The SPKI of any public key, certificate or private key the CLI understands, for `fingerprint`.
pub(super) fn any_spki(label: &str, der: &[u8]) -> Result<Vec<u8>, Error> {
    match label {
        encoding::CERTIFICATE_LABEL => Ok(Certificate::from_der(der)?.public_key_spki_der()),
        encoding::PRIVATE_KEY_LABEL => match PrivateKey::from_pkcs8_der(der) {
            Ok(k) => k.public_key()?.to_spki_der(),
            Err(Error::UnsupportedAlgorithm { .. }) => {
                CompositeSigningKey::from_pkcs8_der(der)?.verifying_key().to_spki_der()
            }
            Err(e) => Err(e),
        },
        _ => match PublicKey::from_spki_der(der) {
            Ok(k) => k.to_spki_der(),
            Err(Error::UnsupportedAlgorithm { .. }) => Ok(SubjectPublicKey::from_spki_der(der)?.spki_der().to_vec()),
            Err(e) => Err(e),
        },
    }
}
