//! `GET /api/docs`: the OpenAPI document rendered as a page, on the server (the pages run no script),
//! from the very document `/api/openapi.json` serves.

use super::html::{page, Chrome, Esc};
use super::html_response;
use crate::push_html;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};
use std::sync::LazyLock;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/docs", get(show))
}

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let doc: Value =
        serde_json::from_str(&crate::routes::openapi::DOCUMENT_JSON).expect("the document is JSON");
    render(&doc)
});

async fn show() -> Response {
    html_response(StatusCode::OK, PAGE.clone())
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The whole page: the introduction, the operations by tag, then the schemas.
pub fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let mut body = String::new();
    push_html!(
        body,
        "<h1>{}</h1><p class=\"sub\">Version {} · OpenAPI {} · <a href=\"/api/openapi.json\">openapi.json</a></p>",
        Esc(text(&info["title"])),
        Esc(text(&info["version"])),
        Esc(text(&doc["openapi"]))
    );
    body.push_str("<div class=\"card\">");
    for para in text(&info["description"]).split("\n\n") {
        push_html!(body, "<p>{}</p>", prose(para));
    }
    body.push_str("</div>");

    let empty = Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (text(&t["name"]), text(&t["description"])))
        .collect();

    // The index: every operation, grouped by tag, linking to its section.
    body.push_str(
        "<div class=\"card\"><h2>Operations</h2><div class=\"table-scroll\"><table><tbody>",
    );
    for (tag, _) in &tags {
        for (path, method, op) in operations(paths, tag) {
            push_html!(
                body,
                "<tr><td>{}</td><td><a href=\"#{}\"><code>{}</code></a></td><td>{}</td></tr>",
                method_badge(method),
                anchor(method, path),
                Esc(path),
                prose(text(&op["summary"]))
            );
        }
    }
    body.push_str("</tbody></table></div></div>");

    for (tag, description) in &tags {
        push_html!(
            body,
            "<h2 id=\"tag-{}\">{}</h2><p class=\"sub\">{}</p>",
            Esc(tag),
            Esc(tag),
            prose(description)
        );
        for (path, method, op) in operations(paths, tag) {
            operation(&mut body, path, method, op);
        }
    }

    body.push_str("<h2 id=\"schemas\">Schemas</h2>");
    let schemas = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    for (name, schema) in schemas {
        push_html!(
            body,
            "<div class=\"card\" id=\"schema-{}\"><h3>{}</h3>",
            Esc(name),
            Esc(name)
        );
        schema_body(&mut body, schema);
        body.push_str("</div>");
    }

    let chrome = Chrome {
        title: "API reference",
        user: None,
        admin_link: false,
    };
    page(&chrome, &body)
}

fn operations<'a>(
    paths: &'a Map<String, Value>,
    tag: &'a str,
) -> impl Iterator<Item = (&'a str, &'static str, &'a Value)> + 'a {
    paths.iter().flat_map(move |(path, item)| {
        METHODS.into_iter().filter_map(move |m| {
            let op = item.get(m)?;
            let tagged = op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == tag));
            tagged.then_some((path.as_str(), m, op))
        })
    })
}

