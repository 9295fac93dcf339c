//! The PKCS#11 backend (`cryptoki`): KEKs are sensitive, non-extractable
//! AES-256 token objects labelled `<key label>/v<N>`; AES-GCM runs inside the
//! token.
//!
//! - Versions: labels are parsed strictly (`v` then a decimal number without
//!   sign or leading zero, 1..2^32-1), so `v01` or `v+1` never alias `v1`.
//! - The active version is named by marker data objects labelled
//!   `<key label>/active` holding `<sequence> <version>`; the marker with the
//!   highest sequence wins. A token without a marker (made before markers
//!   existed) uses its highest version. `rotate --stage` adds a version
//!   without touching the marker; `activate` writes a new marker.
//! - Adding a version on a token that several nodes share: the key is
//!   created, then the token is searched for another object with the same
//!   label. If there is one, the new key is destroyed and the next version
//!   number tried after a random pause. A new key is never active before
//!   its check, and a key that was never active is safe to destroy, so two
//!   concurrent `rotate` runs cannot leave two keys under one version.
//!   Versions that are ambiguous anyway (made by older builds) are ignored.
//! - Key ids: `KeyId::derive(N, CKA_ID, "pkcs11")`; `CKA_ID` is 16 random bytes
//!   chosen when the key is generated, so ids are never reused.
//! - Login, once per connection, with the PIN read from its file at that
//!   moment. Before `C_Login` the token flags are read: a locked PIN or a
//!   final try is never attempted; after failed attempts (`COUNT_LOW`) only a
//!   PIN file rewritten since this plugin saw its PIN rejected is tried. A
//!   rejection is recorded in a state file ([`super::pinstate`]) as the PIN
//!   file's identity (never the PIN or a hash of it), so no process tries
//!   that file's PIN again until the file is rewritten.
//! - Nothing here ever ends the process: when the token is missing, refuses
//!   the PIN or is lost, requests fail with `Unavailable` (with the reason)
//!   and `refresh` reconnects with exponential backoff (1 s .. 30 s).
//! - With `token_generated_iv`, Encrypt uses the PKCS#11 3.0 message API
//!   (`C_EncryptMessage`, `CKG_GENERATE_RANDOM`) so the token chooses the IV.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::{GcmMessageParams, GcmParams, GeneratorFunction};
use cryptoki::mechanism::{Mechanism, MessageParam};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::pinstate::{PinFileIdentity, PinState};
use super::{Backend, Sealed};
use crate::envelope;
use crate::error::{Error, Result};
use crate::keyid::KeyId;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a new key object is left to become visible to other writers before the duplicate check.
const SETTLE: Duration = Duration::from_millis(300);
const APPLICATION: &[u8] = b"qubesec-kms";

/// Where the token and its keys are.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token label.
    pub token_label: String,
    /// A file holding the user PIN (one trailing newline ignored).
    pub pin_file: PathBuf,
    /// The KEK label prefix.
    pub key_label: String,
    /// Sessions kept open for reuse.
    pub pool_size: usize,
    /// Where the PIN-rejection state lives (must survive restarts).
    pub state_dir: PathBuf,
    /// Let the token generate AES-GCM IVs (PKCS#11 3.0 message API).
    pub token_generated_iv: bool,
}

struct TokenKey {
    handle: ObjectHandle,
    key_id: KeyId,
}

/// A key object found under a version label, and its 16-byte `CKA_ID` if it has one.
type Candidate = (ObjectHandle, Option<[u8; 16]>);

struct Keys {
    /// 0 when no version is active.
    active: u32,
    by_version: BTreeMap<u32, TokenKey>,
    /// The highest version label present (ambiguous ones included).
    highest: u32,
    /// The highest marker sequence (0: no marker).
    marker_seq: u64,
}

