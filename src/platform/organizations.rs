//! The platform's organizations here: registered with their id, name and subdomain, names kept in step, and
//! a change of the platform's `is_demo` applied once, through the same service as the super admin's demo
//! switch (so Stripe's collection is paused or resumed), and never when the change was ours.
//!
//! "Once": what was last applied is recorded per organization (`platform_tenants`); only a platform value
//! that differs from it is a change. A change being applied is recorded first (`demo_pending`): after a
//! crash it is finished, unless someone switched the tenant here in the meantime (the audit log says), whose
//! switch is then the later one and stands.
//!
//! "As of when it happened": the follower sees a switch seconds later, or hours later when it was stopped
//! or the platform's database unreachable, while the platform goes on writing usage. The switch is applied
//! as of the latest time it can have happened, the later of the previous read of the organizations (which
//! still saw the old value) and the row's `updated_at` on the platform (`onupdate=now()`,
//! backend/app/models/models.py:85, set by the platform's switch, billing.py:330): the demo interval starts
//! or ends then (`subscriptions::demo::set_demo_as_of`), so the usage written in between is billed in the
//! state the platform had.

use super::source::PlatformTenant;
use super::store::{self, Followed};
use crate::auth::{Caller, Claims, Role};
use crate::db::tenants::{self, AddTenantError};
use crate::domain::time::now;
use crate::domain::{Subdomain, TenantId};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// Who the follower is in the audit log.
pub fn caller() -> Caller {
    Caller {
        claims: Claims {
            sub: "platform-follower".into(),
            tenant_id: "platform".into(),
            role: Role::SuperAdmin.as_str().into(),
            exp: i64::MAX,
            email: None,
        },
        role: Role::SuperAdmin,
    }
}

/// The subdomain we give a platform subdomain: itself when we accept it, else a DNS label made from it
/// (lowercase, other characters as hyphens), or from the id when nothing is left.
pub fn accepted_subdomain(platform: &str, tenant_id: &str) -> String {
    if Subdomain::parse(platform).is_ok() {
        return platform.to_owned();
    }
    let mut out = String::with_capacity(platform.len());
    for c in platform.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut label: String = out.trim_matches('-').chars().take(63).collect();
    label = label.trim_end_matches('-').to_owned();
    if label.is_empty() {
        label = format!("org-{}", short_id(tenant_id));
    }
    label
}

/// The first eight letters or digits of an id, lowercase: what tells two organizations' labels apart.
fn short_id(tenant_id: &str) -> String {
    tenant_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The label when `label` is another tenant's already.
pub fn disambiguated(label: &str, tenant_id: &str) -> String {
    let suffix = format!("-{}", short_id(tenant_id));
    let keep = 63 - suffix.len();
    format!(
        "{}{suffix}",
        label
            .chars()
            .take(keep)
            .collect::<String>()
            .trim_end_matches('-')
    )
}

/// How an organization was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Added now, with this subdomain (and a note when it is not the platform's).
    Added {
        subdomain: String,
        note: Option<String>,
    },
    /// Already here.
    Existing,
    /// Could not be added.
    Refused(String),
}

/// The subdomain we would register and why it differs from the platform's, checking which are taken.
pub async fn plan_subdomain(
    state: &AppState,
    t: &PlatformTenant,
) -> Result<(String, Option<String>), sqlx::Error> {
    let mut label = accepted_subdomain(&t.subdomain, &t.id);
    let mut note = (label != t.subdomain).then(|| {
        format!(
            "the platform's subdomain {:?} is not a DNS label (lowercase letters, digits, inner hyphens); \
             registered as {label:?}",
            t.subdomain
        )
    });
    if tenants::subdomain_taken(&state.db, &label, &t.id).await? {
        let other = disambiguated(&label, &t.id);
        note = Some(format!(
            "the subdomain {label:?} is another tenant's here; registered as {other:?}"
        ));
        label = other;
    }
    Ok((label, note))
}

