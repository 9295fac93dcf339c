use std::os::unix::fs::PermissionsExt;

use super::*;

const FAST: Argon2Params = Argon2Params { m_cost: 64, t_cost: 1, p_cost: 1 };

fn key_file(dir: &Path) -> MasterKeySource {
    MasterKeySource::KeyFile(dir.join("master.key"))
}

fn passphrase(dir: &Path, text: &str) -> MasterKeySource {
    let p = dir.join(format!("pass-{}", text.len()));
    std::fs::write(&p, format!("{text}\n")).unwrap();
    MasterKeySource::PassphraseFile(p)
}

#[test]
fn init_creates_key_file_and_keystore_with_mode_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path().join("ks"));
    let source = key_file(tmp.path());
    let opened = ks.init(&source, FAST).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::read(tmp.path().join("master.key")).unwrap().len(), 32);
    assert_eq!(mode(&tmp.path().join("master.key")), 0o600);
    assert_eq!(mode(ks.path()), 0o600);
    let again = ks.open(&source).unwrap();
    assert_eq!(again.keys.active().unwrap().key_id(), opened.keys.active().unwrap().key_id());
    assert!(matches!(ks.init(&source, FAST), Err(KeystoreError::AlreadyExists(_))));
}

#[test]
fn passphrase_keystore_rejects_a_wrong_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path());
    ks.init(&passphrase(tmp.path(), "correct horse"), FAST).unwrap();
    assert!(ks.open(&passphrase(tmp.path(), "correct horse")).is_ok());
    let err = ks.open(&passphrase(tmp.path(), "wrong horse!!")).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongMasterKey(_)), "{err}");
    assert!(err.to_string().contains("wrong master key or passphrase"));
    let err = ks.open(&key_file(tmp.path())).unwrap_err();
    assert!(matches!(err, KeystoreError::MasterKeyKind { sealed_with: "passphrase", .. }), "{err}");
}

#[test]
fn wrong_key_file_is_a_wrong_master_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path());
    ks.init(&key_file(tmp.path()), FAST).unwrap();
    std::fs::write(tmp.path().join("other.key"), [7u8; 32]).unwrap();
    let err = ks.open(&MasterKeySource::KeyFile(tmp.path().join("other.key"))).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongMasterKey(_)), "{err}");
    std::fs::write(tmp.path().join("short.key"), [7u8; 31]).unwrap();
    let err = ks.open(&MasterKeySource::KeyFile(tmp.path().join("short.key"))).unwrap_err();
    assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
}

#[test]
fn corrupt_truncated_foreign_and_future_files_get_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path());
    let source = key_file(tmp.path());
    ks.init(&source, FAST).unwrap();
    let good = std::fs::read(ks.path()).unwrap();

    let mut flipped = good.clone();
    flipped[70] ^= 1;
    std::fs::write(ks.path(), &flipped).unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::Corrupt { .. })));

    for cut in [3, 40, 64, good.len() - 1] {
        std::fs::write(ks.path(), &good[..cut]).unwrap();
        let err = ks.open(&source).unwrap_err();
        assert!(matches!(err, KeystoreError::Truncated { .. }), "cut at {cut}: {err}");
    }

    std::fs::write(ks.path(), b"-----BEGIN PRIVATE KEY-----\nMIIE...").unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::Foreign(_))));
    std::fs::write(ks.path(), b"").unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::Truncated { .. })));

    let mut future = good.clone();
    future[9] = 2;
    std::fs::write(ks.path(), &future).unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::UnsupportedVersion { found: 2, .. })));

    let mut trailing = good.clone();
    trailing.push(0);
    std::fs::write(ks.path(), &trailing).unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::Corrupt { .. })));

    std::fs::remove_file(ks.path()).unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::Missing(_))));
}

#[test]
fn rotate_retire_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path());
    let source = key_file(tmp.path());
    let first = ks.init(&source, FAST).unwrap();
    assert_eq!(ks.reload(&first.master, &first.header).unwrap().map(|_| ()), None);

    let (v, _) = ks.update(&source, KeySet::rotate).unwrap();
    assert_eq!(v, 2);
    let (header, keys) = ks.reload(&first.master, &first.header).unwrap().expect("a change is seen");
    assert_eq!(header.generation, 2);
    assert_eq!(keys.active().unwrap().version(), 2);
    assert!(keys.get(1).is_some(), "old versions stay for Decrypt");

    let err = ks.update(&source, |keys| keys.retire(2)).unwrap_err();
    assert!(matches!(err, KeystoreError::RetireActive(2)));
    ks.update(&source, |keys| keys.retire(1)).unwrap();
    let now = ks.open(&source).unwrap();
    assert!(now.keys.get(1).is_none());
    assert_eq!(now.header.generation, 3);
    assert!(
        !std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
    );
}
