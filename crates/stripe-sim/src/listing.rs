//! Stripe's list and search language: list pages with their cursors and `created` filters, and
//! search queries, kept apart from the state so every resource reads them the same way and the
//! paging rules live in one place.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::form::Params;

/// Reads `created` (an integer or a `gt/gte/lt/lte` hash) as a filter.
pub fn created_filter(p: &mut Params) -> Result<Box<dyn Fn(i64) -> bool>, ApiError> {
    if !p.has("created") {
        return Ok(Box::new(|_| true));
    }
    if let Some(mut sub) = p.sub("created").ok().flatten() {
        let gt = sub.int("gt")?;
        let gte = sub.int("gte")?;
        let lt = sub.int("lt")?;
        let lte = sub.int("lte")?;
        sub.finish()?;
        return Ok(Box::new(move |c| {
            gt.is_none_or(|v| c > v)
                && gte.is_none_or(|v| c >= v)
                && lt.is_none_or(|v| c < v)
                && lte.is_none_or(|v| c <= v)
        }));
    }
    let exact = p.int("created")?;
    Ok(Box::new(move |c| exact.is_none_or(|v| c == v)))
}

pub fn read_limit(p: &mut Params) -> Result<usize, ApiError> {
    match p.int("limit")? {
        None => Ok(10),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "Invalid limit: must be between 1 and 100 (got {n})"
        ))
        .param("limit")),
    }
}

/// A Stripe list object over `items` (newest first), honouring `limit`, `starting_after`
/// and `ending_before`. `items` is read lazily: only up to the page (and the cursor) is walked,
/// and only the returned page is rendered.
pub fn list_page<'a, T>(
    items: impl Iterator<Item = (&'a str, T)>,
    p: &mut Params,
    url: &str,
    render: impl Fn(&T) -> Value,
) -> Result<Value, ApiError> {
    let limit = read_limit(p)?;
    let after = p.opt_nonempty("starting_after")?;
    let before = p.opt_nonempty("ending_before")?;
    let missing = |cursor: &str, param: &str| {
        ApiError::invalid(format!("No such object: '{cursor}'"))
            .status(404)
            .code("resource_missing")
            .param(param)
    };
    let mut items = items;
    let (page, has_more): (Vec<T>, bool) = if let Some(cursor) = after {
        if !items.by_ref().any(|(id, _)| id == cursor) {
            return Err(missing(&cursor, "starting_after"));
        }
        let mut page: Vec<T> = items.by_ref().take(limit + 1).map(|(_, v)| v).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    } else if let Some(cursor) = before {
        let mut window: std::collections::VecDeque<T> = std::collections::VecDeque::new();
        let mut found = false;
        let mut seen = 0usize;
        for (id, v) in items.by_ref() {
            if id == cursor {
                found = true;
                break;
            }
            seen += 1;
            window.push_back(v);
            if window.len() > limit {
                window.pop_front();
            }
        }
        if !found {
            return Err(missing(&cursor, "ending_before"));
        }
        (window.into_iter().collect(), seen > limit)
    } else {
        let mut page: Vec<T> = items.by_ref().take(limit + 1).map(|(_, v)| v).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    };
    let data: Vec<Value> = page.iter().map(render).collect();
    Ok(json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

/// One clause of Stripe's search query language: `field:'v'`, `metadata['k']:'v'`,
/// `field~'sub'`, `field>n`, optionally negated with a leading `-`.
#[derive(Debug)]
struct Clause {
    path: Vec<String>,
    op: String,
    value: String,
    negate: bool,
}

fn parse_clause(s: &str) -> Result<Clause, ApiError> {
    let bad = || ApiError::invalid(format!("Invalid search query: {s}")).param("query");
    let mut s = s.trim();
    let negate = s.starts_with('-');
    if negate {
        s = &s[1..];
    }
    let op_pos = s.find([':', '~', '>', '<']).ok_or_else(bad)?;
    let field = &s[..op_pos];
    let mut rest = &s[op_pos..];
    let op = if rest.starts_with(">=") || rest.starts_with("<=") {
        let o = &rest[..2];
        rest = &rest[2..];
        o
    } else {
        let o = &rest[..1];
        rest = &rest[1..];
        o
    };
    let value = rest
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_string();
    let path = if let Some(inner) = field.strip_prefix("metadata[") {
        let key = inner
            .trim_end_matches(']')
            .trim_matches(|c| c == '\'' || c == '"');
        vec!["metadata".to_string(), key.to_string()]
    } else {
        vec![field.trim().to_string()]
    };
    Ok(Clause {
        path,
        op: op.to_string(),
        value,
        negate,
    })
}

fn clause_matches(c: &Clause, obj: &Value) -> bool {
    let mut v = obj;
    for seg in &c.path {
        v = v.get(seg).unwrap_or(&Value::Null);
    }
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let hit = match c.op.as_str() {
        ":" => {
            if c.path[0] == "email" || c.path[0] == "name" {
                text.eq_ignore_ascii_case(&c.value)
            } else {
                text == c.value
            }
        }
        "~" => text.to_lowercase().contains(&c.value.to_lowercase()),
        op => match (text.parse::<f64>(), c.value.parse::<f64>()) {
            (Ok(a), Ok(b)) => match op {
                ">" => a > b,
                "<" => a < b,
                ">=" => a >= b,
                _ => a <= b,
            },
            _ => false,
        },
    };
    hit != c.negate
}

/// A parsed search query: clauses joined by AND (`any == false`) or by OR.
#[derive(Debug)]
pub struct Query {
    clauses: Vec<Clause>,
    any: bool,
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, ApiError> {
        let (sep, any) = if query.contains(" OR ") {
            (" OR ", true)
        } else {
            (" AND ", false)
        };
        let clauses = query
            .split(sep)
            .map(parse_clause)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Query { clauses, any })
    }

    pub fn matches(&self, v: &Value) -> bool {
        if self.any {
            self.clauses.iter().any(|c| clause_matches(c, v))
        } else {
            self.clauses.iter().all(|c| clause_matches(c, v))
        }
    }

    /// A table key every hit must be listed under, when the query has one: a required
    /// `metadata['k']:'v'` (or, where `email` is indexed, `email:'v'`) clause. Searching then
    /// reads only the rows under that key instead of every row.
    pub fn index_key(&self, email_indexed: bool) -> Option<(&'static str, String)> {
        if self.any && self.clauses.len() > 1 {
            return None;
        }
        self.clauses.iter().find_map(|c| {
            if c.negate || c.op != ":" {
                return None;
            }
            match c.path.as_slice() {
                [m, k] if m == "metadata" => {
                    Some(("metadata", crate::model::meta_key(k, &c.value)))
                }
                [f] if f == "email" && email_indexed => {
                    Some(("email", c.value.to_ascii_lowercase()))
                }
                _ => None,
            }
        })
    }
}

/// A search result page over `hits` (every match, newest first).
pub fn search_result(hits: Vec<Value>, p: &mut Params, url: &str) -> Result<Value, ApiError> {
    let limit = read_limit(p)?;
    let page: usize = p
        .opt_nonempty("page")?
        .and_then(|s| s.strip_prefix("page_").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let start = page * limit;
    let total = hits.len();
    let has_more = total > start + limit;
    let data: Vec<Value> = hits.into_iter().skip(start).take(limit).collect();
    Ok(json!({
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": if has_more { json!(format!("page_{}", page + 1)) } else { Value::Null },
        "total_count": total,
        "url": url,
    }))
}
