//! The customer portal: sessions, and configurations (create, retrieve, update, list; a default
//! one is made on first use).

use serde_json::{json, Value};

use super::{ignore, need_customer, retrieve, Route};
use crate::error::ApiError;
use crate::form::{apply_metadata, Metadata, Param, Params};
use crate::ids::new_id;
use crate::listing::list_page;
use crate::model::{PortalConfig, PortalSession};
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/billing_portal/sessions", |s, _, p| {
        create_session(s, p)
    }),
    Route::new("POST /v1/billing_portal/configurations", |s, _, p| {
        create_config(s, p)
    }),
    Route::new("GET /v1/billing_portal/configurations", |s, _, p| {
        list_configs(s, p)
    }),
    Route::new("GET /v1/billing_portal/configurations/{id}", |s, id, p| {
        retrieve(s, p, id, "billing_portal.configuration", "configuration")
    }),
    Route::new("POST /v1/billing_portal/configurations/{id}", update_config),
];

fn create_session(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.req_str("customer")?;
    let return_url = p.opt_nonempty("return_url")?;
    let configuration = p.opt_nonempty("configuration")?;
    let locale = p.opt_nonempty("locale")?;
    ignore(&mut p, &["flow_data", "on_behalf_of"]);
    p.finish()?;
    need_customer(s, &customer, "customer")?;
    let configuration = match configuration {
        Some(c) => {
            if !s.portal_configs.contains(&c) {
                return Err(ApiError::no_such(
                    "billing_portal.configuration",
                    &c,
                    "configuration",
                ));
            }
            c
        }
        None => default_config(s),
    };
    let return_url = return_url.or_else(|| {
        s.portal_configs
            .get(&configuration)
            .and_then(|c| c.default_return_url.clone())
    });
    let id = new_id("bps");
    let now = s.now();
    s.portal_sessions.insert(
        id.clone(),
        PortalSession {
            id: id.clone(),
            created: now,
            customer,
            configuration,
            return_url,
            locale,
        },
    );
    Ok(s.render_id(&id).unwrap_or_default())
}

fn create_config(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let cp = read_config(&mut p)?;
    p.finish()?;
    if cp.features.is_none() {
        return Err(ApiError::missing_param("features"));
    }
    let now = s.now();
    let is_default = !s.portal_configs.newest_first().any(|(_, c)| c.is_default);
    let id = new_id("bpc");
    let mut c = PortalConfig {
        id: id.clone(),
        created: now,
        updated: now,
        active: true,
        is_default,
        name: None,
        default_return_url: None,
        headline: None,
        privacy_policy_url: None,
        terms_of_service_url: None,
        features: default_features(),
        metadata: Metadata::new(),
    };
    apply_config(&mut c, cp, now);
    s.portal_configs.insert(id.clone(), c);
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("billing_portal.configuration.created", v.clone(), None);
    Ok(v)
}

fn update_config(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let cp = read_config(&mut p)?;
    p.finish()?;
    let now = s.now();
    let before = s
        .render_id(id)
        .ok_or_else(|| ApiError::no_such("billing_portal.configuration", id, "configuration"))?;
    if let Some(mut c) = s.portal_configs.get_mut(id) {
        apply_config(&mut c, cp, now);
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update(
        "billing_portal.configuration.updated",
        before,
        after.clone(),
    );
    Ok(after)
}

fn list_configs(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let is_default = p.bool("is_default")?;
    let items: Vec<(&str, &PortalConfig)> = s
        .portal_configs
        .newest_first()
        .filter(|(_, c)| active.is_none_or(|a| c.active == a))
        .filter(|(_, c)| is_default.is_none_or(|d| c.is_default == d))
        .map(|(id, c)| (id.as_str(), c))
        .collect();
    let out = list_page(
        items.into_iter(),
        &mut p,
        "/v1/billing_portal/configurations",
        |c| s.render_portal_config(c),
    )?;
    p.finish()?;
    Ok(out)
}

fn default_config(s: &mut Store) -> String {
    if let Some((id, _)) = s.portal_configs.newest_first().find(|(_, c)| c.is_default) {
        return id.clone();
    }
    let id = new_id("bpc");
    let now = s.now();
    s.portal_configs.insert(
        id.clone(),
        PortalConfig {
            id: id.clone(),
            created: now,
            updated: now,
            active: true,
            is_default: true,
            name: None,
            default_return_url: None,
            headline: None,
            privacy_policy_url: None,
            terms_of_service_url: None,
            features: default_features(),
            metadata: Metadata::new(),
        },
    );
    id
}

fn default_features() -> Value {
    json!({
        "customer_update": {"allowed_updates": ["email"], "enabled": true},
        "invoice_history": {"enabled": true},
        "payment_method_update": {"enabled": true, "payment_method_configuration": null},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": false, "options": []},
            "enabled": true,
            "mode": "at_period_end",
            "proration_behavior": "none",
        },
        "subscription_update": {
            "default_allowed_updates": [],
            "enabled": false,
            "proration_behavior": "none",
            "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
            "billing_cycle_anchor": null,
        },
    })
}

struct ConfigParams {
    features: Option<Value>,
    headline: Option<Option<String>>,
    privacy: Option<Option<String>>,
    terms: Option<Option<String>>,
    default_return_url: Option<String>,
    metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
    name: Option<String>,
    active: Option<bool>,
}

fn read_config(p: &mut Params) -> Result<ConfigParams, ApiError> {
    let features = p.raw("features").map(|f| param_to_json(&f));
    let (mut headline, mut privacy, mut terms) = (None, None, None);
    if let Some(mut bp) = p.sub("business_profile")? {
        headline = bp
            .str("headline")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        privacy = bp
            .str("privacy_policy_url")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        terms = bp
            .str("terms_of_service_url")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        bp.finish()?;
    }
    let default_return_url = p.str("default_return_url")?;
    let metadata = p.metadata("metadata")?;
    let name = p.str("name")?;
    let active = p.bool("active")?;
    ignore(p, &["login_page"]);
    Ok(ConfigParams {
        features,
        headline,
        privacy,
        terms,
        default_return_url,
        metadata,
        name,
        active,
    })
}

fn apply_config(c: &mut PortalConfig, cp: ConfigParams, now: i64) {
    if let Some(f) = cp.features {
        merge(&mut c.features, f);
    }
    if let Some(v) = cp.headline {
        c.headline = v;
    }
    if let Some(v) = cp.privacy {
        c.privacy_policy_url = v;
    }
    if let Some(v) = cp.terms {
        c.terms_of_service_url = v;
    }
    if let Some(v) = cp.default_return_url {
        c.default_return_url = Some(v).filter(|x| !x.is_empty());
    }
    if let Some(m) = cp.metadata {
        apply_metadata(&mut c.metadata, m);
    }
    if let Some(v) = cp.name {
        c.name = Some(v).filter(|x| !x.is_empty());
    }
    if let Some(a) = cp.active {
        c.active = a;
    }
    c.updated = now;
}

fn param_to_json(p: &Param) -> Value {
    match p {
        Param::Str(s) => match s.as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(s),
        },
        Param::List(l) => Value::Array(l.iter().map(param_to_json).collect()),
        Param::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), param_to_json(v)))
                .collect(),
        ),
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