/// Registers the organization if it is not here: demo ones as demo since their creation on the platform.
pub async fn register(state: &AppState, t: &PlatformTenant) -> Result<Registered, sqlx::Error> {
    let id = match TenantId::parse(&t.id) {
        Ok(id) => id,
        Err(e) => {
            return Ok(Registered::Refused(format!(
                "its id cannot be a tenant id: {e}"
            )))
        }
    };
    if tenants::get(&state.db, &id).await?.is_some() {
        return Ok(Registered::Existing);
    }
    let name = if t.name.trim().is_empty() {
        t.subdomain.clone()
    } else {
        t.name.trim().to_owned()
    };
    let (subdomain, note) = plan_subdomain(state, t).await?;
    let added = if t.is_demo {
        tenants::add_demo_since(&state.db, &id, &name, &subdomain, t.created_at).await
    } else {
        tenants::add(&state.db, &id, &name, &subdomain).await
    };
    match added {
        Ok(_) => {
            crate::db::audit::record(
                &state.db,
                &caller().actor(),
                "tenant.add",
                Some(id.as_str()),
                &name,
            )
            .await?;
            tracing::info!(tenant_id = %id, subdomain, is_demo = t.is_demo, "platform organization registered");
            Ok(Registered::Added { subdomain, note })
        }
        // Registered meanwhile by another replica or an import.
        Err(AddTenantError::DuplicateId(_)) => Ok(Registered::Existing),
        Err(AddTenantError::DuplicateSubdomain(s)) => Ok(Registered::Refused(format!(
            "the subdomain {s:?} was taken meanwhile; it is tried again"
        ))),
        Err(AddTenantError::Db(e)) => Err(e),
    }
}

/// Brings the platform's organizations here against what was last applied: registers new ones, renames,
/// applies demo changes. `read_at` is the platform's clock at this read, `last_read` at the previous read
/// after which every change was applied. Returns the platform's ids that are registered here, and whether
/// every organization was followed (one that fails is logged and tried again on the next call).
pub async fn follow(
    state: &AppState,
    platform: &[PlatformTenant],
    read_at: DateTime<Utc>,
    last_read: Option<DateTime<Utc>>,
) -> Result<(HashSet<String>, bool), sqlx::Error> {
    let mut followed = store::followed(&state.db).await?;
    let ours: HashMap<String, tenants::Tenant> = tenants::list(&state.db)
        .await?
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();
    let mut complete = true;
    for t in platform {
        let as_of = switched_at(t, read_at, last_read);
        if let Err(e) = follow_one(state, t, followed.remove(&t.id), ours.get(&t.id), as_of).await {
            tracing::warn!(tenant_id = %t.id, error = %e, "platform organization not followed; tried again");
            complete = false;
        }
    }
    let ids: Vec<&str> = platform.iter().map(|t| t.id.as_str()).collect();
    let known = tenants::existing(&state.db, &ids)
        .await?
        .into_iter()
        .collect();
    Ok((known, complete))
}

/// The latest time a change seen in the read at `read_at` can have happened: after the previous read
/// (`last_read`, which saw the old value), at or before the row's `updated_at` (a later change of another
/// column moves that later still; the switch is then applied from there).
pub fn switched_at(
    t: &PlatformTenant,
    read_at: DateTime<Utc>,
    last_read: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let at = match (last_read, t.updated_at) {
        (Some(l), Some(u)) => l.max(u),
        (Some(l), None) => l,
        (None, Some(u)) => u,
        (None, None) => read_at,
    };
    at.min(read_at)
}

/// The problem to show for a registration, if any.
fn problem_of(registered: &Registered) -> Option<String> {
    match registered {
        Registered::Refused(why) => Some(why.clone()),
        Registered::Added { note, .. } => note.clone(),
        Registered::Existing => None,
    }
}

