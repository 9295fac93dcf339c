//! The PKCS#11 backend (`cryptoki`): KEKs are sensitive, non-extractable
//! AES-256 token objects labelled `<key label>/v<N>`; AES-GCM runs inside the
//! token.
//!
//! - The active KEK is the highest version on the token; `rotate` generates
//!   the next one; `retire` destroys one (never the active one).
//! - Key ids: `KeyId::derive(N, CKA_ID, "pkcs11")`; `CKA_ID` is 16 random bytes
//!   chosen when the key is generated, so ids are never reused.
//! - One login per connection with the PIN from a file (kept in a `secrecy`
//!   type). A wrong or locked PIN is fatal: we never try it again, so a
//!   misconfigured plugin cannot lock the token.
//! - Sessions are pooled. When the token or a session is lost (or `refresh`
//!   finds no keys any more), the connection is dropped and the library
//!   finalized; `refresh` reconnects with exponential backoff (1 s .. 30 s).
//!   Meanwhile requests fail with `Unavailable`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{Backend, Sealed};
use crate::envelope;
use crate::error::{Error, Result};
use crate::keyid::KeyId;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
}

struct TokenKey {
    handle: ObjectHandle,
    key_id: KeyId,
}

struct Keys {
    active: u32,
    by_version: BTreeMap<u32, TokenKey>,
}

/// One initialized library, logged-in token and session pool.
struct Conn {
    ctx: Pkcs11,
    slot: Slot,
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
    pin: AuthPin,
    conn: RwLock<Option<Arc<Conn>>>,
    reconnect: Mutex<Reconnect>,
    /// Set after a wrong or locked PIN: never log in again.
    fatal: Mutex<Option<String>>,
    login_attempts: AtomicU32,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.config.module)
            .field("token_label", &self.config.token_label)
            .field("key_label", &self.config.key_label)
            .field("pin", &"<redacted>")
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

fn is_bad_pin(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinExpired,
            _
        )
    )
}

fn label_of(prefix: &str, version: u32) -> String {
    format!("{prefix}/v{version}")
}

impl Pkcs11Backend {
    /// Loads the module, finds the token, logs in once and lists the KEKs.
    /// Generates version 1 if the token holds none.
    ///
    /// # Errors
    /// [`Error::Pkcs11`] for a wrong PIN (after exactly one attempt), a
    /// missing module or token; [`Error::Unavailable`] if the token is absent.
    pub fn connect(config: Pkcs11Config) -> Result<Self> {
        let pin = crate::keystore::master::read_passphrase(&config.pin_file)?;
        let pin = std::str::from_utf8(pin.expose_secret())
            .map_err(|_| Error::Pkcs11(format!("{}: the PIN is not UTF-8", config.pin_file.display())))?;
        let backend = Self {
            pin: AuthPin::from(pin.to_owned()),
            config,
            conn: RwLock::new(None),
            reconnect: Mutex::new(Reconnect {
                next_attempt: Instant::now(),
                backoff: Duration::from_secs(1),
                last_error: String::new(),
            }),
            fatal: Mutex::new(None),
            login_attempts: AtomicU32::new(0),
        };
        let conn = backend.open_conn()?;
        if conn.keys.read().map_or(true, |k| k.by_version.is_empty()) {
            backend.generate_version(&conn, 1)?;
            backend.load_keys(&conn)?;
        }
        *backend.conn.write().map_err(|_| poisoned())? = Some(conn);
        Ok(backend)
    }

    /// How many times this backend called `C_Login` (for tests and metrics).
    pub fn login_attempts(&self) -> u32 {
        self.login_attempts.load(Ordering::SeqCst)
    }

