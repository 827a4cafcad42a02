//! `platform import --from URL [--apply] [--usage-since DATE]`: moving a deployment over.
//!
//! Reads the platform's `tenants` and `stripe_customers` and what Stripe holds (every customer, every
//! subscription that has not ended), then, per organization: registers it (demo ones as demo since their
//! creation), links it to its Stripe customer (setting `metadata.tenant_id` on the customer when it has
//! none, under an idempotency key naming the customer and the tenant), and runs `stripe sync` for it, so
//! subscriptions and invoices come from Stripe itself. Usage is then followed from `--usage-since` (by
//! default the first day of the current period), so months the platform already billed are not billed
//! again. Without `--apply` nothing is written anywhere: the report says what would be done and every
//! conflict. Each step is idempotent, so the import may be repeated, or stopped and run again.

use super::follow::{Follower, Options};
use super::organizations::{self, Registered};
use super::source::{PlatformCustomer, PlatformTenant, Source};
use super::store;
use crate::db::customers;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe::gateway::Listing;
use crate::stripe::{self, StripeError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// Something an operator must decide; the import does what it safely can around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The tenant has several Stripe customers (rows of the platform's `stripe_customers`, or customers
    /// whose `metadata.tenant_id` names it): `linked` is linked, the others are left alone.
    TwoCustomers {
        tenant_id: String,
        linked: Option<String>,
        others: Vec<String>,
    },
    /// The platform names a customer that Stripe does not have (deleted, or of another account).
    CustomerMissing { tenant_id: String, customer: String },
    /// A subscription still standing whose customer belongs to no organization of the platform.
    LiveSubscriptionWithoutTenant {
        subscription: String,
        customer: String,
        status: String,
    },
    /// A subdomain we cannot accept as it is, and the one the organization gets.
    Subdomain {
        tenant_id: String,
        platform: String,
        ours: String,
        why: String,
    },
    /// The customer's `metadata.tenant_id` names another tenant: it is not linked.
    CustomerOfAnotherTenant {
        tenant_id: String,
        customer: String,
        metadata_tenant: String,
    },
    /// The tenant is linked here to another customer already; that link stays.
    LinkedElsewhere {
        tenant_id: String,
        ours: String,
        platform: String,
    },
    /// The organization could not be registered.
    NotRegistered { tenant_id: String, why: String },
}

impl Conflict {
    pub fn sentence(&self) -> String {
        match self {
            Conflict::TwoCustomers { tenant_id, linked, others } => format!(
                "tenant {tenant_id} has several Stripe customers: {} linked, {} left alone (merge or delete them in Stripe)",
                linked.as_deref().unwrap_or("none"),
                others.join(", ")
            ),
            Conflict::CustomerMissing { tenant_id, customer } => format!(
                "tenant {tenant_id}: its customer {customer} is not in Stripe (deleted, or another account's); not linked"
            ),
            Conflict::LiveSubscriptionWithoutTenant { subscription, customer, status } => format!(
                "subscription {subscription} ({status}) of customer {customer} belongs to no organization of the platform; \
                 set the customer's metadata.tenant_id and run `stripe sync`, or cancel it in Stripe"
            ),
            Conflict::Subdomain { tenant_id, platform, ours, why } => format!(
                "tenant {tenant_id}: subdomain {platform:?} is registered as {ours:?} ({why})"
            ),
            Conflict::CustomerOfAnotherTenant { tenant_id, customer, metadata_tenant } => format!(
                "tenant {tenant_id}: customer {customer} carries metadata.tenant_id {metadata_tenant}; not linked"
            ),
            Conflict::LinkedElsewhere { tenant_id, ours, platform } => format!(
                "tenant {tenant_id} is linked here to {ours}, the platform names {platform}; the link here stays"
            ),
            Conflict::NotRegistered { tenant_id, why } => {
                format!("tenant {tenant_id} could not be registered: {why}")
            }
        }
    }

    /// The conflict's kind, as tests and scripts match it.
    pub fn kind(&self) -> &'static str {
        match self {
            Conflict::TwoCustomers { .. } => "two_customers",
            Conflict::CustomerMissing { .. } => "customer_missing",
            Conflict::LiveSubscriptionWithoutTenant { .. } => "live_subscription_without_tenant",
            Conflict::Subdomain { .. } => "subdomain",
            Conflict::CustomerOfAnotherTenant { .. } => "customer_of_another_tenant",
            Conflict::LinkedElsewhere { .. } => "linked_elsewhere",
            Conflict::NotRegistered { .. } => "not_registered",
        }
    }
}

