//! Prices: create (with `product_data`, `lookup_key`, `transfer_lookup_key`), retrieve, update,
//! list (`lookup_keys[]`), search.

use serde_json::Value;

use super::{ignore, retrieve, search, Route};
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::{Price, Product, Recurring};
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/prices", |s, _, p| create(s, p)),
    Route::new("GET /v1/prices", |s, _, p| list(s, p)),
    Route::new("GET /v1/prices/search", |s, _, p| {
        search(s, p, "/v1/prices/search", &s.prices, false, |s, x| {
            s.render_price(x)
        })
    }),
    Route::new("GET /v1/prices/{id}", |s, id, p| {
        retrieve(s, p, id, "price", "price")
    }),
    Route::new("POST /v1/prices/{id}", update),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let currency = p.req_str("currency")?.to_lowercase();
    let unit_amount = match p.int("unit_amount")? {
        Some(v) => v,
        None => match p.opt_nonempty("unit_amount_decimal")? {
            Some(d) => d.parse::<f64>().map(|f| f.round() as i64).map_err(|_| {
                ApiError::invalid("Invalid decimal: unit_amount_decimal")
                    .param("unit_amount_decimal")
            })?,
            None => return Err(ApiError::missing_param("unit_amount")),
        },
    };
    if unit_amount < 0 {
        return Err(
            ApiError::invalid("This value must be greater than or equal to 0.")
                .param("unit_amount"),
        );
    }
    let product = p.opt_nonempty("product")?;
    let product_data = match p.sub("product_data")? {
        Some(mut d) => {
            let name = d.req_str("name")?;
            let md = d.metadata("metadata")?;
            ignore(
                &mut d,
                &[
                    "active",
                    "statement_descriptor",
                    "tax_code",
                    "unit_label",
                    "id",
                ],
            );
            d.finish()?;
            Some((name, md))
        }
        None => None,
    };
    let recurring = read_recurring(&mut p)?;
    let lookup_key = p.opt_nonempty("lookup_key")?;
    let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
    let metadata = p.metadata("metadata")?;
    let nickname = p.opt_nonempty("nickname")?;
    let active = p.bool("active")?;
    let tax_behavior = p.enum_str("tax_behavior", &["exclusive", "inclusive", "unspecified"])?;
    ignore(&mut p, &["billing_scheme"]);
    p.finish()?;
    let product_id = match (product, product_data) {
        (Some(id), _) => {
            if !s.products.contains(&id) {
                return Err(ApiError::no_such("product", &id, "product"));
            }
            id
        }
        (None, Some((name, md))) => {
            let id = new_id("prod");
            let now = s.now();
            s.products.insert(
                id.clone(),
                Product {
                    id: id.clone(),
                    created: now,
                    updated: now,
                    name,
                    description: None,
                    active: true,
                    metadata: new_metadata(md),
                    default_price: None,
                    unit_label: None,
                    statement_descriptor: None,
                    tax_code: None,
                    url: None,
                    images: Vec::new(),
                },
            );
            let v = s.render_id(&id).unwrap_or_default();
            s.emit("product.created", v, None);
            id
        }
        (None, None) => return Err(ApiError::missing_param("product")),
    };
    if let Some(key) = &lookup_key {
        let holder = s
            .prices
            .with("lookup_key", key)
            .map(|(id, _)| id.clone())
            .next();
        if let Some(holder) = holder {
            if !transfer {
                return Err(ApiError::invalid(format!(
                    "A price (`{holder}`) already uses that lookup key."
                ))
                .param("lookup_key"));
            }
            let before = s.render_id(&holder).unwrap_or_default();
            if let Some(mut x) = s.prices.get_mut(&holder) {
                x.lookup_key = None;
            }
            let after = s.render_id(&holder).unwrap_or_default();
            s.emit_update("price.updated", before, after);
        }
    }
    let id = insert_price(
        s,
        &product_id,
        currency,
        unit_amount,
        recurring,
        lookup_key,
        new_metadata(metadata),
        nickname,
    );
    if let Some(mut x) = s.prices.get_mut(&id) {
        if let Some(a) = active {
            x.active = a;
        }
        if let Some(t) = tax_behavior {
            x.tax_behavior = t;
        }
    }
    Ok(s.render_id(&id).unwrap_or_default())
}

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    if !s.prices.contains(id) {
        return Err(ApiError::no_such("price", id, "price"));
    }
    let active = p.bool("active")?;
    let metadata = p.metadata("metadata")?;
    let nickname = p.str("nickname")?;
    let lookup_key = p.str("lookup_key")?;
    let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
    ignore(&mut p, &["tax_behavior"]);
    p.finish()?;
    if let Some(key) = lookup_key.as_ref().filter(|k| !k.is_empty()) {
        let holder = s
            .prices
            .with("lookup_key", key)
            .find(|(pid, _)| *pid != id)
            .map(|(pid, _)| pid.clone());
        if let Some(h) = holder {
            if !transfer {
                return Err(ApiError::invalid(format!(
                    "A price (`{h}`) already uses that lookup key."
                ))
                .param("lookup_key"));
            }
            if let Some(mut x) = s.prices.get_mut(&h) {
                x.lookup_key = None;
            }
        }
    }
    let before = s.render_id(id).unwrap_or_default();
    if let Some(mut x) = s.prices.get_mut(id) {
        if let Some(a) = active {
            x.active = a;
        }
        if let Some(m) = metadata {
            apply_metadata(&mut x.metadata, m);
        }
        if let Some(n) = nickname {
            x.nickname = if n.is_empty() { None } else { Some(n) };
        }
        if let Some(k) = lookup_key {
            x.lookup_key = if k.is_empty() { None } else { Some(k) };
        }
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("price.updated", before, after.clone());
    Ok(after)
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let product = p.opt_nonempty("product")?;
    let currency = p.opt_nonempty("currency")?;
    let kind = p.enum_str("type", &["one_time", "recurring"])?;
    let keys = p.str_list("lookup_keys")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["recurring"]);
    let base: Box<dyn Iterator<Item = (&String, &Price)>> = match &product {
        Some(pr) => Box::new(s.prices.with("product", pr)),
        None => Box::new(s.prices.newest_first()),
    };
    let items = base
        .filter(|(_, x)| active.is_none_or(|a| x.active == a))
        .filter(|(_, x)| product.as_ref().is_none_or(|v| x.product == *v))
        .filter(|(_, x)| currency.as_ref().is_none_or(|v| x.currency == *v))
        .filter(|(_, x)| {
            kind.as_deref()
                .is_none_or(|k| (k == "recurring") == x.recurring.is_some())
        })
        .filter(|(_, x)| {
            keys.as_ref()
                .is_none_or(|l| x.lookup_key.as_ref().is_some_and(|k| l.contains(k)))
        })
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/prices", |x| s.render_price(x))?;
    p.finish()?;
    Ok(out)
}

