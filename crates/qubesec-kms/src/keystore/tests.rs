use std::os::unix::fs::PermissionsExt;

use super::*;

const FAST: Argon2Params = Argon2Params { m_cost: 64, t_cost: 1, p_cost: 1 };

fn key_file(dir: &Path) -> MasterKeySource {
    MasterKeySource::KeyFile(dir.join("master.key"))
}

fn passphrase(dir: &Path, text: &str) -> MasterKeySource {
    let p = dir.join(format!("pass-{}", text.len()));
    write_secret(&p, format!("{text}\n").as_bytes());
    MasterKeySource::PassphraseFile(p)
}

fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    write_secret(&tmp.path().join("other.key"), &[7u8; 32]);
    let err = ks.open(&MasterKeySource::KeyFile(tmp.path().join("other.key"))).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongMasterKey(_)), "{err}");
    write_secret(&tmp.path().join("short.key"), &[7u8; 31]);
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
    future[9] = 3;
    std::fs::write(ks.path(), &future).unwrap();
    assert!(matches!(ks.open(&source), Err(KeystoreError::UnsupportedVersion { found: 3, .. })));

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

/// Rewrites header bytes and fixes the trailing checksum (what an attacker
/// with write access, or a bad editor, could produce).
fn patch_header(file: &Path, at: usize, bytes: &[u8]) {
    use sha2::Digest;
    let mut data = std::fs::read(file).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    let body = data.len() - 32;
    let sum = sha2::Sha256::digest(&data[..body]);
    data[body..].copy_from_slice(&sum);
    std::fs::write(file, data).unwrap();
}

#[test]
fn argon2_parameters_are_bounded_before_use() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path().join("ks"));
    let source = passphrase(tmp.path(), "a passphrase");
    ks.init(&source, FAST).unwrap();
    // 64 GiB of memory: refused, never allocated.
    patch_header(ks.path(), 12, &(64u32 * 1024 * 1024).to_be_bytes());
    let err = ks.open(&source).unwrap_err();
    assert!(matches!(err, KeystoreError::Argon2Bounds { .. }), "{err}");
    assert!(err.to_string().contains("refusing to allocate"), "{err}");
    patch_header(ks.path(), 12, &64u32.to_be_bytes());
    patch_header(ks.path(), 16, &1000u32.to_be_bytes());
    assert!(ks.open(&source).unwrap_err().to_string().contains("passes 1000"));
    patch_header(ks.path(), 16, &1u32.to_be_bytes());
    patch_header(ks.path(), 20, &0u32.to_be_bytes());
    assert!(ks.open(&source).unwrap_err().to_string().contains("lanes 0"));

    // `init` options: defaults of at least 64 MiB and 3 passes, bounds named.
    let d = Argon2Params::default();
    assert!(d.m_cost >= 64 * 1024 && d.t_cost >= 3, "{d:?}");
    assert!(Argon2Params::for_init(4096, 3, 1).unwrap_err().contains("--argon2-memory-mib"));
    assert!(Argon2Params::for_init(8, 3, 1).unwrap_err().contains("--argon2-memory-mib"));
    assert!(Argon2Params::for_init(64, 1, 1).unwrap_err().contains("--argon2-passes"));
    assert!(Argon2Params::for_init(64, 3, 0).unwrap_err().contains("--argon2-lanes"));
    assert_eq!(Argon2Params::for_init(64, 3, 1).unwrap(), d);
}

#[test]
fn secret_files_readable_by_others_or_owned_by_another_user_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path().join("ks"));
    let source = key_file(tmp.path());
    ks.init(&source, FAST).unwrap();
    let key = tmp.path().join("master.key");
    for mode in [0o640, 0o604, 0o620, 0o644] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = ks.open(&source).unwrap_err();
        assert!(matches!(err, KeystoreError::UnsafeFile { .. }), "{mode:o}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&key.display().to_string()) && msg.contains("chmod 600"), "{msg}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    ks.open(&source).unwrap();
    // Owned by someone else (the tests run as root in CI, which may chown).
    let me = nix::unistd::geteuid().as_raw();
    let other = me.wrapping_add(4242);
    if nix::unistd::chown(&key, Some(nix::unistd::Uid::from_raw(other)), None).is_ok() {
        let msg = ks.open(&source).unwrap_err().to_string();
        assert!(msg.contains(&format!("owned by uid {other}")) && msg.contains(&format!("chown {me}")), "{msg}");
    }
    // A passphrase file too.
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "open to everyone\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = master::read_passphrase(&pass).unwrap_err();
    assert!(matches!(err, KeystoreError::UnsafeFile { .. }), "{err}");
}

#[test]
fn identity_is_created_with_the_keystore_and_sealed_by_its_master_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::at(tmp.path().join("ks"));
    let source = passphrase(tmp.path(), "identity test");
    let opened = ks.init(&source, FAST).unwrap();
    let id = ks.identity(&opened.master).unwrap();
    let (again, created) = ks.ensure_identity(&source).unwrap();
    assert!(!created);
    assert_eq!(again.fingerprint(), id.fingerprint());
    assert_eq!(std::fs::metadata(ks.identity_path()).unwrap().permissions().mode() & 0o777, 0o600);
    // An older keystore without an identity gets one on request.
    std::fs::remove_file(ks.identity_path()).unwrap();
    assert!(ks.identity(&opened.master).unwrap_err().to_string().contains("keystore identity"));
    let (fresh, created) = ks.ensure_identity(&source).unwrap();
    assert!(created);
    assert_ne!(fresh.fingerprint(), id.fingerprint());
}
