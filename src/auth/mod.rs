//! Sign-in: who is calling. `none` gives every caller one shared owner; `keys` checks a bearer
//! API key against SHA-256 digests; `oidc` checks a JWT against its issuer's published keys.
//! Also the per-user limit of runs in flight.

mod keys;
mod oidc;
mod users;

pub use keys::parse_api_key;
pub use users::{UserRun, UserRuns};

use std::fmt;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{ConfigError, Settings};

/// How callers sign in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port; everything belongs to one shared owner.
    #[default]
    None,
    /// Bearer API keys, stored as SHA-256 digests with a user name each.
    Keys,
    /// Bearer JWTs from OpenID Connect issuers.
    Oidc,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Keys => "keys",
            AuthMode::Oidc => "oidc",
        })
    }
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(AuthMode::None),
            "keys" => Ok(AuthMode::Keys),
            "oidc" => Ok(AuthMode::Oidc),
            other => Err(format!(
                "'{other}' is not a sign-in mode; use 'none', 'keys' or 'oidc'"
            )),
        }
    }
}

/// Who made a request: the owner of the threads and runs it creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(Arc<str>);

impl User {
    /// The one owner of everything when sign-in is off: empty, a name no signed-in user can have
    /// (and what the store's rows held before users existed).
    pub const ANONYMOUS: &'static str = "";

    pub fn anonymous() -> Self {
        Self(Arc::from(Self::ANONYMOUS))
    }

    pub(crate) fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Why a request was not signed in: 401 with `WWW-Authenticate` (503 when the issuer's keys
/// cannot be had).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs a bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error(
        "the Authorization header must be `Bearer <token>` (a printable token of at most 8 KiB)"
    )]
    NotBearer,
    #[error("the API key is not valid")]
    BadKey,
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm '{0}' is not accepted; tokens must be signed with one of {1}")]
    Algorithm(String, &'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer is not one this server accepts")]
    Issuer,
    #[error("the token is not meant for this server (its audience does not match)")]
    Audience,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("no key of the issuer matches the token's key id (kid)")]
    UnknownKey,
    #[error("the token lacks the required `{0}` claim")]
    MissingClaim(String),
    #[error("the token's `{0}` claim does not name a user (a string of 1 to 256 characters)")]
    NoUser(String),
    #[error(
        "the token's header marks extensions critical ({0}) that this server does not understand"
    )]
    CriticalHeader(String),
    /// What failed (a URL or file path) is logged, not answered.
    #[error("the issuer's signing keys cannot be loaded; retry later")]
    KeysUnavailable(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::NotBearer | AuthError::Malformed(_) => "malformed_token",
            AuthError::BadKey => "invalid_api_key",
            AuthError::Algorithm(..) => "unsupported_algorithm",
            AuthError::CriticalHeader(_) => "unsupported_critical_header",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::Issuer => "wrong_issuer",
            AuthError::Audience => "wrong_audience",
            AuthError::Signature => "bad_signature",
            AuthError::UnknownKey => "unknown_key",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::NoUser(_) => "no_user_claim",
            AuthError::KeysUnavailable(_) => "auth_keys_unavailable",
        }
    }

    /// RFC 6750's challenge: no error for a request without credentials, `invalid_token` else.
    pub fn challenge(&self) -> String {
        match self {
            AuthError::Missing => r#"Bearer realm="roomhost""#.to_owned(),
            other => format!(
                r#"Bearer realm="roomhost", error="invalid_token", error_description="{}""#,
                other.code()
            ),
        }
    }
}

/// The configured sign-in, built once at start-up.
pub struct Auth {
    mode: Mode,
}

enum Mode {
    None,
    Keys(keys::Keys),
    Oidc(oidc::Oidc),
}

/// Longest bearer token accepted (JWTs with many claims stay well below).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

impl Auth {
    /// Checks that the chosen mode has what it needs; errors name the missing setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let mode = match settings.auth {
            AuthMode::None => Mode::None,
            AuthMode::Keys => Mode::Keys(keys::Keys::from_settings(settings)?),
            AuthMode::Oidc => Mode::Oidc(oidc::Oidc::from_settings(settings)?),
        };
        Ok(Self { mode })
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.mode, Mode::None)
    }

    /// The caller of a request with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<User, AuthError> {
        match &self.mode {
            Mode::None => Ok(User::anonymous()),
            Mode::Keys(keys) => keys.verify(bearer(headers)?),
            Mode::Oidc(oidc) => oidc.verify(bearer(headers)?).await,
        }
    }

    /// soliplex's `GET /api/login`: the OIDC systems a client can sign in with, by id; `{}` when
    /// sign-in is off (and for API keys, which have no sign-in flow).
    pub fn login_systems(&self) -> Value {
        match &self.mode {
            Mode::Oidc(oidc) => oidc.systems(),
            _ => json!({}),
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::NotBearer);
    }
    Ok(token)
}