/// One initialized library, logged-in token and session pool.
struct Conn {
    ctx: Pkcs11,
    slot: Slot,
    /// The session that logged in, never closed while the connection lives:
    /// closing a token's last session logs the user out (PKCS#11 §5.6), so
    /// pooled sessions dropped after an error must never be the last one.
    login: Mutex<Option<Session>>,
    pool: Mutex<Vec<Session>>,
    keys: RwLock<Keys>,
}

struct Reconnect {
    next_attempt: Instant,
    backoff: Duration,
    last_error: String,
}

/// KEKs in a PKCS#11 token.
pub struct Pkcs11Backend {
    config: Pkcs11Config,
    conn: RwLock<Option<Arc<Conn>>>,
    reconnect: Mutex<Reconnect>,
    login_attempts: AtomicU32,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.config.module)
            .field("token_label", &self.config.token_label)
            .field("key_label", &self.config.key_label)
            .finish_non_exhaustive()
    }
}

/// Errors that mean the token, the session or the library state is gone.
fn is_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::GeneralError
                | RvError::SlotIdInvalid,
            _
        )
    )
}

/// Errors that certainly mean the session or token is gone (no probe needed).
fn is_session_gone(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid,
            _
        )
    )
}

/// `C_Login` answers that mean "this PIN is wrong" (record it, never retry it).
fn is_rejected_pin(e: &CkError) -> bool {
    matches!(e, CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _))
}

fn label_of(prefix: &str, version: u32) -> String {
    format!("{prefix}/v{version}")
}

fn marker_label(prefix: &str) -> String {
    format!("{prefix}/active")
}

