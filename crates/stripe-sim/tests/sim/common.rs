use std::time::Duration;

use serde_json::Value;
use stripe_sim::{spawn, SimConfig, SimHandle};

pub const KEY: &str = "sk_test_simulator";

pub struct Sim {
    pub handle: SimHandle,
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "unexpected reply: {}", self.body);
        self.body
    }
    pub fn err(&self) -> &Value {
        &self.body["error"]
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl Sim {
    pub async fn start() -> Sim {
        Self::start_with(SimConfig::default()).await
    }

    pub async fn start_with(config: SimConfig) -> Sim {
        let handle = spawn("127.0.0.1:0".parse().expect("addr"), config)
            .await
            .expect("spawn simulator");
        let base = handle.base_url.clone();
        Sim {
            handle,
            base,
            http: client(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            headers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(self.http.post(self.url(path)).bearer_auth(KEY).form(form))
            .await
    }

    pub async fn post_idem(&self, path: &str, key: &str, form: &[(&str, &str)]) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(KEY)
                .header("Idempotency-Key", key)
                .form(form),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(KEY))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path)).bearer_auth(KEY))
            .await
    }

    /// A `/_sim` control call (no API key needed).
    pub async fn ctl(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.send(self.http.post(self.url(path)).form(form))
            .await
            .ok()
    }

    pub async fn ctl_get(&self, path: &str) -> Value {
        self.send(self.http.get(self.url(path))).await.ok()
    }

    /// A hosted page's HTML.
    pub async fn page(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("page text")
    }

    pub async fn customer(&self, email: &str) -> String {
        id(&self.post("/v1/customers", &[("email", email)]).await.ok())
    }

    /// A product and a monthly price of `cents`.
    pub async fn monthly_price(&self, cents: i64) -> String {
        let prod = id(&self
            .post("/v1/products", &[("name", "Thanotopolis Pro")])
            .await
            .ok());
        let amount = cents.to_string();
        id(&self
            .post(
                "/v1/prices",
                &[
                    ("product", prod.as_str()),
                    ("unit_amount", amount.as_str()),
                    ("currency", "usd"),
                    ("recurring[interval]", "month"),
                ],
            )
            .await
            .ok())
    }

    /// An open subscription checkout session; `trial_days` 0 means no trial.
    pub async fn checkout(&self, price: &str, trial_days: u32, customer: Option<&str>) -> Value {
        let days = trial_days.to_string();
        let mut form = vec![
            ("mode", "subscription"),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "https://app.example/ok?session={CHECKOUT_SESSION_ID}",
            ),
            ("cancel_url", "https://app.example/cancel"),
            ("client_reference_id", "tenant-1"),
            ("subscription_data[metadata][tenant_id]", "tenant-1"),
            ("payment_method_types[]", "card"),
        ];
        if trial_days > 0 {
            form.push(("subscription_data[trial_period_days]", days.as_str()));
        }
        if let Some(c) = customer {
            form.push(("customer", c));
        }
        self.post("/v1/checkout/sessions", &form).await.ok()
    }

    /// A subscription through checkout and completion with `card`.
    pub async fn subscribe(&self, price: &str, trial_days: u32, card: &str) -> Value {
        let cs = self.checkout(price, trial_days, None).await;
        let path = format!("/_sim/checkout/sessions/{}/complete", id(&cs));
        let done = self.ctl(&path, &[("card", card)]).await;
        let sub = done["subscription"]
            .as_str()
            .expect("subscription id")
            .to_string();
        self.get(&format!("/v1/subscriptions/{sub}")).await.ok()
    }

    /// A pending invoice item of `amount` cents.
    pub async fn invoice_item(&self, customer: &str, amount: &str) -> Value {
        self.post(
            "/v1/invoiceitems",
            &[
                ("customer", customer),
                ("amount", amount),
                ("currency", "usd"),
            ],
        )
        .await
        .ok()
    }

    /// A draft invoice holding the customer's pending items.
    pub async fn invoice_with_pending(&self, customer: &str) -> Value {
        self.post(
            "/v1/invoices",
            &[
                ("customer", customer),
                ("pending_invoice_items_behavior", "include"),
            ],
        )
        .await
        .ok()
    }

    pub async fn advance_days(&self, days: i64) -> Value {
        let secs = (days * 86_400).to_string();
        self.ctl("/_sim/clock/advance", &[("seconds", secs.as_str())])
            .await
    }

    /// Event types in the order they happened.
    pub async fn event_types(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/events?limit=100&starting_after={a}"),
                None => "/v1/events?limit=100".to_string(),
            };
            let page = self.get(&path).await.ok();
            let data = page["data"].as_array().cloned().unwrap_or_default();
            for e in &data {
                out.push(e["type"].as_str().unwrap_or("").to_string());
            }
            after = data.last().map(id);
            if page["has_more"] != true {
                break;
            }
        }
        out.reverse();
        out
    }
}

pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}
