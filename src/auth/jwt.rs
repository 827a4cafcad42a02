//! HS256 JSON Web Tokens: the only algorithm accepted, `exp` required, 60 s of leeway.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Seconds a token may be past `exp` and still be accepted (clock skew between hosts).
pub const EXP_LEEWAY_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    User,
    OrgAdmin,
    Admin,
    SuperAdmin,
    Service,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "member" => Role::Member,
            "user" => Role::User,
            "org_admin" => Role::OrgAdmin,
            "admin" => Role::Admin,
            "super_admin" => Role::SuperAdmin,
            "service" => Role::Service,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::User => "user",
            Role::OrgAdmin => "org_admin",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
            Role::Service => "service",
        }
    }

    /// May read its own tenant's billing.
    pub fn reads_tenant(self) -> bool {
        !matches!(self, Role::Service)
    }

    /// May manage its own tenant's billing (checkout, portal, cancel, reactivate).
    pub fn manages_tenant(self) -> bool {
        matches!(self, Role::OrgAdmin | Role::Admin | Role::SuperAdmin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: String,
    /// Kept as text so that an unknown role is a 403 (valid token, not allowed), not a 401.
    pub role: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Claims {
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT (expected three base64url parts)")]
    Malformed,
    #[error("only HS256 tokens are accepted")]
    Algorithm,
    #[error("the token's signature does not match")]
    Signature,
    #[error(
        "the token's claims are missing or malformed (sub, tenant_id, role and exp are required)"
    )]
    Claims,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not for this service (its aud or iss is not the one configured)")]
    Audience,
}

/// What a token must also carry, when configured (`JWT_AUDIENCE`, `JWT_ISSUER`): a platform token minted
/// for another purpose is then not a billing session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

impl Expected {
    /// Whether a token that named `scope` is for this service: its `aud` includes the expected audience
    /// and its `iss` is the expected issuer, where expected.
    pub fn admits(&self, scope: &Scope) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|aud| scope.audience.contains(aud))
            && self
                .issuer
                .as_ref()
                .is_none_or(|iss| scope.issuer.as_ref() == Some(iss))
    }
}

/// Whom a token was minted for: its `aud` (a string or an array of them; none when absent) and `iss`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub audience: Vec<String>,
    pub issuer: Option<String>,
}

/// As [`verify`], then checks `aud` (a string, or an array holding it) and `iss` where expected.
pub fn verify_for(
    token: &str,
    secret: &[u8],
    now: i64,
    expected: &Expected,
) -> Result<Claims, JwtError> {
    if expected.audience.is_none() && expected.issuer.is_none() {
        return verify(token, secret, now);
    }
    verify_scoped(token, secret, now, expected).map(|(claims, _)| claims)
}

/// As [`verify_for`], and also says whom the token was minted for (a page session keeps it, and is
/// checked against the settings of the moment on every request, as a token is).
pub fn verify_scoped(
    token: &str,
    secret: &[u8],
    now: i64,
    expected: &Expected,
) -> Result<(Claims, Scope), JwtError> {
    let claims = verify(token, secret, now)?;
    // Signature already checked: the payload is the one verified above.
    let raw: serde_json::Value = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Claims)?;
    let scope = Scope {
        audience: match &raw["aud"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        issuer: raw["iss"].as_str().map(str::to_owned),
    };
    if !expected.admits(&scope) {
        return Err(JwtError::Audience);
    }
    Ok((claims, scope))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Verifies a compact JWT against `secret` at unix time `now`.
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    if secret.is_empty() {
        return Err(JwtError::Signature);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(claims_b64.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::Signature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Claims)?;
    if now > claims.exp + EXP_LEEWAY_SECS {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

/// Signs claims as an HS256 JWT (tests, and the demo's own tokens).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    sign_json(
        &serde_json::to_value(claims).expect("claims serialize"),
        secret,
    )
}

/// Signs claims with the `aud` and `iss` this service expects, when configured: a token the `token`
/// command mints must pass [`verify_for`] here.
pub fn sign_for(claims: &Claims, secret: &[u8], expected: &Expected) -> String {
    let mut body = serde_json::to_value(claims).expect("claims serialize");
    if let Some(aud) = &expected.audience {
        body["aud"] = aud.as_str().into();
    }
    if let Some(iss) = &expected.issuer {
        body["iss"] = iss.as_str().into();
    }
    sign_json(&body, secret)
}

fn sign_json(claims: &serde_json::Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{body}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "user-1".into(),
            tenant_id: "t1".into(),
            role: "admin".into(),
            exp,
            email: None,
        }
    }

    #[test]
    fn round_trips() {
        let t = sign(&claims(1000), b"secret");
        assert_eq!(verify(&t, b"secret", 900).unwrap(), claims(1000));
    }

    #[test]
    fn rejects_wrong_secret_expired_and_garbage() {
        let t = sign(&claims(1000), b"secret");
        assert_eq!(verify(&t, b"other", 900), Err(JwtError::Signature));
        assert_eq!(verify(&t, b"", 900), Err(JwtError::Signature));
        assert!(verify(&t, b"secret", 1000 + EXP_LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(&t, b"secret", 1001 + EXP_LEEWAY_SECS),
            Err(JwtError::Expired)
        );
        assert_eq!(verify("a.b", b"secret", 0), Err(JwtError::Malformed));
        assert_eq!(verify("a.b.c.d", b"secret", 0), Err(JwtError::Malformed));
    }

    #[test]
    fn rejects_alg_none_and_other_algorithms() {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(i64::MAX / 2)).unwrap());
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            let token = format!("{header}.{body}.");
            assert_eq!(
                verify(&token, b"secret", 0),
                Err(JwtError::Algorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn tokens_signed_for_the_configured_audience_and_issuer_pass_its_checks() {
        let expected = Expected {
            audience: Some("billing".into()),
            issuer: Some("https://platform.example.com".into()),
        };
        let t = sign_for(&claims(1000), b"secret", &expected);
        assert_eq!(verify_for(&t, b"secret", 900, &expected), Ok(claims(1000)));
        let plain = sign(&claims(1000), b"secret");
        assert_eq!(
            verify_for(&plain, b"secret", 900, &expected),
            Err(JwtError::Audience)
        );
        let (_, scope) = verify_scoped(&t, b"secret", 900, &Expected::default()).unwrap();
        assert_eq!(
            scope,
            Scope {
                audience: vec!["billing".into()],
                issuer: Some("https://platform.example.com".into())
            }
        );
        assert!(expected.admits(&scope));
        assert!(!expected.admits(&Scope::default()));
        assert!(Expected::default().admits(&Scope::default()));
        // Nothing configured: the same token as `sign`.
        assert_eq!(
            sign_for(&claims(1000), b"secret", &Expected::default()),
            plain
        );
    }

    #[test]
    fn requires_exp() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let body = URL_SAFE_NO_PAD.encode(br#"{"sub":"u","tenant_id":"t","role":"admin"}"#);
        let mut mac = HmacSha256::new_from_slice(b"s").unwrap();
        mac.update(format!("{header}.{body}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            verify(&format!("{header}.{body}.{sig}"), b"s", 0),
            Err(JwtError::Claims)
        );
    }
}
