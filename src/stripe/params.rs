//! Stripe's form encoding: `a=1&metadata[tenant_id]=x&items[0][price]=p&expand[]=latest_invoice`.

/// Ordered form parameters of one Stripe request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds `key=value`; keys carry their own brackets (`metadata[tenant_id]`).
    pub fn set(mut self, key: impl Into<String>, value: impl ToString) -> Params {
        self.0.push((key.into(), value.to_string()));
        self
    }

    /// Adds the pair only when `value` is present.
    pub fn set_opt(self, key: impl Into<String>, value: Option<impl ToString>) -> Params {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// Adds `metadata[key]=value`.
    pub fn metadata(self, key: &str, value: impl ToString) -> Params {
        self.set(format!("metadata[{key}]"), value)
    }

    /// Adds `expand[]=path`.
    pub fn expand(self, path: &str) -> Params {
        self.set("expand[]", path)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `application/x-www-form-urlencoded` body (or query string).
    pub fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_brackets_and_order() {
        let p = Params::new()
            .set("customer", "cus_1")
            .metadata("tenant_id", "t 1")
            .set("items[0][price]", "price_1")
            .expand("latest_invoice");
        assert_eq!(
            p.encode(),
            "customer=cus_1&metadata%5Btenant_id%5D=t+1&items%5B0%5D%5Bprice%5D=price_1&expand%5B%5D=latest_invoice"
        );
    }
}