/// What the import does (or would do) for one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPlan {
    pub tenant_id: String,
    pub name: String,
    pub subdomain: String,
    pub is_demo: bool,
    /// Already registered here.
    pub exists: bool,
    /// The customer linked (or to link).
    pub customer: Option<String>,
    /// Whether the customer lacks `metadata.tenant_id` (set by the import).
    pub set_metadata: bool,
    /// After `--apply`: what `stripe sync` found (subscriptions, invoices), or why it failed.
    pub synced: Option<Result<(usize, usize), String>>,
}

/// The usage part: what would be or was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagePart {
    /// Rows of `usage_records` from the cut-over on, by type.
    pub rows_by_type: BTreeMap<String, i64>,
    /// After `--apply`: the follower's counters, or why the usage was not taken.
    pub applied: Option<Result<(i64, i64), String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub applied: bool,
    pub usage_since: DateTime<Utc>,
    pub organizations: Vec<OrgPlan>,
    pub conflicts: Vec<Conflict>,
    pub usage: UsagePart,
}

impl ImportReport {
    pub fn conflicts_of(&self, kind: &str) -> Vec<&Conflict> {
        self.conflicts.iter().filter(|c| c.kind() == kind).collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let verb = if self.applied {
            "done"
        } else {
            "would do (dry run: nothing changed; add --apply)"
        };
        let _ = writeln!(out, "platform import: what it {verb}\n");
        let _ = writeln!(
            out,
            "{:<38} {:<24} {:<5} {:<10} {:<22} STRIPE SYNC",
            "TENANT", "SUBDOMAIN", "DEMO", "HERE", "CUSTOMER"
        );
        for o in &self.organizations {
            let customer = match (&o.customer, o.set_metadata) {
                (Some(c), true) => format!("{c} (+tenant_id)"),
                (Some(c), false) => c.clone(),
                (None, _) => "none".into(),
            };
            let synced = match &o.synced {
                Some(Ok((s, i))) => format!("{s} subscription(s), {i} invoice(s)"),
                Some(Err(e)) => format!("FAILED: {e}"),
                None if o.customer.is_some() => "to run".into(),
                None => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<38} {:<24} {:<5} {:<10} {:<22} {synced}",
                o.tenant_id,
                o.subdomain,
                if o.is_demo { "yes" } else { "no" },
                if o.exists {
                    "exists"
                } else if self.applied {
                    "added"
                } else {
                    "to add"
                },
                customer
            );
        }
        let rows: i64 = self.usage.rows_by_type.values().sum();
        let _ = writeln!(
            out,
            "\nusage from {}: {rows} row(s) of usage_records",
            crate::domain::time::rfc3339(self.usage_since)
        );
        for (t, n) in &self.usage.rows_by_type {
            let _ = writeln!(out, "  {t}: {n}");
        }
        match &self.usage.applied {
            Some(Ok((ingested, held))) => {
                let _ = writeln!(out, "  taken: {ingested} row(s) ingested, {held} held back (`platform status` says why)");
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "  not taken: {e}");
            }
            None => {}
        }
        if self.conflicts.is_empty() {
            let _ = writeln!(out, "\nno conflicts");
        } else {
            let _ = writeln!(out, "\n{} conflict(s):", self.conflicts.len());
            for c in &self.conflicts {
                let _ = writeln!(out, "  [{}] {}", c.kind(), c.sentence());
            }
        }
        out
    }
}

/// Stripe's side, read once.
struct StripeView {
    customers: HashMap<String, stripe::Customer>,
    live: Vec<stripe::Subscription>,
}

async fn read_stripe(state: &AppState) -> Result<StripeView, StripeError> {
    let customers = state
        .stripe
        .list_timed::<stripe::Customer>(Listing::Customers)
        .await?
        .into_iter()
        .map(|(c, _)| (c.id.clone(), c))
        .filter(|(_, c)| !c.deleted)
        .collect();
    let live = state
        .stripe
        .list_timed::<stripe::Subscription>(Listing::Subscriptions)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| crate::domain::SubscriptionStatus::parse(&s.status).is_live())
        .collect();
    Ok(StripeView { customers, live })
}

