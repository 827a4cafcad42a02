//! Stripe's bracket form encoding (`items[0][price]=p`, `expand[]=a`) decoded into a tree, and a
//! parameter reader that remembers what a handler consumed so leftovers can be rejected the way
//! Stripe rejects unknown parameters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Str(String),
    Map(BTreeMap<String, Param>),
    List(Vec<Param>),
}

impl Param {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }

    /// JSON bodies (control routes) become the same tree; scalars turn into strings.
    pub fn from_json(v: &Value) -> Param {
        match v {
            Value::Object(m) => Param::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Param::from_json(v)))
                    .collect(),
            ),
            Value::Array(a) => Param::List(a.iter().map(Param::from_json).collect()),
            Value::String(s) => Param::Str(s.clone()),
            Value::Null => Param::Str(String::new()),
            other => Param::Str(other.to_string()),
        }
    }
}

/// Split `a[b][0][]` into `["a", "b", "0", ""]`.
fn split_key(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => return vec![key.to_string()],
    };
    parts.push(head.to_string());
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(end) => {
                parts.push(stripped[..end].to_string());
                rest = &stripped[end + 1..];
            }
            None => {
                // Unbalanced bracket: keep the remainder literally as one segment.
                parts.push(stripped.to_string());
                break;
            }
        }
    }
    parts
}

fn insert(node: &mut BTreeMap<String, Param>, segs: &[String], value: String) {
    let key = &segs[0];
    if segs.len() == 1 {
        node.insert(key.clone(), Param::Str(value));
        return;
    }
    let next = &segs[1];
    if next.is_empty() {
        // `key[]` appends; `key[][x]` appends a new map.
        let entry = node
            .entry(key.clone())
            .or_insert_with(|| Param::List(Vec::new()));
        if !matches!(entry, Param::List(_)) {
            *entry = Param::List(Vec::new());
        }
        if let Param::List(list) = entry {
            if segs.len() == 2 {
                list.push(Param::Str(value));
            } else {
                let mut m = BTreeMap::new();
                insert(&mut m, &segs[2..], value);
                list.push(Param::Map(m));
            }
        }
        return;
    }
    let entry = node
        .entry(key.clone())
        .or_insert_with(|| Param::Map(BTreeMap::new()));
    if !matches!(entry, Param::Map(_)) {
        *entry = Param::Map(BTreeMap::new());
    }
    if let Param::Map(m) = entry {
        insert(m, &segs[1..], value);
    }
}

/// Maps whose keys are all indexes (`items[0]`, `items[1]`) become lists, ordered by index.
/// Metadata keeps its keys even when they look numeric.
fn normalize(p: Param, under_metadata: bool) -> Param {
    match p {
        Param::Map(m) => {
            let all_numeric = !under_metadata
                && !m.is_empty()
                && m.keys()
                    .all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            if all_numeric {
                let mut items: Vec<(u64, Param)> = m
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(u64::MAX), normalize(v, false)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Param::List(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Param::Map(
                    m.into_iter()
                        .map(|(k, v)| {
                            let meta = k == "metadata";
                            (k, normalize(v, meta))
                        })
                        .collect(),
                )
            }
        }
        Param::List(l) => Param::List(l.into_iter().map(|v| normalize(v, false)).collect()),
        s => s,
    }
}

pub fn parse_pairs<'a>(
    pairs: impl Iterator<Item = (String, String)> + 'a,
) -> BTreeMap<String, Param> {
    let mut root = BTreeMap::new();
    for (k, v) in pairs {
        if k.is_empty() {
            continue;
        }
        let segs = split_key(&k);
        insert(&mut root, &segs, v);
    }
    match normalize(Param::Map(root), false) {
        Param::Map(m) => m,
        _ => BTreeMap::new(),
    }
}

pub fn parse_form(body: &[u8]) -> BTreeMap<String, Param> {
    parse_pairs(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())))
}

/// Reads parameters by name, tracking which were consumed; `finish` reports the rest as unknown.
#[derive(Debug, Default)]
pub struct Params {
    prefix: String,
    map: BTreeMap<String, Param>,
    used: BTreeSet<String>,
}