fn operation(out: &mut String, path: &str, method: &str, op: &Value) {
    push_html!(
        out,
        "<div class=\"card\" id=\"{}\"><h3>{} <code>{}</code></h3><p><strong>{}</strong></p>",
        anchor(method, path),
        method_badge(method),
        Esc(path),
        prose(text(&op["summary"]))
    );
    for para in text(&op["description"])
        .split("\n\n")
        .filter(|p| !p.is_empty())
    {
        push_html!(out, "<p>{}</p>", prose(para));
    }
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    push_html!(
        out,
        "<p class=\"muted\">{}</p>",
        if secured {
            "Needs <code>Authorization: Bearer &lt;JWT&gt;</code>."
        } else {
            "No token needed."
        }
    );

    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "<h3>Parameters</h3><div class=\"table-scroll\"><table><thead><tr><th>name</th><th>in</th>\
             <th>type</th><th>required</th><th>description</th></tr></thead><tbody>",
        );
        for p in params {
            push_html!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Esc(text(&p["name"])),
                Esc(text(&p["in"])),
                type_html(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                prose(text(&p["description"]))
            );
        }
        out.push_str("</tbody></table></div>");
    }

    if let Some(content) = op["requestBody"]["content"].as_object() {
        out.push_str("<h3>Request body</h3>");
        if let Some(d) = op["requestBody"]["description"].as_str() {
            push_html!(out, "<p>{}</p>", prose(d));
        }
        for (media, c) in content {
            push_html!(
                out,
                "<p><code>{}</code>: {}</p>",
                Esc(media),
                type_html(&c["schema"])
            );
        }
    }

    out.push_str(
        "<h3>Responses</h3><div class=\"table-scroll\"><table><thead><tr><th>status</th><th>body</th>\
         <th>description</th></tr></thead><tbody>",
    );
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let bodies: Vec<String> = r["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(media, c)| {
                format!(
                    "{} <span class=\"muted\">{}</span>",
                    type_html(&c["schema"]),
                    Esc(media)
                )
            })
            .collect();
        push_html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(status),
            bodies.join("<br>"),
            prose(text(&r["description"]))
        );
    }
    out.push_str("</tbody></table></div></div>");
}

/// A component schema: its description, then its properties or its alternatives.
fn schema_body(out: &mut String, schema: &Value) {
    if let Some(d) = schema["description"].as_str() {
        push_html!(out, "<p>{}</p>", prose(d));
    }
    if let Some(props) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(
            "<div class=\"table-scroll\"><table><thead><tr><th>field</th><th>type</th><th>required</th>\
             <th>description</th></tr></thead><tbody>",
        );
        for (name, p) in props {
            push_html!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                Esc(name),
                type_html(p),
                if required.contains(&name.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                prose(text(&p["description"]))
            );
        }
        out.push_str("</tbody></table></div>");
    } else {
        push_html!(out, "<p>{}</p>", type_html(schema));
    }
}

/// A schema's type in a few words, with links to the named schemas it uses.
fn type_html(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", Esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = schema[key].as_array() {
            let joiner = if key == "allOf" { " and " } else { " or " };
            return alts.iter().map(type_html).collect::<Vec<_>>().join(joiner);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let mut words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!("array of {}", type_html(&schema["items"])),
            other => Esc(other).to_string(),
        })
        .collect();
    if words.is_empty() {
        words.push("any JSON".to_owned());
    }
    let mut s = words.join(" or ");
    if let Some(f) = schema["format"].as_str() {
        push_html!(s, " <span class=\"muted\">({})</span>", Esc(f));
    }
    if let Some(values) = schema["enum"].as_array() {
        let list: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", Esc(&v.to_string())))
            .collect();
        push_html!(s, ": one of {}", list.join(", "));
    }
    if let Some(p) = schema["pattern"].as_str() {
        push_html!(s, " matching <code>{}</code>", Esc(p));
    }
    s
}

fn method_badge(method: &str) -> String {
    let kind = if method == "get" { "info" } else { "good" };
    format!(
        "<span class=\"badge {kind}\">{}</span>",
        method.to_ascii_uppercase()
    )
}

/// An id for an operation's section, e.g. `post-api-usage-events`.
fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{}", slug.trim_end_matches('-'))
}

/// Escaped text in which `backticked` spans become code, as the descriptions write them.
fn prose(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            push_html!(out, "<code>{}</code>", Esc(part));
        } else {
            push_html!(out, "{}", Esc(part));
        }
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_escapes_and_marks_code() {
        assert_eq!(
            prose("send `<b>` & `x`"),
            "send <code>&lt;b&gt;</code> &amp; <code>x</code>"
        );
        assert_eq!(prose("no code"), "no code");
    }

    #[test]
    fn types_link_named_schemas_and_show_nullability() {
        let t = type_html(&serde_json::json!({"type": ["string", "null"], "format": "date-time"}));
        assert_eq!(t, "string or null <span class=\"muted\">(date-time)</span>");
        let t = type_html(
            &serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}),
        );
        assert_eq!(t, "array of <a href=\"#schema-Tenant\">Tenant</a>");
    }
}
