//! `auth: oidc`: bearer JWTs checked with the `jsonwebtoken` crate against the signing keys
//! (JWKS) each issuer publishes, or a local JWKS file. Keys are cached, fetched again when a
//! token names an unknown key id (at most every 30 s) and every 15 minutes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{AuthError, User};
use crate::config::{ConfigError, Settings};

/// Asymmetric algorithms only: a shared-secret (HS*) token could be forged by anyone who has the
/// public key, and `none` is no signature at all.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const ALLOWED_NAMES: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
/// Keys are fetched again this often.
const REFRESH: Duration = Duration::from_secs(15 * 60);
/// An unknown key id fetches the keys again, but not more often than this.
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS is a few KiB; anything much larger is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest user name taken from a token, in characters.
const MAX_USER: usize = 256;

pub(super) struct Oidc {
    issuers: Vec<Issuer>,
    audience: String,
    user_claim: String,
    client_id: String,
    http: reqwest::Client,
}

struct Issuer {
    iss: String,
    source: Source,
    /// Held only to read or swap, never across a fetch.
    cache: RwLock<Cache>,
    /// Held by the one request fetching the keys; a request that has no keys to use waits on it.
    fetching: Mutex<()>,
}

enum Source {
    Url(String),
    File(PathBuf),
}

#[derive(Default)]
struct Cache {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
    /// Why the last fetch failed, while there are no keys at all.
    failed: Option<String>,
}

struct Key {
    kid: Option<String>,
    alg: Option<String>,
    key: DecodingKey,
}

impl Oidc {
    pub(super) fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        if s.oidc_issuers.is_empty() {
            return Err(ConfigError::new(
                "oidc_issuers",
                "`auth: oidc` needs at least one issuer",
            ));
        }
        let audience = s.oidc_audience.clone().ok_or_else(|| {
            ConfigError::new(
                "oidc_audience",
                "`auth: oidc` needs the audience tokens must name",
            )
        })?;
        let sources: Vec<Source> = match &s.oidc_jwks_file {
            Some(file) => s
                .oidc_issuers
                .iter()
                .map(|_| Source::File(file.clone()))
                .collect(),
            None if s.oidc_jwks_urls.len() == s.oidc_issuers.len() => {
                s.oidc_jwks_urls.iter().cloned().map(Source::Url).collect()
            }
            None => {
                return Err(ConfigError::new(
                    "oidc_jwks_urls",
                    "give one JWKS URL per issuer, in the same order (or `oidc_jwks_file`)",
                ))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::new("oidc_jwks_urls", format!("HTTP client: {e}")))?;
        Ok(Self {
            issuers: s
                .oidc_issuers
                .iter()
                .zip(sources)
                .map(|(iss, source)| Issuer {
                    iss: iss.clone(),
                    source,
                    cache: RwLock::default(),
                    fetching: Mutex::new(()),
                })
                .collect(),
            client_id: s.oidc_client_id.clone().unwrap_or_else(|| audience.clone()),
            audience,
            user_claim: s.oidc_user_claim.clone(),
            http,
        })
    }

    /// soliplex's `ConfiguredOIDCAuthSystems`: one system per issuer.
    pub(super) fn systems(&self) -> Value {
        let systems: Map<String, Value> = self
            .issuers
            .iter()
            .enumerate()
            .map(|(i, issuer)| {
                let id = format!("oidc{}", i + 1);
                let system = json!({"id": id, "title": issuer.iss, "server_url": issuer.iss,
                    "client_id": self.client_id, "scope": "openid profile email"});
                (id, system)
            })
            .collect();
        Value::Object(systems)
    }

    pub(super) async fn verify(&self, token: &str) -> Result<User, AuthError> {
        let raw = raw_header(token);
        // RFC 7515 4.1.11: a token whose header marks extensions critical is refused unless
        // they are all understood, and this server understands none.
        if let Some(crit) = raw.as_ref().and_then(|h| h.get("crit")) {
            return Err(AuthError::CriticalHeader(
                crit.to_string().chars().take(80).collect(),
            ));
        }
        // An `alg` the crate does not know (`none`, a made-up name) is named as such; any other
        // header it cannot read is malformed.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match header_alg(raw) {
            Some(alg) if alg.parse::<Algorithm>().is_err() => {
                AuthError::Algorithm(alg, ALLOWED_NAMES)
            }
            _ => AuthError::Malformed(e.to_string()),
        })?;
        if !ALLOWED.contains(&header.alg) {
            return Err(AuthError::Algorithm(
                format!("{:?}", header.alg),
                ALLOWED_NAMES,
            ));
        }
        // The issuer is read before the signature is checked only to pick its keys; the check
        // below verifies it again.
        let iss = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.iss == iss)
            .ok_or(AuthError::Issuer)?;
        let alg = format!("{:?}", header.alg);
        let kid = header.kid.as_deref();
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.iss]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let claims = {
            let keys = issuer.keys(&self.http, kid, &alg).await?;
            let key = find(&keys, kid, &alg).ok_or(AuthError::UnknownKey)?;
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| rejection(e.into_kind()))?
                .claims
        };
        match claims.get(&self.user_claim) {
            Some(Value::String(name)) if !name.is_empty() && name.chars().count() <= MAX_USER => {
                // Two issuers may each have an "alice": with more than one, the name is qualified
                // by its issuer so that they do not share threads.
                Ok(match self.issuers.len() {
                    1 => User::new(name),
                    _ => User::new(&format!("{name}@{}", issuer.iss)),
                })
            }
            _ => Err(AuthError::NoUser(self.user_claim.clone())),
        }
    }
}

