//! Users' API keys at rest: sealed with XChaCha20-Poly1305 under a key-encryption key that
//! never enters the database.
//!
//! The key-encryption key is `secrets.key` (`GRADELAB_SECRETS__KEY`, or `GRADELAB_SECRET_KEY`):
//! 32 bytes, base64 or hex. When it is not set, the server generates one on first start into
//! `<data_dir>/secret.key` (mode 0600) and reads it from there afterwards; replicas sharing a
//! PostgreSQL database must share the key (set it in their configuration, or share the data
//! directory). A sealed value is `enc:v1:` + base64(24-byte random nonce ‖ ciphertext ‖ tag),
//! with the owner's user id as associated data, so a sealed key copied to another account does
//! not open. Values without the prefix are keys stored in plain text by earlier versions: they
//! are still read, and sealed at start-up ([`super::user_settings::seal_plaintext_keys`]).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;

/// Prefix of a sealed value.
const PREFIX: &str = "enc:v1:";
/// File name of the generated key inside the data directory.
pub const KEY_FILE: &str = "secret.key";
/// Bytes of the key-encryption key.
const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// Why the key-encryption key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The configured key is not 32 bytes of base64 or hex.
    #[error(
        "secrets.key (GRADELAB_SECRETS__KEY / GRADELAB_SECRET_KEY) must be 32 random bytes in \
         base64 or hex, e.g. the output of `openssl rand -base64 32`"
    )]
    BadConfiguredKey,
    /// The key file exists but does not hold a key.
    #[error("{path} does not hold a 32-byte base64 key; restore it from a backup (stored API keys need it) or remove it to generate a new one")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the key file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// Seals and opens users' API keys. Cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

/// Whether a stored value is sealed (rather than a legacy plain-text key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

impl SecretBox {
    /// The box for these settings: `secrets.key` if set, else the key file in the data
    /// directory, created (mode 0600) when missing. Safe to call from several processes at
    /// once: the file is written under a temporary name and linked into place, so a reader
    /// never sees half a key and the first writer wins.
    pub fn load_or_create(settings: &Settings) -> Result<Self, SecretsError> {
        if let Some(key) = settings
            .secrets
            .key
            .as_ref()
            .filter(|key| !key.expose_secret().trim().is_empty())
        {
            let bytes = decode_key(key.expose_secret()).ok_or(SecretsError::BadConfiguredKey)?;
            return Ok(Self::from_key(&bytes));
        }
        let path = settings.data_dir.join(KEY_FILE);
        match read_key_file(&path)? {
            Some(bytes) => Ok(Self::from_key(&bytes)),
            None => {
                create_key_file(&settings.data_dir, &path)?;
                let bytes =
                    read_key_file(&path)?.ok_or(SecretsError::BadKeyFile { path: path.clone() })?;
                tracing::info!(path = %path.display(), "generated the secret key for stored API keys");
                Ok(Self::from_key(&bytes))
            }
        }
    }

    /// A box around 32 key bytes.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Seals `plaintext` for `user_id`.
    pub fn seal(&self, user_id: i32, plaintext: &str) -> Result<String, SecretsError> {
        let nonce = XNonce::try_generate().map_err(|err| SecretsError::Random(err.to_string()))?;
        let aad = associated_data(user_id);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // Encryption fails only for messages of gigabytes.
            .map_err(|_| SecretsError::Random("the value is too long to encrypt".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", BASE64.encode(out)))
    }

    /// Opens a stored value of `user_id`: a sealed value is decrypted, a legacy plain-text
    /// value is returned as it is. `None` when a sealed value does not open (another server
    /// key, another user's value, or tampering).
    pub fn open(&self, user_id: i32, stored: &str) -> Option<SecretString> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Some(SecretString::from(stored.to_owned()));
        };
        let bytes = BASE64.decode(encoded).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let aad = associated_data(user_id);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

fn associated_data(user_id: i32) -> String {
    format!("gradelab users.settings.llm.apiKey user={user_id}")
}

/// 32 bytes from base64 (standard or URL-safe, padded or not) or 64 hex digits.
fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let text = text.trim();
    let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        [&BASE64, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())?
    };
    bytes.try_into().ok()
}