/// Whether Stripe has the customer (the listing, else a retrieve: a customer may be newer than the list).
async fn in_stripe(state: &AppState, view: &StripeView, id: &str) -> Result<bool, StripeError> {
    if view.customers.contains_key(id) {
        return Ok(true);
    }
    match state.stripe.customer(id).await {
        Ok(c) => Ok(!c.deleted),
        Err(e) if e.status() == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the import (dry unless `apply`).
pub async fn run(
    state: &AppState,
    source: &Source,
    apply: bool,
    usage_since: DateTime<Utc>,
    lookback: std::time::Duration,
) -> anyhow::Result<ImportReport> {
    if !state.stripe.is_configured() {
        anyhow::bail!("Stripe is not configured: set STRIPE_SECRET_KEY (and STRIPE_API_BASE for the simulator); nothing was imported");
    }
    let (tenants, _) = source.tenants().await?;
    let platform_customers = source.customers().await?;
    let view = read_stripe(state).await?;
    let platform_ids: HashSet<&str> = tenants.iter().map(|t| t.id.as_str()).collect();

    let mut by_tenant: HashMap<&str, Vec<&PlatformCustomer>> = HashMap::new();
    for c in &platform_customers {
        by_tenant.entry(c.tenant_id.as_str()).or_default().push(c);
    }
    let mut conflicts = Vec::new();
    let mut organizations = Vec::new();
    // Customers that belong to an organization of the platform (for the subscriptions' check).
    let mut owned: HashSet<String> = HashSet::new();
    for c in view.customers.values() {
        if c.metadata
            .get("tenant_id")
            .is_some_and(|t| platform_ids.contains(t.as_str()))
        {
            owned.insert(c.id.clone());
        }
    }
    for t in &tenants {
        let exists = match TenantId::parse(&t.id) {
            Ok(id) => crate::db::tenants::get(&state.db, &id).await?.is_some(),
            Err(_) => false,
        };
        let (subdomain, note) = organizations::plan_subdomain(state, t).await?;
        if let Some(why) = note.filter(|_| !exists) {
            conflicts.push(Conflict::Subdomain {
                tenant_id: t.id.clone(),
                platform: t.subdomain.clone(),
                ours: subdomain.clone(),
                why,
            });
        }
        let (customer, set_metadata) = plan_customer(
            state,
            &view,
            t,
            by_tenant.get(t.id.as_str()),
            &mut conflicts,
        )
        .await?;
        for c in by_tenant.get(t.id.as_str()).into_iter().flatten() {
            owned.insert(c.stripe_customer_id.clone());
        }
        organizations.push(OrgPlan {
            tenant_id: t.id.clone(),
            name: t.name.clone(),
            subdomain,
            is_demo: t.is_demo,
            exists,
            customer,
            set_metadata,
            synced: None,
        });
    }
    for s in &view.live {
        let customer = s.customer.id().to_owned();
        let ours = customers::tenant_of(&state.db, &customer).await?.is_some();
        if !owned.contains(&customer) && !ours {
            conflicts.push(Conflict::LiveSubscriptionWithoutTenant {
                subscription: s.id.clone(),
                customer,
                status: s.status.clone(),
            });
        }
    }
    let mut usage = UsagePart {
        rows_by_type: source.usage_by_type(usage_since).await?,
        applied: None,
    };
    if apply {
        for (t, plan) in tenants.iter().zip(organizations.iter_mut()) {
            apply_org(state, t, plan, &mut conflicts).await?;
        }
        usage.applied = Some(take_usage(state, source, usage_since, lookback).await);
    }
    Ok(ImportReport {
        applied: apply,
        usage_since,
        organizations,
        conflicts,
        usage,
    })
}

/// Which customer the tenant is linked to, and whether its `metadata.tenant_id` must be set; conflicts
/// are added as found.
async fn plan_customer(
    state: &AppState,
    view: &StripeView,
    t: &PlatformTenant,
    rows: Option<&Vec<&PlatformCustomer>>,
    conflicts: &mut Vec<Conflict>,
) -> anyhow::Result<(Option<String>, bool)> {
    let mut candidates: Vec<String> = Vec::new();
    for c in rows.into_iter().flatten() {
        if in_stripe(state, view, &c.stripe_customer_id).await? {
            candidates.push(c.stripe_customer_id.clone());
        } else {
            conflicts.push(Conflict::CustomerMissing {
                tenant_id: t.id.clone(),
                customer: c.stripe_customer_id.clone(),
            });
        }
    }
    // Customers in Stripe that name the tenant, oldest first after the platform's own.
    let mut tagged: Vec<&stripe::Customer> = view
        .customers
        .values()
        .filter(|c| c.metadata.get("tenant_id") == Some(&t.id))
        .collect();
    tagged.sort_by(|a, b| a.id.cmp(&b.id));
    for c in tagged {
        if !candidates.contains(&c.id) {
            candidates.push(c.id.clone());
        }
    }
    let linked_here = customers::customer_of(&state.db, &t.id).await?;
    let chosen = match (&linked_here, candidates.first()) {
        (Some(ours), Some(first)) if ours != first && candidates.contains(ours) => {
            Some(ours.clone())
        }
        (Some(ours), Some(first)) if ours != first => {
            conflicts.push(Conflict::LinkedElsewhere {
                tenant_id: t.id.clone(),
                ours: ours.clone(),
                platform: first.clone(),
            });
            Some(ours.clone())
        }
        (Some(ours), _) => Some(ours.clone()),
        (None, first) => first.cloned(),
    };
    if candidates.len() > 1 {
        conflicts.push(Conflict::TwoCustomers {
            tenant_id: t.id.clone(),
            linked: chosen.clone(),
            others: candidates
                .iter()
                .filter(|c| Some(*c) != chosen.as_ref())
                .cloned()
                .collect(),
        });
    }
    let Some(chosen) = chosen else {
        return Ok((None, false));
    };
    let tagged_as = view
        .customers
        .get(&chosen)
        .and_then(|c| c.metadata.get("tenant_id").cloned());
    match tagged_as {
        Some(other) if other != t.id => {
            conflicts.push(Conflict::CustomerOfAnotherTenant {
                tenant_id: t.id.clone(),
                customer: chosen,
                metadata_tenant: other,
            });
            Ok((None, false))
        }
        Some(_) => Ok((Some(chosen), false)),
        None => Ok((Some(chosen), true)),
    }
}

/// Registers, links, tags and syncs one organization.
async fn apply_org(
    state: &AppState,
    t: &PlatformTenant,
    plan: &mut OrgPlan,
    conflicts: &mut Vec<Conflict>,
) -> anyhow::Result<()> {
    match organizations::register(state, t).await? {
        Registered::Refused(why) => {
            conflicts.push(Conflict::NotRegistered {
                tenant_id: t.id.clone(),
                why,
            });
            return Ok(());
        }
        Registered::Added { subdomain, .. } => plan.subdomain = subdomain,
        Registered::Existing => {}
    }
    // What the follower applies from now on starts from the platform's values as imported.
    if !store::followed(&state.db).await?.contains_key(&t.id) {
        store::save_followed(
            &state.db,
            &store::Followed {
                tenant_id: t.id.clone(),
                name: t.name.clone(),
                subdomain: t.subdomain.clone(),
                is_demo: t.is_demo,
                demo_pending: None,
                problem: None,
            },
        )
        .await?;
    }
    let Some(customer) = plan.customer.clone() else {
        return Ok(());
    };
    if plan.set_metadata {
        // Keyed by what it does: the same import repeated sends the same request.
        state
            .stripe
            .set_customer_tenant(&customer, &t.id, &super::links::tag_key(&customer, &t.id))
            .await?;
    }
    customers::link(&state.db, &t.id, &customer, None).await?;
    let id = TenantId::parse(&t.id).map_err(anyhow::Error::msg)?;
    plan.synced = Some(match crate::ops::stripe_sync::run(state, Some(&id)).await {
        Ok(report) => match report.tenant(&t.id) {
            Some(s) if s.error.is_some() => Err(s.error.clone().unwrap_or_default()),
            Some(s) => Ok((s.subscriptions.found, s.invoices.found)),
            None => Ok((0, 0)),
        },
        Err(e) => Err(e.to_string()),
    });
    Ok(())
}

/// Starts the follower at the cut-over (or earlier than where it started) and reads until caught up.
async fn take_usage(
    state: &AppState,
    source: &Source,
    usage_since: DateTime<Utc>,
    lookback: std::time::Duration,
) -> Result<(i64, i64), String> {
    // Up to the platform's clock: an import takes what is committed when it runs (a follower started
    // afterwards re-reads the lookback window for rows committed later).
    let mut opts = Options::new(lookback);
    opts.settle = std::time::Duration::ZERO;
    let mut follower = Follower::new(state.clone(), source.clone(), opts);
    let result = async {
        if store::load(&state.db).await?.is_none() {
            store::init(&state.db, usage_since).await?;
        }
        if !follower.lease().await? {
            return Err(anyhow::anyhow!(
                "another process follows the platform now (serve with PLATFORM_DATABASE_URL); it takes the usage \
                 from its position, `platform status` shows it"
            ));
        }
        store::start_from(&state.db, follower.holder(), usage_since).await?;
        follower.sync_tenants().await?;
        follower.pass().await?;
        let st = store::load(&state.db).await?.expect("created above");
        let held: i64 = store::held_counts(&state.db).await?.iter().map(|(_, n)| n).sum();
        Ok((st.rows_ingested(), held))
    }
    .await;
    follower.release().await;
    result.map_err(|e: anyhow::Error| format!("{e:#}"))
}
