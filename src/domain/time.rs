//! Time helpers: the service stores UTC to the microsecond, as PostgreSQL does.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, truncated to microseconds so that SQLite and PostgreSQL store the same instant.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// RFC 3339 with offset, UTC, as the API prints every timestamp.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Serde helpers for `DateTime<Utc>` fields printed as RFC 3339 `Z` strings.
pub mod serde_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&crate::domain::time::rfc3339(*t)),
                None => s.serialize_none(),
            }
        }
    }
}
