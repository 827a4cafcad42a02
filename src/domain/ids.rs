use serde::{Deserialize, Serialize};
use std::fmt;

/// A tenant (organization) id as the platform issues it: 1 to 64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<TenantId, String> {
        if raw.is_empty() {
            return Err("tenant id must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!(
                "tenant id must be at most {} characters, got {}",
                Self::MAX_LEN,
                raw.len()
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("tenant id may only contain visible ASCII characters (no spaces)".into());
        }
        Ok(TenantId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's subdomain: lowercase letters, digits and inner hyphens, 1 to 63 characters (a DNS label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subdomain(String);

impl Subdomain {
    pub fn parse(raw: &str) -> Result<Subdomain, String> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if raw.is_empty()
            || raw.len() > 63
            || !ok_chars
            || raw.starts_with('-')
            || raw.ends_with('-')
        {
            return Err(format!(
                "subdomain {raw:?} must be 1 to 63 lowercase letters, digits or inner hyphens"
            ));
        }
        Ok(Subdomain(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_bounded_and_visible() {
        assert!(TenantId::parse("3f1c2a9e-0000-4000-8000-000000000001").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
        assert!(TenantId::parse(&"a".repeat(64)).is_ok());
        assert!(TenantId::parse("has space").is_err());
    }

    #[test]
    fn subdomains_are_dns_labels() {
        assert!(Subdomain::parse("acme-funeral").is_ok());
        assert!(Subdomain::parse("Acme").is_err());
        assert!(Subdomain::parse("-acme").is_err());
        assert!(Subdomain::parse("").is_err());
    }
}
