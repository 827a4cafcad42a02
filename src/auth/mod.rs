//! Authentication: the platform's HS256 JWTs (`jwt`) and who a verified token says is calling
//! ([`Caller`]). The HTTP extractors that check them per request are in `http::auth`.

pub mod jwt;

pub use jwt::{Claims, Role};

/// Any caller with a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    pub role: Role,
}

impl Caller {
    /// A short label for logs and the audit trail (never the token).
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.claims.sub)
    }
}
