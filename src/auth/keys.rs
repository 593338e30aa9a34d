//! `auth: keys`: bearer API keys, configured as the SHA-256 digest of each key with its user, so
//! the settings never hold a usable key. A presented key is hashed and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, User};
use crate::config::{ConfigError, Settings};

/// Longest user name, in characters.
const MAX_USER: usize = 64;

pub(super) struct Keys {
    entries: Vec<(User, [u8; 32])>,
}

impl Keys {
    pub(super) fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        if settings.api_keys.is_empty() {
            return Err(ConfigError::new(
                "api_keys",
                "`auth: keys` needs at least one `user:<sha256 hex>` entry",
            ));
        }
        let entries = settings
            .api_keys
            .iter()
            .map(|entry| {
                parse_api_key(entry)
                    .map(|(user, digest)| (User::new(&user), digest))
                    .map_err(|message| ConfigError::new("api_keys", message))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Every entry is compared, so the time taken does not tell which (or whether one) matched.
    pub(super) fn verify(&self, token: &str) -> Result<User, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (user, stored) in &self.entries {
            if bool::from(stored.ct_eq(&digest)) && found.is_none() {
                found = Some(user.clone());
            }
        }
        found.ok_or(AuthError::BadKey)
    }
}

/// One `user:<64 hex digits>` entry: the user name and the key's SHA-256 digest.
pub fn parse_api_key(entry: &str) -> Result<(String, [u8; 32]), String> {
    let shape = "entries are `user:<sha256 hex of the key>` (`printf %s KEY | sha256sum`)";
    let (user, hex) = entry
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("an entry has no ':'; {shape}"))?;
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "_.@-".contains(c);
    if user.is_empty() || user.chars().count() > MAX_USER || !user.chars().all(name_ok) {
        return Err(format!(
            "user '{user}': names are 1 to {MAX_USER} characters of A-Z, a-z, 0-9, `_`, `.`, `@` and `-`"
        ));
    }
    let hex = hex.trim();
    let mut digest = [0u8; 32];
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "user '{user}': the digest must be 64 hex digits; {shape}"
        ));
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("user '{user}': the digest is not hex; {shape}"))?;
    }
    Ok((user.to_owned(), digest))
}