pub(super) fn read_recurring(p: &mut Params) -> Result<Option<Recurring>, ApiError> {
    match p.sub("recurring")? {
        Some(mut r) => {
            let interval = r
                .enum_str("interval", &["day", "week", "month", "year"])?
                .ok_or_else(|| ApiError::missing_param(&r.name("interval")))?;
            let interval_count = r.int("interval_count")?.unwrap_or(1).max(1) as u32;
            let usage_type = r
                .enum_str("usage_type", &["licensed", "metered"])?
                .unwrap_or_else(|| "licensed".into());
            let trial_period_days = r.int("trial_period_days")?;
            ignore(&mut r, &["aggregate_usage", "meter"]);
            r.finish()?;
            Ok(Some(Recurring {
                interval,
                interval_count,
                usage_type,
                trial_period_days,
            }))
        }
        None => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_price(
    s: &mut Store,
    product: &str,
    currency: String,
    unit_amount: i64,
    recurring: Option<Recurring>,
    lookup_key: Option<String>,
    metadata: Metadata,
    nickname: Option<String>,
) -> String {
    let id = new_id("price");
    let now = s.now();
    s.prices.insert(
        id.clone(),
        Price {
            id: id.clone(),
            created: now,
            product: product.to_string(),
            currency,
            unit_amount,
            active: true,
            nickname,
            lookup_key,
            metadata,
            recurring,
            tax_behavior: "unspecified".into(),
        },
    );
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("price.created", v, None);
    id
}
