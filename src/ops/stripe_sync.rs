//! `stripe sync`: rebuild our copy of each tenant's Stripe customer, subscriptions and invoices from Stripe,
//! for a tenant whose webhooks were lost or an account that was made in Stripe before this service.
//!
//! Every object goes through `subscriptions::sync`, the path webhooks take, so a sync never moves a row
//! backwards and may run again, or while webhooks arrive. It only reads from Stripe: nothing is billed.

use crate::db::invoices::InvoiceRow;
use crate::db::subscriptions::SubscriptionRow;
use crate::db::{customers, invoices, subscriptions, tenants};
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe::gateway::Listing;
use crate::stripe::{self, HasId, Metadata, StripeError};
use crate::subscriptions::error::SyncError;
use crate::subscriptions::sync;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Why a sync could not run at all (a tenant's own failure is in its report instead).
#[derive(Debug, thiserror::Error)]
pub enum StripeSyncError {
    #[error("no tenant has the id {0:?} (`tenants list` shows them)")]
    UnknownTenant(String),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How many objects of one kind Stripe has for the tenant's customer, and what storing them did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// In Stripe.
    pub found: usize,
    /// Not in our copy before.
    pub created: usize,
    /// In our copy, but different.
    pub updated: usize,
    /// Already as Stripe has it (or our copy holds a newer reading, from a webhook).
    pub unchanged: usize,
    /// Not stored: no tenant of ours owns it.
    pub ignored: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.found += other.found;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.ignored += other.ignored;
    }

    /// Records one stored object, given our row before and after (compared without the reading time).
    fn record<R: PartialEq>(&mut self, before: Option<R>, after: Option<R>) {
        self.found += 1;
        match (before, after) {
            (_, None) => self.ignored += 1,
            (None, Some(_)) => self.created += 1,
            (Some(b), Some(a)) if b == a => self.unchanged += 1,
            (Some(_), Some(_)) => self.updated += 1,
        }
    }
}

/// Where the tenant's customer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    /// We already had the link.
    Linked,
    /// Found in Stripe by `metadata.tenant_id` and linked by this sync.
    Found,
    /// Stripe has no customer for the tenant.
    None,
}

/// What the sync found and did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSync {
    pub tenant_id: String,
    pub is_demo: bool,
    pub customer: Option<String>,
    pub customer_source: CustomerSource,
    /// Other Stripe customers whose `metadata.tenant_id` names the tenant, left unlinked (an operator
    /// decides what becomes of them; their subscriptions are not in our copy).
    pub other_customers: Vec<String>,
    pub subscriptions: Counts,
    pub invoices: Counts,
    /// Why this tenant's sync stopped; what was stored before stays (a re-run finishes it).
    pub error: Option<String>,
}

impl TenantSync {
    fn new(tenant: &tenants::Tenant) -> TenantSync {
        TenantSync {
            tenant_id: tenant.id.clone(),
            is_demo: tenant.is_demo,
            customer: None,
            customer_source: CustomerSource::None,
            other_customers: Vec::new(),
            subscriptions: Counts::default(),
            invoices: Counts::default(),
            error: None,
        }
    }

    /// Whether this sync wrote anything for the tenant.
    pub fn changed(&self) -> bool {
        self.customer_source == CustomerSource::Found
            || self.subscriptions.created + self.subscriptions.updated > 0
            || self.invoices.created + self.invoices.updated > 0
    }
}

/// The sync's report, one entry per tenant in the order of `tenants list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub tenants: Vec<TenantSync>,
}

impl SyncReport {
    pub fn failed(&self) -> impl Iterator<Item = &TenantSync> {
        self.tenants.iter().filter(|t| t.error.is_some())
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantSync> {
        self.tenants.iter().find(|t| t.tenant_id == id)
    }

    pub fn changed(&self) -> bool {
        self.tenants.iter().any(TenantSync::changed)
    }

    /// A table for the terminal: one row per tenant, then notes and totals.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<38} {:<4} {:<34} {:<18} INVOICES",
            "TENANT", "DEMO", "CUSTOMER", "SUBSCRIPTIONS"
        );
        let (mut subs, mut invs, mut linked) = (Counts::default(), Counts::default(), 0);
        for t in &self.tenants {
            let customer = match (&t.customer, t.customer_source) {
                (Some(c), CustomerSource::Found) => format!("{c} (linked now)"),
                (Some(c), _) => c.clone(),
                (None, _) => "none in Stripe".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<38} {:<4} {:<34} {:<18} {}",
                t.tenant_id,
                if t.is_demo { "yes" } else { "no" },
                customer,
                counts_cell(&t.subscriptions),
                counts_cell(&t.invoices),
            );
            subs.add(t.subscriptions);
            invs.add(t.invoices);
            linked += usize::from(t.customer_source == CustomerSource::Found);
        }
        let mut notes = String::new();
        for t in &self.tenants {
            if !t.other_customers.is_empty() {
                let _ = writeln!(
                    notes,
                    "{}: other Stripe customers carry this tenant_id and were not linked: {}",
                    t.tenant_id,
                    t.other_customers.join(", ")
                );
            }
            let ignored = t.subscriptions.ignored + t.invoices.ignored;
            if ignored > 0 {
                let _ = writeln!(
                    notes,
                    "{}: {ignored} object(s) not stored (their customer belongs to no tenant of ours)",
                    t.tenant_id
                );
            }
            if let Some(e) = &t.error {
                let _ = writeln!(notes, "{}: FAILED: {e}", t.tenant_id);
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes);
        }
        let failed = self.failed().count();
        let _ = writeln!(
            out,
            "\n(subscriptions, invoices: found in Stripe/new in our copy/updated)\n\
             {} tenant(s): {linked} customer(s) linked; subscriptions {} found, {} new, {} updated; \
             invoices {} found, {} new, {} updated; {failed} failed",
            self.tenants.len(),
            subs.found,
            subs.created,
            subs.updated,
            invs.found,
            invs.created,
            invs.updated,
        );
        out
    }
}

