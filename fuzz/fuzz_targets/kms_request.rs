//! What the apiserver sends to Decrypt: a ciphertext and a key id, checked at
//! the edge and then opened by the software backend. Never a panic; only a
//! ciphertext the backend made itself may decrypt.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qubesec_kms::Backend;
use qubesec_kms::backend::software::SoftwareBackend;
use qubesec_kms::keystore::{Argon2Params, Keystore, MasterKeySource};
use qubesec_kms::{KeyId, envelope};

fn backend() -> &'static SoftwareBackend {
    static B: OnceLock<SoftwareBackend> = OnceLock::new();
    B.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qubesec-fuzz-kms-{}", std::process::id()));
        let source = MasterKeySource::KeyFile(dir.join("master.key"));
        let ks = Keystore::at(dir.join("ks"));
        let _ = ks.init(&source, Argon2Params::default());
        SoftwareBackend::open(ks, &source).expect("fuzz keystore")
    })
}

fuzz_target!(|data: &[u8]| {
    let (id_len, rest) = match data.split_first() {
        Some((n, rest)) => (usize::from(*n).min(rest.len()), rest),
        None => return,
    };
    let (id, ct) = rest.split_at(id_len);
    let _ = envelope::split(ct);
    let id = match std::str::from_utf8(id).ok().and_then(|s| KeyId::parse(s).ok()) {
        Some(id) => id,
        None => backend().active_key_id().expect("active key"),
    };
    assert!(backend().decrypt(&id, ct).is_err(), "forged ciphertext decrypted");
});