    fn open_conn(&self) -> Result<Arc<Conn>> {
        if let Some(reason) = self.fatal.lock().map_err(|_| poisoned())?.clone() {
            return Err(Error::Pkcs11(reason));
        }
        let ctx = Pkcs11::new(&self.config.module)
            .map_err(|e| Error::Pkcs11(format!("loading {}: {e}", self.config.module.display())))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| Error::Unavailable(format!("C_Initialize: {e}")))?;
        let conn = self.login(ctx)?;
        self.load_keys(&conn)?;
        Ok(Arc::new(conn))
    }

    fn login(&self, ctx: Pkcs11) -> Result<Conn> {
        let slots = ctx.get_slots_with_token().map_err(|e| Error::Unavailable(format!("listing slots: {e}")))?;
        let slot = slots
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == self.config.token_label))
            .ok_or_else(|| Error::Unavailable(format!("no token labelled {:?}", self.config.token_label)))?;
        let session = ctx.open_rw_session(slot).map_err(|e| Error::Unavailable(format!("opening a session: {e}")))?;
        self.login_attempts.fetch_add(1, Ordering::SeqCst);
        tracing::info!(token = %self.config.token_label, "logging in to the PKCS#11 token");
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) if is_bad_pin(&e) => {
                let reason = format!(
                    "login to token {:?} refused the PIN from {} ({e}); not retrying, to avoid locking the token",
                    self.config.token_label,
                    self.config.pin_file.display()
                );
                *self.fatal.lock().map_err(|_| poisoned())? = Some(reason.clone());
                return Err(Error::Pkcs11(reason));
            }
            Err(e) => return Err(Error::Unavailable(format!("login: {e}"))),
        }
        Ok(Conn {
            ctx,
            slot,
            pool: Mutex::new(vec![session]),
            keys: RwLock::new(Keys { active: 0, by_version: BTreeMap::new() }),
        })
    }

    /// Lists the KEK objects on the token.
    fn load_keys(&self, conn: &Conn) -> Result<()> {
        let keys = self.with_session(conn, |s| {
            let template = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES)];
            let mut by_version = BTreeMap::new();
            let prefix = format!("{}/v", self.config.key_label);
            for handle in s.find_objects(&template)? {
                let attrs = s.get_attributes(handle, &[AttributeType::Label, AttributeType::Id])?;
                let (mut label, mut id) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Label(l) => label = String::from_utf8(l).ok(),
                        Attribute::Id(i) => id = <[u8; 16]>::try_from(i.as_slice()).ok(),
                        _ => {}
                    }
                }
                let version =
                    label.as_deref().and_then(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse::<u32>().ok());
                if let (Some(version), Some(uid)) = (version, id) {
                    by_version.insert(version, TokenKey { handle, key_id: KeyId::derive(version, &uid, b"pkcs11") });
                }
            }
            Ok(by_version)
        })?;
        let active = keys.keys().next_back().copied().unwrap_or(0);
        *conn.keys.write().map_err(|_| poisoned())? = Keys { active, by_version: keys };
        Ok(())
    }

    fn generate_version(&self, conn: &Conn, version: u32) -> Result<KeyId> {
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
            s.generate_key(&Mechanism::AesKeyGen, &template).map(drop)
        })?;
        tracing::info!(label, "generated a KEK in the token");
        Ok(KeyId::derive(version, &uid, b"pkcs11"))
    }

    /// Generates the next KEK version on the token; it becomes active.
    ///
    /// # Errors
    /// PKCS#11 errors.
    pub fn rotate(&self) -> Result<KeyId> {
        let conn = self.current()?;
        let next = conn
            .keys
            .read()
            .map_err(|_| poisoned())?
            .active
            .checked_add(1)
            .ok_or_else(|| Error::Internal("versions exhausted".into()))?;
        let id = self.generate_version(&conn, next)?;
        self.load_keys(&conn)?;
        Ok(id)
    }

    /// Destroys a KEK version (refuses the active one).
    ///
    /// # Errors
    /// [`crate::KeystoreError::RetireActive`], [`crate::KeystoreError::NoSuchVersion`], PKCS#11 errors.
    pub fn retire(&self, version: u32) -> Result<()> {
        let conn = self.current()?;
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
        if let Some(reason) = self.fatal.lock().map_err(|_| poisoned())?.clone() {
            return Err(Error::Unavailable(reason));
        }
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
}

/// Finalizes the library once no session or operation uses it any more.
impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.clear();
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
        keys.by_version
            .get(&keys.active)
            .map(|k| k.key_id.clone())
            .ok_or_else(|| Error::Unavailable("no KEK on the token".into()))
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Sealed> {
        envelope::check_plaintext(plaintext)?;
        let conn = self.current()?;
        let key_id = self.active_key_id()?;
        let handle = self.key(&conn, &key_id)?;
        let nonce = envelope::random_nonce()?;
        let aad = envelope::associated_data(&key_id);
        let sealed = self.with_session(&conn, |s| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, &aad, 128.into())?;
            s.encrypt(&Mechanism::AesGcm(params), handle, plaintext)
        })?;
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
                if let Some(reason) = self.fatal.lock().map_err(|_| poisoned())?.clone() {
                    return Err(Error::Pkcs11(reason));
                }
                {
                    let r = self.reconnect.lock().map_err(|_| poisoned())?;
                    if Instant::now() < r.next_attempt {
                        return Err(Error::Unavailable(format!("reconnect pending: {}", r.last_error)));
                    }
                }
                match self.open_conn() {
                    Ok(conn) if conn.keys.read().is_ok_and(|k| !k.by_version.is_empty()) => {
                        tracing::info!(token = %self.config.token_label, "PKCS#11 token reconnected");
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