fn counts_cell(c: &Counts) -> String {
    format!("{}/{}/{}", c.found, c.created, c.updated)
}

/// Syncs every tenant, or only `tenant` (an unknown one is an error). A tenant that fails is reported and
/// the others go on.
pub async fn run(
    state: &AppState,
    tenant: Option<&TenantId>,
) -> Result<SyncReport, StripeSyncError> {
    if !state.stripe.is_configured() {
        return Err(StripeError::NotConfigured.into());
    }
    let targets = match tenant {
        Some(id) => vec![tenants::get(&state.db, id)
            .await?
            .ok_or_else(|| StripeSyncError::UnknownTenant(id.to_string()))?],
        None => tenants::list(&state.db).await?,
    };
    let mut finder = Finder::default();
    let mut report = SyncReport::default();
    for t in &targets {
        let mut entry = TenantSync::new(t);
        if let Err(e) = sync_tenant(state, &mut finder, t, &mut entry).await {
            tracing::warn!(tenant = %t.id, error = %e, "stripe sync of a tenant failed");
            entry.error = Some(e.to_string());
        }
        report.tenants.push(entry);
    }
    Ok(report)
}

/// A Stripe customer as a candidate for a tenant (`created` orders duplicates).
#[derive(Debug, Clone, Deserialize)]
struct FoundCustomer {
    id: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    deleted: Option<bool>,
}

impl HasId for FoundCustomer {
    fn id(&self) -> &str {
        &self.id
    }
}

impl FoundCustomer {
    fn is_for(&self, tenant: &str) -> bool {
        self.deleted != Some(true)
            && self
                .metadata
                .as_ref()
                .and_then(|m| m.get("tenant_id"))
                .is_some_and(|t| t == tenant)
    }
}

/// Finds customers by `metadata.tenant_id`: Stripe's search, or, where search is unavailable (some
/// accounts and regions), one listing of every customer, read once per sync and kept.
#[derive(Default)]
struct Finder {
    listed: Option<HashMap<String, Vec<FoundCustomer>>>,
}

impl Finder {
    async fn customers_of(
        &mut self,
        state: &AppState,
        tenant: &str,
    ) -> Result<Vec<FoundCustomer>, StripeError> {
        if self.listed.is_none() {
            match search(state, tenant).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    tracing::info!(error = %e, "customer search unavailable; listing customers instead");
                    let mut by_tenant: HashMap<String, Vec<FoundCustomer>> = HashMap::new();
                    for (c, _) in state
                        .stripe
                        .list_timed::<FoundCustomer>(Listing::Customers)
                        .await?
                    {
                        if let Some(t) = c.metadata.as_ref().and_then(|m| m.get("tenant_id")) {
                            by_tenant.entry(t.clone()).or_default().push(c);
                        }
                    }
                    self.listed = Some(by_tenant);
                }
            }
        }
        let listed = self.listed.as_ref().expect("filled above");
        Ok(listed
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|c| c.is_for(tenant))
            .cloned()
            .collect())
    }
}

async fn search(state: &AppState, tenant: &str) -> Result<Vec<FoundCustomer>, StripeError> {
    let found: Vec<FoundCustomer> = state.stripe.search_customers_of_tenant(tenant).await?;
    // Search matches loosely; only an exact tenant_id counts.
    Ok(found.into_iter().filter(|c| c.is_for(tenant)).collect())
}

#[derive(Debug, thiserror::Error)]
enum TenantError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<SyncError> for TenantError {
    fn from(e: SyncError) -> TenantError {
        match e {
            SyncError::Stripe(e) => TenantError::Stripe(e),
            SyncError::Db(e) => TenantError::Db(e),
        }
    }
}

type Subscriptions = Vec<(stripe::Subscription, DateTime<Utc>)>;

async fn subscriptions_of(state: &AppState, customer: &str) -> Result<Subscriptions, StripeError> {
    state
        .stripe
        .list_timed(Listing::SubscriptionsOf(customer))
        .await
}