/// A token's header as JSON, read without the JWT crate (which keeps only the fields it knows).
fn raw_header(token: &str) -> Option<Map<String, Value>> {
    let segment = token.split('.').next()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// The `alg` of a header that the JWT crate would not read (`none`, an unknown name).
fn header_alg(header: Option<Map<String, Value>>) -> Option<String> {
    header?
        .get("alg")?
        .as_str()
        .map(|alg| alg.chars().take(20).collect())
}

fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let malformed = |what: &str| AuthError::Malformed(what.to_owned());
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("no payload"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| malformed("the payload is not base64url"))?;
    let claims: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the payload is not JSON"))?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        _ => Err(AuthError::MissingClaim("iss".into())),
    }
}

fn rejection(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::Algorithm("(not the key's)".into(), ALLOWED_NAMES)
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

/// The key for `kid` (any single key when the token names none) that may sign with `alg`.
fn find<'k>(keys: &'k [Key], kid: Option<&str>, alg: &str) -> Option<&'k Key> {
    let fits = |k: &&Key| k.alg.as_deref().is_none_or(|a| a == alg);
    match kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid)),
        None => match keys.iter().filter(fits).collect::<Vec<_>>()[..] {
            [only] => Some(only),
            _ => None,
        },
    }
}

impl Cache {
    fn due(&self, missing: bool) -> bool {
        match self.fetched {
            None => true,
            Some(at) if missing => at.elapsed() >= UNKNOWN_KID_REFRESH,
            Some(at) => at.elapsed() >= REFRESH,
        }
    }
}

impl Issuer {
    /// The cached keys, fetched again when they are old or lack the token's key. One request
    /// fetches; the others go on with the keys there are (or, with none yet, wait for it), so a
    /// slow or unreachable key server holds up no check that has keys. A failed fetch keeps the
    /// keys there were; with none at all the token cannot be checked.
    async fn keys(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        alg: &str,
    ) -> Result<Arc<Vec<Key>>, AuthError> {
        if let Some(keys) = self.usable(kid, alg)? {
            return Ok(keys);
        }
        let _fetcher = self.fetching.lock().await;
        // Another request may have fetched them while this one waited.
        if let Some(keys) = self.usable(kid, alg)? {
            return Ok(keys);
        }
        self.cache().fetched = Some(Instant::now());
        let loaded = self.load(http).await;
        let mut cache = self.cache();
        match loaded {
            Ok(keys) => {
                cache.keys = Arc::new(keys);
                cache.failed = None;
            }
            Err(e) if cache.keys.is_empty() => {
                tracing::warn!(issuer = %self.iss, "cannot load the issuer's keys: {e}");
                cache.failed = Some(e.clone());
                return Err(AuthError::KeysUnavailable(e));
            }
            Err(e) => {
                tracing::warn!(issuer = %self.iss, "cannot refresh the issuer's keys, keeping the old ones: {e}")
            }
        }
        Ok(cache.keys.clone())
    }

    /// The keys when none need fetching: `None` when they are due (or there are none yet), an
    /// error while the last fetch failed and left none.
    fn usable(&self, kid: Option<&str>, alg: &str) -> Result<Option<Arc<Vec<Key>>>, AuthError> {
        let cache = self.cache();
        if cache.due(find(&cache.keys, kid, alg).is_none()) {
            return Ok(None);
        }
        match (&cache.failed, cache.keys.is_empty()) {
            (Some(e), true) => Err(AuthError::KeysUnavailable(e.clone())),
            (None, true) => Ok(None),
            _ => Ok(Some(cache.keys.clone())),
        }
    }

    fn cache(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        // Nothing in the cache can be left half-written by a panic: a poisoned lock is still usable.
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn load(&self, http: &reqwest::Client) -> Result<Vec<Key>, String> {
        let bytes = match &self.source {
            Source::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Source::Url(url) => {
                let response = http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| format!("JWKS fetch: {e}"))?;
                if response
                    .content_length()
                    .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
                {
                    return Err("the JWKS is too large".into());
                }
                response
                    .bytes()
                    .await
                    .map_err(|e| format!("JWKS fetch: {e}"))?
                    .to_vec()
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("the JWKS is too large".into());
        }
        parse_jwks(&bytes)
    }
}

/// The signing keys of a JWKS; keys of unknown types or meant for encryption are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let set: Value = serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let Some(Value::Array(keys)) = set.get("keys") else {
        return Err("JWKS has no `keys` list".into());
    };
    let keys: Vec<Key> = keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("JWKS has no usable signing key".into());
    }
    Ok(keys)
}