async fn follow_one(
    state: &AppState,
    t: &PlatformTenant,
    seen: Option<Followed>,
    ours: Option<&tenants::Tenant>,
    as_of: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (Some(mut f), Some(ours)) = (seen.clone(), ours) else {
        // First sight, or refused before (its subdomain was taken): register it, and take the platform's
        // values as what is applied (a tenant already here keeps its own demo status: only later changes
        // on the platform are applied).
        let registered = register(state, t).await?;
        let f = match seen {
            Some(f) => Followed {
                problem: problem_of(&registered),
                ..f
            },
            None => Followed {
                tenant_id: t.id.clone(),
                name: t.name.clone(),
                subdomain: t.subdomain.clone(),
                is_demo: t.is_demo,
                demo_pending: None,
                problem: problem_of(&registered),
            },
        };
        store::save_followed(&state.db, &f).await?;
        return Ok(());
    };
    let id = TenantId::parse(&t.id).map_err(anyhow::Error::msg)?;
    if t.name != f.name {
        let name = t.name.trim();
        if !name.is_empty() && name != ours.name {
            tenants::rename(&state.db, &id, name).await?;
            tracing::info!(tenant_id = %id, "platform organization renamed");
        }
        f.name = t.name.clone();
        store::save_followed(&state.db, &f).await?;
    }
    if let Some((pending, since)) = f.demo_pending {
        // Begun (at `since`) as of a time no later than either.
        finish_pending(
            state,
            &mut f,
            pending,
            since,
            ours.is_demo,
            as_of.min(since),
        )
        .await?;
    }
    if t.is_demo != f.is_demo {
        apply_demo(state, &mut f, t.is_demo, as_of).await?;
    }
    Ok(())
}

/// Applies a change of the platform's `is_demo` as of `as_of`: recorded as pending, applied, recorded as
/// applied.
async fn apply_demo(
    state: &AppState,
    f: &mut Followed,
    is_demo: bool,
    as_of: DateTime<Utc>,
) -> anyhow::Result<()> {
    let at = now();
    f.demo_pending = Some((is_demo, at));
    store::save_followed(&state.db, f).await?;
    crate::subscriptions::demo::set_demo_as_of(state, &caller(), &f.tenant_id, is_demo, as_of)
        .await?;
    let late_s = (at - as_of).num_seconds();
    if late_s > 60 {
        tracing::warn!(tenant_id = %f.tenant_id, is_demo, as_of = %as_of, late_s,
            "platform demo switch seen late; applied as of when it happened");
    } else {
        tracing::info!(tenant_id = %f.tenant_id, is_demo, "platform demo switch applied");
    }
    f.is_demo = is_demo;
    f.demo_pending = None;
    store::save_followed(&state.db, f).await?;
    Ok(())
}

/// A change left pending by a crash: applied again unless someone switched the tenant here since.
async fn finish_pending(
    state: &AppState,
    f: &mut Followed,
    pending: bool,
    since: DateTime<Utc>,
    ours: bool,
    as_of: DateTime<Utc>,
) -> anyhow::Result<()> {
    let theirs_later =
        store::demo_switched_by_others(&state.db, &f.tenant_id, &caller().actor(), since).await?;
    if ours != pending && !theirs_later {
        crate::subscriptions::demo::set_demo_as_of(state, &caller(), &f.tenant_id, pending, as_of)
            .await?;
    }
    f.is_demo = pending;
    f.demo_pending = None;
    store::save_followed(&state.db, f).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_we_accept_stay_and_others_become_labels() {
        let id = "5F0C2B7A-1d3e-4f6a-8b9c-0d1e2f3a4b5c";
        assert_eq!(accepted_subdomain("acme", id), "acme");
        assert_eq!(
            accepted_subdomain("Acme_Funeral Home", id),
            "acme-funeral-home"
        );
        assert_eq!(accepted_subdomain("--x--", id), "x");
        assert_eq!(accepted_subdomain("___", id), "org-5f0c2b7a");
        assert_eq!(accepted_subdomain("", id), "org-5f0c2b7a");
        let long = accepted_subdomain(&"a-".repeat(60), id);
        assert!(
            long.len() <= 63 && Subdomain::parse(&long).is_ok(),
            "{long}"
        );
        for raw in ["Ünïcode Org", "a.b.c", "UPPER", "x".repeat(80).as_str()] {
            let label = accepted_subdomain(raw, id);
            assert!(Subdomain::parse(&label).is_ok(), "{raw:?} -> {label:?}");
        }
    }

    #[test]
    fn a_taken_label_gets_the_ids_start() {
        let id = "5f0c2b7a-1d3e";
        assert_eq!(disambiguated("acme", id), "acme-5f0c2b7a");
        let long = disambiguated(&"a".repeat(63), id);
        assert_eq!(long.len(), 63);
        assert!(Subdomain::parse(&long).is_ok());
    }
}
