//! The platform's `stripe_customers` rows that appear after the import, linked here by the follower.
//!
//! The platform writes a row there only when its own checkout makes a customer for an organization
//! (backend/app/services/stripe_service.py:44-76, from backend/app/api/billing.py:82); its out-of-scope
//! `organization-signup` checkout (billing.py:100-139) makes a customer that no row names, so for such an
//! organization an operator records its customer on the platform (or tags the customer in Stripe and runs
//! `stripe sync`). The follower then links it as `platform import --apply` would: only an organization
//! registered here without a customer, only a customer no other tenant has here and whose
//! `metadata.tenant_id` names no other tenant (set when missing, under the import's key), then
//! `stripe sync` for it. One read of the platform's table and one of ours per read of the organizations;
//! Stripe is called only for a row to link.

use super::source::{PlatformCustomer, Source};
use crate::db::customers;
use crate::domain::TenantId;
use crate::state::AppState;
use std::collections::{HashMap, HashSet};

/// The idempotency key of tagging `customer` with `tenant`: the same for the import and the follower, so
/// either repeating the other sends the same request.
pub fn tag_key(customer: &str, tenant: &str) -> String {
    format!("platform-import:customer:{customer}:tenant:{tenant}")
}

/// What this process has refused to link (said once in the log, not tried again until it restarts).
#[derive(Debug, Default)]
pub struct Links {
    refused: HashSet<(String, String)>,
}

impl Links {
    /// Links the platform's rows for organizations registered here (`known`) that have no customer here.
    /// Never fails the follower's pass: what fails is logged and tried again on the next read.
    pub async fn link_new(&mut self, state: &AppState, source: &Source, known: &HashSet<String>) {
        if !state.stripe.is_configured() {
            return;
        }
        if let Err(e) = self.link_rows(state, source, known).await {
            tracing::warn!(error = %format!("{e:#}"), "the platform's Stripe customers not linked; tried again");
        }
    }

    async fn link_rows(
        &mut self,
        state: &AppState,
        source: &Source,
        known: &HashSet<String>,
    ) -> anyhow::Result<()> {
        let rows = source.customers().await?;
        let ours: HashMap<String, String> = customers::all(&state.db).await?.into_iter().collect();
        let owned: HashSet<&String> = ours.values().collect();
        for row in rows {
            let pair = (row.tenant_id.clone(), row.stripe_customer_id.clone());
            if !known.contains(&row.tenant_id)
                || ours.contains_key(&row.tenant_id)
                || self.refused.contains(&pair)
            {
                continue;
            }
            let refusal = if owned.contains(&row.stripe_customer_id) {
                Some("the customer is another tenant's here".to_owned())
            } else {
                link(state, &row).await?
            };
            if let Some(why) = refusal {
                tracing::warn!(tenant_id = %row.tenant_id, customer = %row.stripe_customer_id, why,
                    "the platform's Stripe customer of an organization not linked");
                self.refused.insert(pair);
            }
        }
        Ok(())
    }
}

/// Links one row; the reason when it must not be linked.
async fn link(state: &AppState, row: &PlatformCustomer) -> anyhow::Result<Option<String>> {
    let (tenant, id) = (&row.tenant_id, &row.stripe_customer_id);
    let customer = match state.stripe.customer(id).await {
        Ok(c) if c.deleted => return Ok(Some("the customer is deleted in Stripe".into())),
        Ok(c) => c,
        Err(e) if e.status() == Some(404) => {
            return Ok(Some(
                "Stripe has no such customer (deleted, or another account's)".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    match customer.metadata.get("tenant_id") {
        Some(other) if other != tenant => {
            return Ok(Some(format!(
                "the customer carries metadata.tenant_id {other}"
            )))
        }
        Some(_) => {}
        None => {
            state
                .stripe
                .set_customer_tenant(id, tenant, &tag_key(id, tenant))
                .await?;
        }
    }
    let linked = customers::link(&state.db, tenant, id, row.email.as_deref()).await?;
    if &linked != id {
        return Ok(Some(format!("the tenant was linked to {linked} meanwhile")));
    }
    tracing::info!(tenant_id = %tenant, customer = %id, "the platform's Stripe customer linked");
    let tenant_id = TenantId::parse(tenant).map_err(anyhow::Error::msg)?;
    // Its subscriptions and invoices, from Stripe itself; a failure here is `stripe sync`'s to repeat.
    match crate::ops::stripe_sync::run(state, Some(&tenant_id)).await {
        Ok(report) => {
            if let Some(e) = report.tenant(tenant).and_then(|t| t.error.clone()) {
                tracing::warn!(tenant_id = %tenant, error = %e,
                    "linked, but not synced from Stripe: run `stripe sync --tenant`");
            }
        }
        Err(e) => tracing::warn!(tenant_id = %tenant, error = %e,
            "linked, but not synced from Stripe: run `stripe sync --tenant`"),
    }
    Ok(None)
}