/// Attributes of an object another process may have destroyed since it was
/// found: `None` when it is gone.
fn attributes(
    s: &Session,
    h: ObjectHandle,
    types: &[AttributeType],
) -> cryptoki::error::Result<Option<Vec<Attribute>>> {
    match s.get_attributes(h, types) {
        Ok(a) => Ok(Some(a)),
        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Destroys an object, accepting that another process destroyed it first.
fn destroy(s: &Session, h: ObjectHandle) -> cryptoki::error::Result<()> {
    match s.destroy_object(h) {
        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => Ok(()),
        other => other,
    }
}

/// The version in a KEK label `<prefix>/v<N>`, strictly: `N` is decimal
/// digits only, no sign, no leading zero, and fits `1..=u32::MAX`.
pub fn parse_version_label(prefix: &str, label: &str) -> Option<u32> {
    let digits = label.strip_prefix(prefix)?.strip_prefix("/v")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse::<u32>().ok()
}

/// A marker's value `<sequence> <version>`, strictly.
fn parse_marker(value: &[u8]) -> Option<(u64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (seq, version) = text.split_once(' ')?;
    let canonical =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical(seq) || !canonical(version) {
        return None;
    }
    Some((seq.parse().ok()?, version.parse().ok()?))
}

impl Pkcs11Backend {
    /// A backend that connects later (on [`Backend::refresh`]): never fails,
    /// so `serve` keeps running and reports why it is unhealthy.
    pub fn new(config: Pkcs11Config) -> Self {
        Self {
            config,
            conn: RwLock::new(None),
            reconnect: Mutex::new(Reconnect {
                next_attempt: Instant::now(),
                backoff: Duration::from_secs(1),
                last_error: "not connected yet".into(),
            }),
            login_attempts: AtomicU32::new(0),
        }
    }

    /// Loads the module, finds the token, logs in (subject to the PIN
    /// guard) and lists the KEKs; generates and activates version 1 if the
    /// token holds none. For the command line: every failure is returned.
    ///
    /// # Errors
    /// [`Error::Pkcs11`] for a refused PIN or a missing module,
    /// [`Error::Unavailable`] if the token is absent.
    pub fn connect(config: Pkcs11Config) -> Result<Self> {
        let backend = Self::new(config);
        // A token shared by several processes can answer a login with a
        // transient error (SoftHSM2 does under contention): retry those few
        // times. A refused PIN is an `Error::Pkcs11` and is never retried.
        let mut attempt = 0;
        let conn = loop {
            match backend.open_conn() {
                Err(Error::Unavailable(why)) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %why, attempt, "PKCS#11 connect failed; retrying");
                    let pause = qubesec_core::rand::bytes(1).map(|b| u64::from(b[0])).unwrap_or(100);
                    std::thread::sleep(Duration::from_millis(50 + 2 * pause));
                }
                other => break other?,
            }
        };
        *backend.conn.write().map_err(|_| poisoned())? = Some(conn);
        Ok(backend)
    }

    /// How many times this backend called `C_Login` (for tests and metrics).
    pub fn login_attempts(&self) -> u32 {
        self.login_attempts.load(Ordering::SeqCst)
    }

    fn open_conn(&self) -> Result<Arc<Conn>> {
        let ctx = Pkcs11::new(&self.config.module)
            .map_err(|e| Error::Pkcs11(format!("loading {}: {e}", self.config.module.display())))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| Error::Unavailable(format!("C_Initialize: {e}")))?;
        let conn = Arc::new(self.login(ctx)?);
        self.load_keys(&conn)?;
        let empty = conn.keys.read().map_err(|_| poisoned())?.highest == 0;
        if empty {
            self.add_version_on(&conn, true)?;
        }
        Ok(conn)
    }

    fn login(&self, ctx: Pkcs11) -> Result<Conn> {
        let label = &self.config.token_label;
        let slots = ctx.get_slots_with_token().map_err(|e| Error::Unavailable(format!("listing slots: {e}")))?;
        let found = slots.into_iter().find_map(|s| {
            let info = ctx.get_token_info(s).ok()?;
            (info.label().trim_end() == label).then_some((s, info))
        });
        let (slot, info) = found.ok_or_else(|| Error::Unavailable(format!("no token labelled {label:?}")))?;
        let pin_file = &self.config.pin_file;
        let (pin, pin_meta) = crate::keystore::master::read_passphrase_and_metadata(pin_file)?;
        let pin_id = PinFileIdentity::of(&pin_meta);
        let state =
            PinState::for_token(&self.config.state_dir, &self.config.module, label, info.serial_number().trim_end());
        let refuse = |why: String| Error::Pkcs11(format!("not logging in to token {label:?}: {why}"));
        let recorded = state.is_rejected(pin_id).map_err(|e| {
            refuse(format!("cannot read the PIN state ({e}); fix or remove the file to allow a login attempt"))
        })?;
        if recorded == Some(true) {
            return Err(refuse(format!(
                "the token refused the PIN in {} before; it is not tried again until that file changes",
                pin_file.display()
            )));
        }
        if info.user_pin_locked() {
            return Err(refuse("the token reports the user PIN is locked (CKF_USER_PIN_LOCKED)".into()));
        }
        if info.user_pin_final_try() {
            return Err(refuse(
                "the token reports one PIN attempt left (CKF_USER_PIN_FINAL_TRY); log in once with your HSM's \
                 own tool to reset the counter"
                    .into(),
            ));
        }
        // COUNT_LOW: failed attempts happened. A PIN this plugin saw rejected
        // has been replaced by the operator (the state differs): try it once.
        if info.user_pin_count_low() && recorded.is_none() {
            return Err(refuse(
                "the token reports failed PIN attempts (CKF_USER_PIN_COUNT_LOW) that this plugin did not make; \
                 log in once with your HSM's own tool to reset the counter"
                    .into(),
            ));
        }
        let pin_text = std::str::from_utf8(pin.expose_secret())
            .map_err(|_| Error::Pkcs11(format!("{}: the PIN is not UTF-8", pin_file.display())))?;
        let auth = AuthPin::from(pin_text.to_owned());
        let session = ctx.open_rw_session(slot).map_err(|e| Error::Unavailable(format!("opening a session: {e}")))?;
        self.login_attempts.fetch_add(1, Ordering::SeqCst);
        tracing::info!(token = %label, "logging in to the PKCS#11 token");
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if recorded.is_some()
                    && let Err(e) = state.clear()
                {
                    tracing::warn!(error = %e, "could not clear the PIN state after a successful login");
                }
            }
            Err(e) if is_rejected_pin(&e) || matches!(e, CkError::Pkcs11(RvError::PinLocked, _)) => {
                let saved = state.record_rejected(pin_id);
                let note = match &saved {
                    Ok(()) => format!("recorded in {}", state.path().display()),
                    Err(w) => format!("COULD NOT RECORD IT ({w}); this process will not retry it either"),
                };
                tracing::error!(token = %label, error = %e, "the token refused the PIN; {note}");
                return Err(Error::Pkcs11(format!(
                    "login to token {label:?} refused the PIN from {} ({e}); not retrying it, to avoid \
                     locking the token; write the right PIN to the file",
                    pin_file.display()
                )));
            }
            Err(e) => return Err(Error::Unavailable(format!("login: {e}"))),
        }
        Ok(Conn {
            ctx,
            slot,
            login: Mutex::new(Some(session)),
            pool: Mutex::new(Vec::new()),
            keys: RwLock::new(Keys { active: 0, by_version: BTreeMap::new(), highest: 0, marker_seq: 0 }),
        })
    }

    /// Lists the KEK objects and the active marker on the token.
    fn load_keys(&self, conn: &Conn) -> Result<()> {
        let prefix = &self.config.key_label;
        let (keys, ambiguous, marker) = self.with_session(conn, |s| {
            let template = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES)];
            let mut found: BTreeMap<u32, Vec<Candidate>> = BTreeMap::new();
            for handle in s.find_objects(&template)? {
                let Some(attrs) = attributes(s, handle, &[AttributeType::Label, AttributeType::Id])? else {
                    continue;
                };
                let (mut label, mut id) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Label(l) => label = String::from_utf8(l).ok(),
                        Attribute::Id(i) => id = <[u8; 16]>::try_from(i.as_slice()).ok(),
                        _ => {}
                    }
                }
                if let Some(v) = label.as_deref().and_then(|l| parse_version_label(prefix, l)) {
                    found.entry(v).or_default().push((handle, id));
                }
            }
            let mut marker: Option<(u64, u32)> = None;
            let mlabel = marker_label(prefix);
            let mtemplate = [Attribute::Class(ObjectClass::DATA), Attribute::Label(mlabel.into_bytes())];
            for handle in s.find_objects(&mtemplate)? {
                for a in attributes(s, handle, &[AttributeType::Value])?.unwrap_or_default() {
                    if let Attribute::Value(v) = a
                        && let Some(m) = parse_marker(&v)
                    {
                        marker = marker.max(Some(m));
                    }
                }
            }
            let mut keys = BTreeMap::new();
            let mut ambiguous = Vec::new();
            for (v, objs) in found {
                match objs.as_slice() {
                    [(handle, Some(uid))] => {
                        keys.insert(v, TokenKey { handle: *handle, key_id: KeyId::derive(v, uid, b"pkcs11") });
                    }
                    _ => ambiguous.push(v),
                }
            }
            Ok((keys, ambiguous, marker))
        })?;
        if !ambiguous.is_empty() {
            tracing::warn!(versions = ?ambiguous, "ignoring KEK versions held by several objects (or without a 16-byte CKA_ID)");
        }
        let highest = keys.keys().chain(ambiguous.iter()).max().copied().unwrap_or(0);
        let (marker_seq, active) = match marker {
            Some((seq, v)) => (seq, v),
            None => (0, keys.keys().next_back().copied().unwrap_or(0)),
        };
        *conn.keys.write().map_err(|_| poisoned())? = Keys { active, by_version: keys, highest, marker_seq };
        Ok(())
    }

    fn write_marker(&self, conn: &Conn, seq: u64, version: u32) -> Result<()> {
        let label = marker_label(&self.config.key_label);
        self.with_session(conn, |s| {
            let template = [
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.clone().into_bytes()),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Value(format!("{seq} {version}").into_bytes()),
            ];
            let new = s.create_object(&template)?;
            // Older markers go; a concurrent writer's newer one stays.
            let find = [Attribute::Class(ObjectClass::DATA), Attribute::Label(label.clone().into_bytes())];
            for handle in s.find_objects(&find)? {
                if handle == new {
                    continue;
                }
                let older =
                    attributes(s, handle, &[AttributeType::Value])?.unwrap_or_default().into_iter().any(|a| match a {
                        Attribute::Value(v) => parse_marker(&v).is_none_or(|m| m < (seq, version)),
                        _ => false,
                    });
                if older {
                    destroy(s, handle)?;
                }
            }
            Ok(())
        })
    }

    /// Generates a key under `<label>/v<version>` and checks no other object
    /// holds that label; returns its id, or `None` (key destroyed) if one does.
    fn create_checked(&self, conn: &Conn, version: u32) -> Result<Option<KeyId>> {
        let mut uid = [0u8; 16];
        qubesec_core::rand::fill(&mut uid).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
        let label = label_of(&self.config.key_label, version);
        self.with_session(conn, |s| {
            let template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.clone().into_bytes()),
                Attribute::Id(uid.to_vec()),
            ];
            match s.generate_key(&Mechanism::AesKeyGen, &template) {
                Ok(_) => {}
                // A busy shared token may fail a generation outright
                // (SoftHSM2 under contention); the caller tries again.
                Err(CkError::Pkcs11(RvError::FunctionFailed, _)) => return Ok(None),
                Err(e) => return Err(e),
            }
            // Let a concurrent writer's object become visible (tokens shared
            // through files, like SoftHSM2, publish new objects with a lag),
            // then look for any other object under this label, by CKA_ID
            // (handles are not stable identities across re-indexing).
            std::thread::sleep(SETTLE);
            let same = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.clone().into_bytes())];
            let mut mine = Vec::new();
            let mut others = 0;
            for h in s.find_objects(&same)? {
                let Some(attrs) = attributes(s, h, &[AttributeType::Id])? else { continue };
                let is_mine = attrs.into_iter().any(|a| match a {
                    Attribute::Id(i) => i == uid,
                    _ => false,
                });
                if is_mine { mine.push(h) } else { others += 1 }
            }
            if others > 0 || mine.is_empty() {
                for h in mine {
                    destroy(s, h)?;
                }
                return Ok(None);
            }
            Ok(Some(KeyId::derive(version, &uid, b"pkcs11")))
        })
        .inspect(|made| match made {
            Some(_) => tracing::info!(label, "generated a KEK in the token"),
            None => tracing::info!(label, "another writer created this version at the same time; retrying"),
        })
    }

    /// Adds the next KEK version (activating it when `activate`); safe when
    /// several processes do it on one token at once.
    fn add_version_on(&self, conn: &Conn, activate: bool) -> Result<KeyId> {
        for _ in 0..16 {
            self.load_keys(conn)?;
            let (highest, seq, active) = {
                let k = conn.keys.read().map_err(|_| poisoned())?;
                (k.highest, k.marker_seq, k.active)
            };
            if seq == 0 {
                // Pin today's active version before a newer key appears.
                self.write_marker(conn, 1, active)?;
                continue;
            }
            let version = highest.checked_add(1).ok_or_else(|| Error::Internal("versions exhausted".into()))?;
            if let Some(id) = self.create_checked(conn, version)? {
                if activate {
                    self.load_keys(conn)?;
                    let seq = conn.keys.read().map_err(|_| poisoned())?.marker_seq;
                    self.write_marker(conn, seq + 1, version)?;
                }
                self.load_keys(conn)?;
                return Ok(id);
            }
            let pause = qubesec_core::rand::bytes(1).map(|b| u64::from(b[0])).unwrap_or(100);
            std::thread::sleep(Duration::from_millis(20 + pause));
        }
        Err(Error::Pkcs11("could not add a KEK version: other writers kept taking the version number".into()))
    }

    /// Adds the next KEK version on the token; active at once when
    /// `activate` (single-node `rotate`), inactive otherwise (`rotate --stage`).
    ///
    /// # Errors
    /// PKCS#11 errors.
    pub fn add_version(&self, activate: bool) -> Result<KeyId> {
        let conn = self.current()?;
        self.add_version_on(&conn, activate)
    }

    /// Makes `version` active (a new marker). Returns the previous active version.
    ///
    /// # Errors
    /// [`crate::KeystoreError::NoSuchVersion`], [`crate::KeystoreError::ActivateOlder`], PKCS#11 errors.
    pub fn activate(&self, version: u32, allow_older: bool) -> Result<u32> {
        let conn = self.current()?;
        self.load_keys(&conn)?;
        let (active, seq, present) = {
            let k = conn.keys.read().map_err(|_| poisoned())?;
            (k.active, k.marker_seq, k.by_version.contains_key(&version))
        };
        if !present {
            return Err(crate::KeystoreError::NoSuchVersion(version).into());
        }
        if version < active && !allow_older {
            return Err(crate::KeystoreError::ActivateOlder { version, active }.into());
        }
        if version != active || seq == 0 {
            self.write_marker(&conn, seq + 1, version)?;
        }
        self.load_keys(&conn)?;
        Ok(active)
    }

    /// Destroys a KEK version (refuses the active one).
    ///
    /// # Errors
    /// [`crate::KeystoreError::RetireActive`], [`crate::KeystoreError::NoSuchVersion`], PKCS#11 errors.
    pub fn retire(&self, version: u32) -> Result<()> {
        let conn = self.current()?;
        self.load_keys(&conn)?;
        let handle = {
            let keys = conn.keys.read().map_err(|_| poisoned())?;
            if version == keys.active {
                return Err(crate::KeystoreError::RetireActive(version).into());
            }
            keys.by_version.get(&version).map(|k| k.handle).ok_or(crate::KeystoreError::NoSuchVersion(version))?
        };
        self.with_session(&conn, |s| s.destroy_object(handle))?;
        self.load_keys(&conn)
    }

    fn current(&self) -> Result<Arc<Conn>> {
        self.conn.read().map_err(|_| poisoned())?.clone().ok_or_else(|| {
            let why = self.reconnect.lock().map(|r| r.last_error.clone()).unwrap_or_default();
            Error::Unavailable(format!("PKCS#11 token {:?} is not connected: {why}", self.config.token_label))
        })
    }

    /// Runs `f` on a pooled session. A lost token or session drops the
    /// connection (the next refresh reconnects) and yields `Unavailable`.
    fn with_session<T>(&self, conn: &Conn, f: impl FnOnce(&Session) -> cryptoki::error::Result<T>) -> Result<T> {
        self.with_session_checked(conn, None, f)
    }

    /// As [`Self::with_session`]; for a decryption under `key`, a failure that
    /// is not clearly a lost token is checked: when the session and the key
    /// still answer, the ciphertext was not authentic (tokens such as
    /// SoftHSM2 report a failed GCM tag check as a general error).
    fn with_session_checked<T>(
        &self,
        conn: &Conn,
        key: Option<ObjectHandle>,
        f: impl FnOnce(&Session) -> cryptoki::error::Result<T>,
    ) -> Result<T> {
        let pooled = conn.pool.lock().map_err(|_| poisoned())?.pop();
        let session = match pooled {
            Some(s) => s,
            None => conn.ctx.open_rw_session(conn.slot).map_err(|e| self.classify(conn, e))?,
        };
        match f(&session) {
            Ok(v) => {
                let mut pool = conn.pool.lock().map_err(|_| poisoned())?;
                if pool.len() < self.config.pool_size.max(1) {
                    pool.push(session);
                }
                Ok(v)
            }
            Err(e) => {
                if let Some(key) = key
                    && !is_session_gone(&e)
                    && session.get_session_info().is_ok()
                    && session.get_attributes(key, &[AttributeType::Label]).is_ok()
                {
                    let mut pool = conn.pool.lock().map_err(|_| poisoned())?;
                    if pool.len() < self.config.pool_size.max(1) {
                        pool.push(session);
                    }
                    return Err(Error::NotAuthentic("(token)".into()));
                }
                Err(self.classify(conn, e))
            }
        }
    }

    fn classify(&self, conn: &Conn, e: CkError) -> Error {
        if is_lost(&e) {
            self.drop_conn(conn, &e.to_string());
            return Error::Unavailable(format!("PKCS#11 token lost: {e}"));
        }
        match e {
            CkError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _) => {
                Error::NotAuthentic("(token)".into())
            }
            other => Error::Pkcs11(other.to_string()),
        }
    }

    /// Forgets `conn` if it is still the current one.
    fn drop_conn(&self, conn: &Conn, why: &str) {
        if let Ok(mut slot) = self.conn.write()
            && slot.as_ref().is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), conn))
        {
            *slot = None;
            tracing::warn!(error = why, token = %self.config.token_label, "PKCS#11 connection lost; will reconnect");
            if let Ok(mut r) = self.reconnect.lock() {
                r.next_attempt = Instant::now();
                r.backoff = Duration::from_secs(1);
                r.last_error = why.to_owned();
            }
        }
    }

    fn key(&self, conn: &Conn, key_id: &KeyId) -> Result<ObjectHandle> {
        let keys = conn.keys.read().map_err(|_| poisoned())?;
        keys.by_version
            .get(&key_id.version())
            .filter(|k| k.key_id == *key_id)
            .map(|k| k.handle)
            .ok_or_else(|| Error::UnknownKey(key_id.to_string()))
    }

    /// AES-GCM in the token with an IV the token generates (PKCS#11 3.0).
    fn encrypt_token_iv(
        &self,
        conn: &Conn,
        handle: ObjectHandle,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<([u8; 12], Vec<u8>)> {
        let mut iv = [0u8; 12];
        let mut tag = [0u8; 16];
        let out = self.with_session(conn, |s| {
            let mut init_iv = [0u8; 12];
            let mut init_tag = [0u8; 16];
            let init = GcmMessageParams::new(&mut init_iv, 0.into(), GeneratorFunction::GenerateRandom, &mut init_tag)?;
            s.message_encrypt_init(&Mechanism::AesGcmMessage(init), handle)?;
            let params = GcmMessageParams::new(&mut iv, 0.into(), GeneratorFunction::GenerateRandom, &mut tag)?;
            let out = s.encrypt_message(&MessageParam::AesGcmMessage(params), aad, plaintext);
            let _ = s.message_encrypt_final();
            out
        });
        let out = out.map_err(|e| match e {
            Error::Pkcs11(m) => Error::Pkcs11(format!(
                "--token-generated-iv: the token cannot generate AES-GCM IVs (PKCS#11 3.0 \
                 C_MessageEncryptInit/C_EncryptMessage with CKG_GENERATE_RANDOM): {m}"
            )),
            other => other,
        })?;
        if iv == [0u8; 12] {
            return Err(Error::Pkcs11(
                "--token-generated-iv: the token returned no IV; refusing the ciphertext".into(),
            ));
        }
        Ok((iv, [out, tag.to_vec()].concat()))
    }
}

