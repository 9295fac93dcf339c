//! `qubesec fingerprint FILE.pem`.

use std::io::Write;

use qubesec_core::encoding::{self, CERTIFICATE_LABEL, PRIVATE_KEY_LABEL, PUBLIC_KEY_LABEL};
use qubesec_core::{Fingerprint, PrivateKey, PublicKey};

use crate::cli::FingerprintArgs;
use crate::error::Failure;
use crate::files::{self, PEM_LIMIT};

pub(super) fn run(args: &FingerprintArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let shown = args.file.display();
    let pem = files::read(&args.file, Some(PEM_LIMIT))?;
    let (label, der) = encoding::decode_pem(&pem).map_err(|e| Failure::input(&shown, e))?;
    let public = match label.as_str() {
        PUBLIC_KEY_LABEL => PublicKey::from_spki_der(&der),
        CERTIFICATE_LABEL => PublicKey::from_certificate_der(&der),
        PRIVATE_KEY_LABEL => PrivateKey::from_pkcs8_der(&der).and_then(|key| key.public_key()),
        other => {
            return Err(Failure::input(
                &shown,
                format_args!(
                    "expected a PEM \"{PUBLIC_KEY_LABEL}\", \"{CERTIFICATE_LABEL}\" or \"{PRIVATE_KEY_LABEL}\" block, found \"{other}\""
                ),
            ));
        }
    }
    .map_err(|e| Failure::input(&shown, e))?;
    let fingerprint = Fingerprint::of_public_key(&public).map_err(|e| Failure::input(&shown, e))?;
    writeln!(out, "{fingerprint}\n{}", fingerprint.short()).map_err(|e| Failure::io("stdout", "cannot write", &e))
}
