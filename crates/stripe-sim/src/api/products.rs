//! Products: create (with `default_price_data`), retrieve, update, list, search.

use serde_json::Value;

use super::prices::{insert_price, read_recurring};
use super::{ignore, retrieve, search, Route};
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::Product;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/products", |s, _, p| create(s, p)),
    Route::new("GET /v1/products", |s, _, p| list(s, p)),
    Route::new("GET /v1/products/search", |s, _, p| {
        search(s, p, "/v1/products/search", &s.products, false, |s, x| {
            s.render_product(x)
        })
    }),
    Route::new("GET /v1/products/{id}", |s, id, p| {
        retrieve(s, p, id, "product", "id")
    }),
    Route::new("POST /v1/products/{id}", update),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let name = p.req_str("name")?;
    let explicit_id = p.opt_nonempty("id")?;
    let description = p.opt_nonempty("description")?;
    let active = p.bool("active")?.unwrap_or(true);
    let metadata = p.metadata("metadata")?;
    let unit_label = p.opt_nonempty("unit_label")?;
    let statement_descriptor = p.opt_nonempty("statement_descriptor")?;
    let tax_code = p.opt_nonempty("tax_code")?;
    let url = p.opt_nonempty("url")?;
    let images = p.str_list("images")?.unwrap_or_default();
    let default_price = match p.sub("default_price_data")? {
        Some(mut d) => {
            let currency = d.req_str("currency")?.to_lowercase();
            let unit_amount = d.int("unit_amount")?.unwrap_or(0);
            let recurring = read_recurring(&mut d)?;
            d.finish()?;
            Some((currency, unit_amount, recurring))
        }
        None => None,
    };
    ignore(
        &mut p,
        &[
            "type",
            "shippable",
            "package_dimensions",
            "marketing_features",
            "tax_behavior",
        ],
    );
    p.finish()?;
    let id = explicit_id.unwrap_or_else(|| new_id("prod"));
    if s.products.contains(&id) {
        return Err(
            ApiError::invalid(format!("Product already exists with ID {id}"))
                .code("resource_already_exists")
                .param("id"),
        );
    }
    let now = s.now();
    s.products.insert(
        id.clone(),
        Product {
            id: id.clone(),
            created: now,
            updated: now,
            name,
            description,
            active,
            metadata: new_metadata(metadata),
            default_price: None,
            unit_label,
            statement_descriptor,
            tax_code,
            url,
            images,
        },
    );
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("product.created", v, None);
    if let Some((currency, unit_amount, recurring)) = default_price {
        let price = insert_price(
            s,
            &id,
            currency,
            unit_amount,
            recurring,
            None,
            Metadata::new(),
            None,
        );
        if let Some(mut x) = s.products.get_mut(&id) {
            x.default_price = Some(price);
        }
    }
    Ok(s.render_id(&id).unwrap_or_default())
}

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    if !s.products.contains(id) {
        return Err(ApiError::no_such("product", id, "id"));
    }
    let name = p.opt_nonempty("name")?;
    let description = p.str("description")?;
    let active = p.bool("active")?;
    let metadata = p.metadata("metadata")?;
    let default_price = p.opt_nonempty("default_price")?;
    ignore(
        &mut p,
        &[
            "unit_label",
            "statement_descriptor",
            "tax_code",
            "url",
            "images",
            "marketing_features",
        ],
    );
    p.finish()?;
    if let Some(dp) = &default_price {
        if !s.prices.contains(dp) {
            return Err(ApiError::no_such("price", dp, "default_price"));
        }
    }
    let before = s.render_id(id).unwrap_or_default();
    let now = s.now();
    if let Some(mut x) = s.products.get_mut(id) {
        if let Some(v) = name {
            x.name = v;
        }
        if let Some(v) = description {
            x.description = if v.is_empty() { None } else { Some(v) };
        }
        if let Some(v) = active {
            x.active = v;
        }
        if let Some(m) = metadata {
            apply_metadata(&mut x.metadata, m);
        }
        if default_price.is_some() {
            x.default_price = default_price;
        }
        x.updated = now;
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("product.updated", before, after.clone());
    Ok(after)
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let ids = p.str_list("ids")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["shippable", "url"]);
    let items = s
        .products
        .newest_first()
        .filter(|(_, x)| active.is_none_or(|a| x.active == a))
        .filter(|(id, _)| ids.as_ref().is_none_or(|l| l.contains(id)))
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/products", |x| s.render_product(x))?;
    p.finish()?;
    Ok(out)
}