async fn sync_tenant(
    state: &AppState,
    finder: &mut Finder,
    tenant: &tenants::Tenant,
    entry: &mut TenantSync,
) -> Result<(), TenantError> {
    let (customer, subs) = match customers::customer_of(&state.db, &tenant.id).await? {
        Some(c) => {
            entry.customer_source = CustomerSource::Linked;
            (c, None)
        }
        None => match find_and_link(state, finder, tenant, entry).await? {
            Some((c, subs)) => (c, subs),
            None => return Ok(()),
        },
    };
    entry.customer = Some(customer.clone());

    let subs = match subs {
        Some(s) => s,
        None => subscriptions_of(state, &customer).await?,
    };
    for (sub, read_at) in &subs {
        let before = subscriptions::get(&state.db, &sub.id).await?;
        let after = sync::subscription(state, sub, *read_at).await?;
        entry
            .subscriptions
            .record(before.map(comparable_sub), after.map(comparable_sub));
    }

    let invs = state
        .stripe
        .list_timed::<stripe::Invoice>(Listing::InvoicesOf(&customer))
        .await?;
    for (inv, read_at) in invs {
        // Every line, not only those the list embeds: `sync::invoice` reads the rest.
        let before = invoices::get(&state.db, &inv.id).await?;
        let after = sync::invoice(state, &inv, read_at).await?;
        entry
            .invoices
            .record(before.map(comparable_inv), after.map(comparable_inv));
    }
    Ok(())
}

/// Looks the tenant's customer up in Stripe by metadata and links the best one: the customer with a live
/// subscription (the newest such), else with any subscription, else the oldest. Returns it with its
/// subscriptions, already read.
async fn find_and_link(
    state: &AppState,
    finder: &mut Finder,
    tenant: &tenants::Tenant,
    entry: &mut TenantSync,
) -> Result<Option<(String, Option<Subscriptions>)>, TenantError> {
    let mut candidates = Vec::new();
    for c in finder.customers_of(state, &tenant.id).await? {
        // A customer our links give to another tenant stays that tenant's.
        match customers::tenant_of(&state.db, &c.id).await? {
            Some(other) if other != tenant.id => {
                tracing::warn!(tenant = %tenant.id, customer = %c.id, linked_to = %other,
                    "a customer carrying this tenant_id is linked to another tenant");
                entry.other_customers.push(c.id);
            }
            _ => candidates.push(c),
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut ranked = Vec::with_capacity(candidates.len());
    for c in candidates {
        let subs = subscriptions_of(state, &c.id).await?;
        let newest_live = subs
            .iter()
            .filter(|(s, _)| crate::domain::SubscriptionStatus::parse(&s.status).is_live())
            .map(|(s, _)| s.created)
            .max();
        let newest_any = subs.iter().map(|(s, _)| s.created).max();
        let key = (
            newest_live,
            newest_any,
            std::cmp::Reverse(c.created),
            std::cmp::Reverse(c.id.clone()),
        );
        ranked.push((key, c.id, subs));
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0));
    let mut ranked = ranked.into_iter();
    let (_, best, subs) = ranked.next().expect("at least one candidate");
    entry.other_customers.extend(ranked.map(|(_, id, _)| id));
    // A checkout running now may have linked another customer first: the link that stands wins.
    let linked = customers::link(&state.db, &tenant.id, &best, None).await?;
    if linked == best {
        entry.customer_source = CustomerSource::Found;
        Ok(Some((best, Some(subs))))
    } else {
        entry.customer_source = CustomerSource::Linked;
        entry.other_customers.push(best);
        entry.other_customers.retain(|c| *c != linked);
        Ok(Some((linked, None)))
    }
}

/// A row as compared before and after a store: the reading time alone is no change.
fn comparable_sub(mut row: SubscriptionRow) -> SubscriptionRow {
    row.stripe_updated_at = DateTime::UNIX_EPOCH;
    row
}

fn comparable_inv(mut row: InvoiceRow) -> InvoiceRow {
    row.stripe_updated_at = DateTime::UNIX_EPOCH;
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tell_new_changed_and_same_apart() {
        let mut c = Counts::default();
        c.record(None, Some(1));
        c.record(Some(1), Some(2));
        c.record(Some(2), Some(2));
        c.record::<i32>(None, None);
        assert_eq!(
            c,
            Counts {
                found: 4,
                created: 1,
                updated: 1,
                unchanged: 1,
                ignored: 1
            }
        );
    }

    #[test]
    fn only_live_customers_with_the_exact_tenant_id_match() {
        let c = |tenant: &str, deleted: Option<bool>| FoundCustomer {
            id: "cus_1".into(),
            created: 0,
            metadata: Some(HashMap::from([("tenant_id".to_owned(), tenant.to_owned())])),
            deleted,
        };
        assert!(c("acme", None).is_for("acme"));
        assert!(c("acme", Some(false)).is_for("acme"));
        assert!(!c("acme", Some(true)).is_for("acme"));
        assert!(!c("acme-2", None).is_for("acme"));
        let bare = FoundCustomer {
            id: "cus_2".into(),
            created: 0,
            metadata: None,
            deleted: None,
        };
        assert!(!bare.is_for("acme"));
    }
}