pub type Metadata = BTreeMap<String, String>;

impl Params {
    pub fn new(map: BTreeMap<String, Param>) -> Self {
        Params {
            prefix: String::new(),
            map,
            used: BTreeSet::new(),
        }
    }

    fn nested(prefix: String, map: BTreeMap<String, Param>) -> Self {
        Params {
            prefix,
            map,
            used: BTreeSet::new(),
        }
    }

    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}[{}]", self.prefix, key)
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Whether `key` was sent as an empty string (`pause_collection=`): Stripe's way to unset a hash.
    pub fn raw_is_empty_str(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(Param::Str(s)) if s.is_empty())
    }

    pub fn raw(&mut self, key: &str) -> Option<Param> {
        self.used.insert(key.to_string());
        self.map.get(key).cloned()
    }

    /// A string parameter; an empty string is returned as `Some("")` so callers can unset fields.
    pub fn str(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Param::Str(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid string: {{...}}; must be a string ({})",
                self.name(key)
            ))
            .code("parameter_invalid_string")
            .param(self.name(key))),
        }
    }

    /// A string that must be non-empty when given.
    pub fn opt_nonempty(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self.str(key)?.filter(|s| !s.is_empty()))
    }

    pub fn req_str(&mut self, key: &str) -> Result<String, ApiError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::missing_param(&self.name(key))),
        }
    }

    pub fn int(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(format!("Invalid integer: {s}"))
                    .code("parameter_invalid_integer")
                    .param(self.name(key))
            }),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.str(key)?.as_deref() {
            None | Some("") => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => {
                Err(ApiError::invalid(format!("Invalid boolean: {other}")).param(self.name(key)))
            }
        }
    }

    /// One of a fixed set of values.
    pub fn enum_str(&mut self, key: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.opt_nonempty(key)? {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
            Some(v) => Err(ApiError::invalid(format!(
                "Invalid {}: must be one of {}",
                self.name(key),
                allowed.join(", ")
            ))
            .code("parameter_invalid_string")
            .param(self.name(key))
            .with_value(v)),
        }
    }

    /// A nested hash such as `recurring[...]`.
    pub fn sub(&mut self, key: &str) -> Result<Option<Params>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Param::Map(m)) => Ok(Some(Params::nested(self.name(key), m))),
            // `recurring=` (empty) unsets in Stripe; treat it as an empty hash.
            Some(Param::Str(s)) if s.is_empty() => {
                Ok(Some(Params::nested(self.name(key), BTreeMap::new())))
            }
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid hash: {} must be a hash",
                self.name(key)
            ))
            .code("parameter_invalid_hash")
            .param(self.name(key))),
        }
    }

    /// A list of hashes such as `items[0][price]`.
    pub fn list_of_maps(&mut self, key: &str) -> Result<Option<Vec<Params>>, ApiError> {
        let name = self.name(key);
        match self.raw(key) {
            None => Ok(None),
            Some(Param::List(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Param::Map(m) => Ok(Params::nested(format!("{name}[{i}]"), m)),
                    _ => Err(ApiError::invalid(format!("Invalid array: {name}"))
                        .code("parameter_invalid_array")
                        .param(format!("{name}[{i}]"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Param::Str(s)) if s.is_empty() => Ok(Some(Vec::new())),
            Some(_) => Err(ApiError::invalid(format!("Invalid array: {name}"))
                .code("parameter_invalid_array")
                .param(name)),
        }
    }

    /// A list of strings (`expand[]=a`, `expand[0]=a`); a single string is accepted as one item.
    pub fn str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let name = self.name(key);
        match self.raw(key) {
            None => Ok(None),
            Some(Param::Str(s)) if s.is_empty() => Ok(Some(Vec::new())),
            Some(Param::Str(s)) => Ok(Some(vec![s])),
            Some(Param::List(items)) => items
                .into_iter()
                .map(|p| match p {
                    Param::Str(s) => Ok(s),
                    _ => Err(ApiError::invalid(format!("Invalid array: {name}"))
                        .code("parameter_invalid_array")
                        .param(name.clone())),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Param::Map(_)) => Err(ApiError::invalid(format!("Invalid array: {name}"))
                .code("parameter_invalid_array")
                .param(name)),
        }
    }

    /// `metadata[k]=v`; an empty value (or `metadata=`) means "remove" and is kept as `None`.
    pub fn metadata(
        &mut self,
        key: &str,
    ) -> Result<Option<BTreeMap<String, Option<String>>>, ApiError> {
        let name = self.name(key);
        match self.raw(key) {
            None => Ok(None),
            Some(Param::Str(s)) if s.is_empty() => Ok(Some(BTreeMap::new())),
            Some(Param::Map(m)) => {
                // "You can specify up to 50 keys" (https://docs.stripe.com/api/metadata).
                if m.len() > 50 {
                    return Err(ApiError::invalid(format!(
                        "Invalid {name}: metadata can have at most 50 keys."
                    ))
                    .param(name));
                }
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Param::Str(s) if s.is_empty() => {
                            out.insert(k, None);
                        }
                        Param::Str(s) => {
                            if k.len() > 40 || s.len() > 500 {
                                return Err(ApiError::invalid(format!(
                                    "Metadata keys can be at most 40 characters and values at most 500 characters ({name}[{k}])."
                                ))
                                .param(format!("{name}[{k}]")));
                            }
                            out.insert(k, Some(s));
                        }
                        _ => {
                            return Err(ApiError::invalid(format!(
                                "Invalid value for {name}[{k}]: metadata values must be strings"
                            ))
                            .param(format!("{name}[{k}]")))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(ApiError::invalid(format!("Invalid hash: {name}"))
                .code("parameter_invalid_hash")
                .param(name)),
        }
    }

    /// Fails on the first parameter nobody asked for, as Stripe does, including nested ones.
    pub fn finish(self) -> Result<(), ApiError> {
        for k in self.map.keys() {
            if !self.used.contains(k) {
                return Err(ApiError::unknown_param(&self.name(k)));
            }
        }
        Ok(())
    }
}

/// Apply a metadata update: a `metadata=` (empty map) clears all keys, `metadata[k]=` removes one.
pub fn apply_metadata(target: &mut Metadata, update: BTreeMap<String, Option<String>>) {
    if update.is_empty() {
        target.clear();
        return;
    }
    for (k, v) in update {
        match v {
            Some(v) => {
                target.insert(k, v);
            }
            None => {
                target.remove(&k);
            }
        }
    }
}

pub fn new_metadata(update: Option<BTreeMap<String, Option<String>>>) -> Metadata {
    let mut m = Metadata::new();
    if let Some(u) = update {
        apply_metadata(&mut m, u);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting() {
        let m = parse_form(
            b"items[0][price]=p1&items[1][price]=p2&items[0][quantity]=2&expand[]=a&expand[]=b&metadata[0]=z&sd[metadata][k]=v",
        );
        let mut p = Params::new(m);
        let items = p.list_of_maps("items").unwrap().unwrap();
        assert_eq!(items.len(), 2);
        let mut first = items.into_iter().next().unwrap();
        assert_eq!(first.req_str("price").unwrap(), "p1");
        assert_eq!(first.int("quantity").unwrap(), Some(2));
        assert_eq!(p.str_list("expand").unwrap().unwrap(), vec!["a", "b"]);
        let md = p.metadata("metadata").unwrap().unwrap();
        assert_eq!(md.get("0"), Some(&Some("z".to_string())));
        let mut sd = p.sub("sd").unwrap().unwrap();
        assert!(sd.metadata("metadata").unwrap().is_some());
        sd.finish().unwrap();
        p.finish().unwrap();
    }

    #[test]
    fn unknown_nested_is_named() {
        let mut p = Params::new(parse_form(b"recurring[interval]=month&recurring[bogus]=1"));
        let mut r = p.sub("recurring").unwrap().unwrap();
        r.str("interval").unwrap();
        let err = r.finish().unwrap_err();
        assert_eq!(err.param.as_deref(), Some("recurring[bogus]"));
    }
}