/// Finalizes the library once no session or operation uses it any more.
impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.clear();
        }
        if let Ok(mut login) = self.login.lock() {
            login.take();
        }
        let _ = self.ctx.clone().finalize();
    }
}

fn poisoned() -> Error {
    Error::Internal("PKCS#11 state lock poisoned".into())
}

impl Backend for Pkcs11Backend {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn active_key_id(&self) -> Result<KeyId> {
        let conn = self.current()?;
        let keys = conn.keys.read().map_err(|_| poisoned())?;
        keys.by_version.get(&keys.active).map(|k| k.key_id.clone()).ok_or_else(|| {
            Error::Unavailable(format!("the active KEK version {} is not (unambiguously) on the token", keys.active))
        })
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed> {
        envelope::check_plaintext(plaintext)?;
        let conn = self.current()?;
        let key_id = self.active_key_id()?;
        let handle = self.key(&conn, &key_id)?;
        let aad = envelope::associated_data(&key_id);
        let (nonce, sealed) = if self.config.token_generated_iv {
            self.encrypt_token_iv(&conn, handle, &aad, plaintext)?
        } else {
            let nonce = envelope::random_nonce()?;
            let sealed = self.with_session(&conn, |s| {
                let mut iv = nonce;
                let params = GcmParams::new(&mut iv, &aad, 128.into())?;
                s.encrypt(&Mechanism::AesGcm(params), handle, plaintext)
            })?;
            (nonce, sealed)
        };
        Ok(Sealed { ciphertext: envelope::join(&nonce, &sealed), key_id })
    }