fn read_key_file(path: &Path) -> Result<Option<[u8; KEY_LEN]>, SecretsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&text)
            .map(Some)
            .ok_or_else(|| SecretsError::BadKeyFile {
                path: path.to_path_buf(),
            }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretsError::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a new random key to `path` unless another process got there first.
fn create_key_file(dir: &Path, path: &Path) -> Result<(), SecretsError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretsError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut key = [0u8; KEY_LEN];
    getrandom_fill(&mut key)?;
    let tmp = dir.join(format!(
        ".{KEY_FILE}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(format!("{}\n", BASE64.encode(key)).as_bytes())?;
        file.sync_all()
    });
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("writing", &tmp)(err));
    }
    // `hard_link` fails if the key exists: a concurrent start-up already wrote it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io("creating", path)(err)),
    }
}

fn getrandom_fill(out: &mut [u8; KEY_LEN]) -> Result<(), SecretsError> {
    let key = chacha20poly1305::Key::try_generate()
        .map_err(|err| SecretsError::Random(err.to_string()))?;
    out.copy_from_slice(&key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        }
    }

    #[test]
    fn sealed_keys_open_only_for_their_user_and_plain_text_passes_through() {
        let secrets = SecretBox::from_key(&[7; KEY_LEN]);
        let sealed = secrets.seal(3, "sk-live-abc").unwrap_or_default();
        assert!(
            is_sealed(&sealed) && !sealed.contains("sk-live"),
            "{sealed}"
        );
        assert_ne!(sealed, secrets.seal(3, "sk-live-abc").unwrap_or_default());
        let open = |user, value: &str| {
            secrets
                .open(user, value)
                .map(|s| s.expose_secret().to_owned())
        };
        assert_eq!(open(3, &sealed).as_deref(), Some("sk-live-abc"));
        assert_eq!(open(4, &sealed), None, "another user's value does not open");
        assert_eq!(
            SecretBox::from_key(&[8; KEY_LEN])
                .open(3, &sealed)
                .map(|s| s.expose_secret().to_owned()),
            None,
            "another server key does not open it"
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(3, &String::from_utf8_lossy(&tampered)), None);
        assert_eq!(open(3, "sk-legacy").as_deref(), Some("sk-legacy"));
        assert_eq!(open(3, "enc:v1:!!"), None);
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let settings = settings(dir.path());
        let first = SecretBox::load_or_create(&settings).unwrap_or_else(|err| panic!("{err}"));
        let path = dir.path().join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        let sealed = first.seal(1, "sk-x").unwrap_or_default();
        let again = SecretBox::load_or_create(&settings).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            again.open(1, &sealed).is_some(),
            "the same key is read back"
        );
        let leftovers = std::fs::read_dir(dir.path()).map(|d| d.count()).ok();
        assert_eq!(leftovers, Some(1), "no temporary file is left");
    }

    #[test]
    fn a_configured_key_wins_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let mut settings = settings(dir.path());
        settings.secrets.key = Some(SecretString::from(BASE64.encode([9u8; KEY_LEN])));
        let configured = SecretBox::load_or_create(&settings).unwrap_or_else(|err| panic!("{err}"));
        let sealed = configured.seal(1, "sk-x").unwrap_or_default();
        assert!(SecretBox::from_key(&[9; KEY_LEN])
            .open(1, &sealed)
            .is_some());
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "no file when configured"
        );
        settings.secrets.key = Some(SecretString::from(hex::encode([9u8; KEY_LEN])));
        assert!(SecretBox::load_or_create(&settings).is_ok());
        settings.secrets.key = Some(SecretString::from("too short".to_owned()));
        assert!(matches!(
            SecretBox::load_or_create(&settings),
            Err(SecretsError::BadConfiguredKey)
        ));
        std::fs::write(dir.path().join(KEY_FILE), "garbage").unwrap_or_default();
        settings.secrets.key = None;
        assert!(matches!(
            SecretBox::load_or_create(&settings),
            Err(SecretsError::BadKeyFile { .. })
        ));
    }
}
