//! Keystore files: header parsing and opening with a fixed master key.
//! Never a panic; a file this target did not seal never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qubesec_kms::keystore::{MasterKeySource, format};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.qks");
    if let Ok(header) = format::parse_header(path, data) {
        let dir = std::env::temp_dir().join(format!("qubesec-fuzz-ks-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let key = dir.join("master.key");
        if !key.exists() {
            let _ = std::fs::write(&key, [42u8; 32]);
        }
        if let Ok(master) = MasterKeySource::KeyFile(key).derive(&header.kdf, path) {
            assert!(format::open(path, data, &master).is_err(), "forged keystore opened");
        }
    }
});