    fn decrypt(&self, key_id: &KeyId, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let parts = envelope::split(ciphertext)?;
        let conn = self.current()?;
        let handle = self.key(&conn, key_id)?;
        let aad = envelope::associated_data(key_id);
        self.with_session_checked(&conn, Some(handle), |s| {
            let mut iv = *parts.nonce;
            let params = GcmParams::new(&mut iv, &aad, 128.into())?;
            s.decrypt(&Mechanism::AesGcm(params), handle, parts.sealed)
        })
        .map(Zeroizing::new)
        .map_err(|e| match e {
            Error::NotAuthentic(_) => Error::NotAuthentic(key_id.to_string()),
            other => other,
        })
    }

    fn refresh(&self) -> Result<bool> {
        let before = self.active_key_id().ok();
        let current = self.conn.read().map_err(|_| poisoned())?.clone();
        match current {
            Some(conn) => {
                self.load_keys(&conn)?;
                let empty = conn.keys.read().map_err(|_| poisoned())?.by_version.is_empty();
                if empty {
                    self.drop_conn(&conn, "the token lists no KEKs any more");
                    return Err(Error::Unavailable("the token lists no KEKs any more".into()));
                }
            }
            None => {
                {
                    let r = self.reconnect.lock().map_err(|_| poisoned())?;
                    if Instant::now() < r.next_attempt {
                        return Err(Error::Unavailable(format!("reconnect pending: {}", r.last_error)));
                    }
                }
                match self.open_conn() {
                    Ok(conn) if conn.keys.read().is_ok_and(|k| !k.by_version.is_empty()) => {
                        tracing::info!(token = %self.config.token_label, "PKCS#11 token connected");
                        *self.conn.write().map_err(|_| poisoned())? = Some(conn);
                    }
                    other => {
                        let why = match other {
                            Ok(_) => "the token lists no KEKs".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        let mut r = self.reconnect.lock().map_err(|_| poisoned())?;
                        r.next_attempt = Instant::now() + r.backoff;
                        r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                        r.last_error = why.clone();
                        return Err(Error::Unavailable(why));
                    }
                }
            }
        }
        Ok(self.active_key_id().ok() != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_labels_parse_strictly() {
        assert_eq!(parse_version_label("kek", "kek/v1"), Some(1));
        assert_eq!(parse_version_label("kek", "kek/v4294967295"), Some(u32::MAX));
        for bad in
            ["kek/v01", "kek/v+1", "kek/v", "kek/v0", "kek/v-1", "kek/v1 ", "kek/v١", "kek/v4294967296", "kek2/v1"]
        {
            assert_eq!(parse_version_label("kek", bad), None, "{bad}");
        }
        // A prefix that is itself a prefix of another label does not capture it.
        assert_eq!(parse_version_label("kek", "kek/x/v1"), None);
    }

    #[test]
    fn markers_parse_strictly() {
        assert_eq!(parse_marker(b"1 0"), Some((1, 0)));
        assert_eq!(parse_marker(b"12 7"), Some((12, 7)));
        for bad in [&b"01 7"[..], b"1 07", b"1  7", b"17", b"1 +7", b"", b"1 7 "] {
            assert_eq!(parse_marker(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
