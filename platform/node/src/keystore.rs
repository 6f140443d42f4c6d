//! Keys encrypted at rest: one JSON file per key, the secret sealed with
//! XChaCha20-Poly1305 under a key stretched from the password by argon2id.
//! The address is stored in the clear (so keys can be listed without a
//! password) and bound to the ciphertext as associated data, so a file
//! whose address was edited does not open. No secret is ever logged or put
//! in an error message; a wrong password and a tampered file are the same
//! error.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::hex::{decode as unhex_result, encode as hex};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// argon2id cost: 64 MiB, 3 passes (OWASP's recommended minimum is 19 MiB, 2).
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
const FORMAT_VERSION: u32 = 1;
/// The most a key file may ask of argon2id: 1 GiB, 16 passes, 8 lanes.
const MAX_M_COST_KIB: u32 = 1 << 20;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no key named {0:?} in the keystore (ios key list shows them)")]
    NotFound(String),
    #[error("a key named {0:?} already exists")]
    Exists(String),
    #[error("key names are 1-64 letters, digits, '-' or '_'; {0:?} is not")]
    BadName(String),
    #[error("wrong password for key {0:?} (or its file was altered)")]
    WrongPassword(String),
    #[error("key file {path} is not a keystore file: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("the password is empty")]
    EmptyPassword,
    #[error("keystore {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

type Result<T> = std::result::Result<T, KeystoreError>;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    name: String,
    address: String,
    kdf: Kdf,
    /// Hex nonce (24 bytes) and ciphertext of the 32-byte secret.
    nonce: String,
    ciphertext: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

/// A stored key as listed (no secret).
#[derive(Clone, Debug)]
pub struct KeyInfo {
    pub name: String,
    pub address: Address,
    pub path: PathBuf,
}

/// Fills `buf` from the operating system's random number generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| KeystoreError::Random(e.to_string()))
}

/// A fresh signing key from the OS random number generator.
pub fn generate() -> Result<Keypair> {
    let mut secret = [0u8; 32];
    random_bytes(&mut secret)?;
    Ok(Keypair::from_secret(secret))
}

pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    /// `$IOS_HOME/keys`, else `~/.ios/keys`.
    pub fn default_dir() -> PathBuf {
        if let Some(h) = std::env::var_os("IOS_HOME") {
            return PathBuf::from(h).join("keys");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".ios").join("keys")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(KeystoreError::BadName(name.into()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> KeystoreError + '_ {
        let p = path.display().to_string();
        move |source| KeystoreError::Io {
            path: p.clone(),
            source,
        }
    }

    /// Seals `key` under `password` as `name`; refuses to overwrite.
    pub fn add(&self, name: &str, key: &Keypair, password: &str) -> Result<KeyInfo> {
        if password.is_empty() {
            return Err(KeystoreError::EmptyPassword);
        }
        let path = self.path(name)?;
        if path.exists() {
            return Err(KeystoreError::Exists(name.into()));
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        random_bytes(&mut salt)?;
        random_bytes(&mut nonce)?;
        let kdf = Kdf {
            algorithm: "argon2id".into(),
            m_cost_kib: M_COST_KIB,
            t_cost: T_COST,
            p_cost: P_COST,
            salt: hex(&salt),
        };
        let address = key.address();
        let cipher = XChaCha20Poly1305::new(&stretch(password, &kdf, &salt)?.into());
        let secret = key.secret_bytes();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secret,
                    aad: &address.0,
                },
            )
            .map_err(|_| KeystoreError::Random("encryption failed".into()))?;
        let file = KeyFile {
            version: FORMAT_VERSION,
            name: name.into(),
            address: address.to_string(),
            kdf,
            nonce: hex(&nonce),
            ciphertext: hex(&ciphertext),
        };
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        // Written whole under a temporary name of its own, then linked to
        // its name: a crash leaves no half key, and of two `ios key new`
        // racing for one name, the second is refused (a link never
        // replaces a file), not silently overwriting the first.
        let mut tag = [0u8; 8];
        random_bytes(&mut tag)?;
        let tmp = self.dir.join(format!(".{name}.{}.tmp", hex(&tag)));
        crate::node::write_private(&tmp, &json).map_err(|e| KeystoreError::Io {
            path: tmp.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeystoreError::Exists(name.into()))
            }
            other => other.map_err(self.io(&path))?,
        }
        Ok(KeyInfo {
            name: name.into(),
            address,
            path,
        })
    }

    fn read(&self, name: &str) -> Result<(KeyFile, PathBuf)> {
        let path = self.path(name)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound(name.into()))
            }
            Err(e) => return Err(self.io(&path)(e)),
        };
        let corrupt = |reason: String| KeystoreError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.version != FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {}", file.version)));
        }
        Ok((file, path))
    }

    /// The stored key's address and file (no password needed).
    pub fn info(&self, name: &str) -> Result<KeyInfo> {
        let (file, path) = self.read(name)?;
        let address = file.address.parse().map_err(|e| KeystoreError::Corrupt {
            path: path.display().to_string(),
            reason: format!("address: {e}"),
        })?;
        Ok(KeyInfo {
            name: file.name,
            address,
            path,
        })
    }

    /// Opens key `name` with `password`.
    pub fn open(&self, name: &str, password: &str) -> Result<Keypair> {
        let (file, path) = self.read(name)?;
        let corrupt = |reason: &str| KeystoreError::Corrupt {
            path: path.display().to_string(),
            reason: reason.into(),
        };
        if file.kdf.algorithm != "argon2id" {
            return Err(corrupt("unknown key derivation"));
        }
        let address: Address = file.address.parse().map_err(|_| corrupt("bad address"))?;
        let salt = unhex(&file.kdf.salt).ok_or_else(|| corrupt("bad salt"))?;
        let nonce = unhex(&file.nonce)
            .filter(|n| n.len() == 24)
            .ok_or_else(|| corrupt("bad nonce"))?;
        let ciphertext = unhex(&file.ciphertext).ok_or_else(|| corrupt("bad ciphertext"))?;
        let stretched = stretch(password, &file.kdf, &salt).map_err(|e| match e {
            KeystoreError::Corrupt { reason, .. } => corrupt(&reason),
            e => e,
        })?;
        let cipher = XChaCha20Poly1305::new(&stretched.into());
        let secret = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &address.0,
                },
            )
            .map_err(|_| KeystoreError::WrongPassword(name.into()))?;
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| corrupt("the secret is not 32 bytes"))?;
        let key = Keypair::from_secret(secret);
        if key.address() != address {
            return Err(KeystoreError::WrongPassword(name.into()));
        }
        Ok(key)
    }

    /// Every key in the keystore, by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io(&self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| !n.starts_with('.'))
            else {
                continue;
            };
            out.push(self.info(name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Hex bytes, or None.
fn unhex(s: &str) -> Option<Vec<u8>> {
    unhex_result(s).ok()
}

fn stretch(password: &str, kdf: &Kdf, salt: &[u8]) -> Result<[u8; 32]> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let bad = |e: argon2::Error| KeystoreError::Corrupt {
        path: String::new(),
        reason: format!("key derivation parameters: {e}"),
    };
    // A key file names its own costs; bound them so that a tampered file
    // cannot make opening it take gigabytes or hours.
    if kdf.m_cost_kib > MAX_M_COST_KIB || kdf.t_cost > MAX_T_COST || kdf.p_cost > MAX_P_COST {
        return Err(KeystoreError::Corrupt {
            path: String::new(),
            reason: format!(
                "key derivation costs m={} KiB t={} p={} are over this build's limits ({MAX_M_COST_KIB} KiB, {MAX_T_COST}, {MAX_P_COST})",
                kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
            ),
        });
    }
    let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32)).map_err(bad)?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_only_its_password_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path().join("keys"));
        let key = generate().unwrap();
        let info = ks.add("alice", &key, "correct horse").unwrap();
        assert_eq!(info.address, key.address());
        assert_eq!(
            ks.open("alice", "correct horse").unwrap().address(),
            key.address()
        );
        assert!(matches!(
            ks.open("alice", "wrong"),
            Err(KeystoreError::WrongPassword(_))
        ));
        assert!(matches!(
            ks.add("alice", &key, "x"),
            Err(KeystoreError::Exists(_))
        ));
        assert!(matches!(
            ks.open("bob", "x"),
            Err(KeystoreError::NotFound(_))
        ));
        assert!(matches!(
            ks.add("../evil", &key, "x"),
            Err(KeystoreError::BadName(_))
        ));
        assert!(matches!(
            ks.add("empty", &key, ""),
            Err(KeystoreError::EmptyPassword)
        ));
        let listed = ks.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "alice");

        // The secret is not in the file, and the file is private.
        let text = std::fs::read_to_string(&info.path).unwrap();
        assert!(!text.contains(&hex(&key.secret_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&info.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }

    #[test]
    fn an_edited_address_or_ciphertext_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let key = generate().unwrap();
        let info = ks.add("k", &key, "pw").unwrap();
        let original = std::fs::read_to_string(&info.path).unwrap();
        let other = generate().unwrap().address().to_string();
        let edited = original.replace(&key.address().to_string(), &other);
        std::fs::write(&info.path, edited).unwrap();
        assert!(matches!(
            ks.open("k", "pw"),
            Err(KeystoreError::WrongPassword(_))
        ));

        let mut file: KeyFile = serde_json::from_str(&original).unwrap();
        let mut ct = unhex(&file.ciphertext).unwrap();
        ct[0] ^= 1;
        file.ciphertext = hex(&ct);
        std::fs::write(&info.path, serde_json::to_vec(&file).unwrap()).unwrap();
        assert!(matches!(
            ks.open("k", "pw"),
            Err(KeystoreError::WrongPassword(_))
        ));

        std::fs::write(&info.path, b"not json").unwrap();
        let err = ks.open("k", "pw").unwrap_err();
        assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_file_asking_absurd_costs_is_refused_before_stretching() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let info = ks.add("k", &generate().unwrap(), "pw").unwrap();
        let mut file: KeyFile =
            serde_json::from_slice(&std::fs::read(&info.path).unwrap()).unwrap();
        file.kdf.m_cost_kib = u32::MAX;
        std::fs::write(&info.path, serde_json::to_vec(&file).unwrap()).unwrap();
        let err = ks.open("k", "pw").unwrap_err();
        assert!(
            matches!(&err, KeystoreError::Corrupt { path, reason }
                if path.ends_with("k.json") && reason.contains("over this build's limits")),
            "{err}"
        );
    }

    #[test]
    fn of_two_racing_adds_of_one_name_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let (a, b) = (generate().unwrap(), generate().unwrap());
        let results = std::thread::scope(|s| {
            let ta = s.spawn(|| ks.add("same", &a, "pw").map(|i| i.address));
            let tb = s.spawn(|| ks.add("same", &b, "pw").map(|i| i.address));
            [ta.join().unwrap(), tb.join().unwrap()]
        });
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(KeystoreError::Exists(_)))));
        assert_eq!(ks.open("same", "pw").unwrap().address(), *won[0]);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files are left behind");
    }
}
