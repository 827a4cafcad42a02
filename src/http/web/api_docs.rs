//! `GET /api/docs`: the OpenAPI document rendered as a page, on the server (the pages run no script),
//! from the very document `/api/openapi.json` serves.

use super::html::{page, Chrome};
use super::html_response;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// `GET /api/docs` for `document`, the JSON `/api/openapi.json` serves (given by the router's assembly).
pub fn router(document: &'static str) -> Router<AppState> {
    Router::new().route("/api/docs", get(move || async move { response(document) }))
}

/// The page for `document`, rendered once and kept.
fn response(document: &str) -> Response {
    static PAGE: OnceLock<Markup> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let doc: Value = serde_json::from_str(document).expect("the document is JSON");
        render(&doc)
    });
    html_response(StatusCode::OK, page.clone())
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The whole page: the introduction, the operations by tag, then the schemas.
pub fn render(doc: &Value) -> Markup {
    let info = &doc["info"];
    let empty = Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (text(&t["name"]), text(&t["description"])))
        .collect();
    let schemas = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    let body = html! {
        h1 { (text(&info["title"])) }
        p class="sub" {
            "Version " (text(&info["version"])) " · OpenAPI " (text(&doc["openapi"])) " · "
            a href="/api/openapi.json" { "openapi.json" }
        }
        div class="card" {
            @for para in text(&info["description"]).split("\n\n") {
                p { (prose(para)) }
            }
        }
        // The index: every operation, grouped by tag, linking to its section.
        div class="card" {
            h2 { "Operations" }
            div class="table-scroll" {
                table {
                    tbody {
                        @for (tag, _) in &tags {
                            @for (path, method, op) in operations(paths, tag) {
                                tr {
                                    td { (method_badge(method)) }
                                    td { a href={ "#" (anchor(method, path)) } { code { (path) } } }
                                    td { (prose(text(&op["summary"]))) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @for (tag, description) in &tags {
            h2 id={ "tag-" (tag) } { (tag) }
            p class="sub" { (prose(description)) }
            @for (path, method, op) in operations(paths, tag) {
                (operation(path, method, op))
            }
        }
        h2 id="schemas" { "Schemas" }
        @for (name, schema) in schemas {
            div class="card" id={ "schema-" (name) } {
                h3 { (name) }
                (schema_body(schema))
            }
        }
    };
    let chrome = Chrome {
        title: "API reference",
        user: None,
        admin_link: false,
    };
    page(&chrome, body)
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

fn operation(path: &str, method: &str, op: &Value) -> Markup {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    html! {
        div class="card" id=(anchor(method, path)) {
            h3 { (method_badge(method)) " " code { (path) } }
            p { strong { (prose(text(&op["summary"]))) } }
            @for para in text(&op["description"]).split("\n\n").filter(|p| !p.is_empty()) {
                p { (prose(para)) }
            }
            p class="muted" {
                @if secured {
                    "Needs " code { "Authorization: Bearer <JWT>" } "."
                } @else {
                    "No token needed."
                }
            }
            @if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                h3 { "Parameters" }
                div class="table-scroll" {
                    table {
                        thead {
                            tr {
                                th { "name" }
                                th { "in" }
                                th { "type" }
                                th { "required" }
                                th { "description" }
                            }
                        }
                        tbody {
                            @for p in params {
                                tr {
                                    td { code { (text(&p["name"])) } }
                                    td { (text(&p["in"])) }
                                    td { (type_html(&p["schema"])) }
                                    td { (if p["required"] == true { "yes" } else { "no" }) }
                                    td { (prose(text(&p["description"]))) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(content) = op["requestBody"]["content"].as_object() {
                h3 { "Request body" }
                @if let Some(d) = op["requestBody"]["description"].as_str() {
                    p { (prose(d)) }
                }
                @for (media, c) in content {
                    p { code { (media) } ": " (type_html(&c["schema"])) }
                }
            }
            h3 { "Responses" }
            div class="table-scroll" {
                table {
                    thead { tr { th { "status" } th { "body" } th { "description" } } }
                    tbody {
                        @for (status, r) in op["responses"].as_object().into_iter().flatten() {
                            @let bodies = r["content"].as_object().into_iter().flatten();
                            tr {
                                td { (status) }
                                td {
                                    @for (i, (media, c)) in bodies.enumerate() {
                                        @if i > 0 { br; }
                                        (type_html(&c["schema"])) " " span class="muted" { (media) }
                                    }
                                }
                                td { (prose(text(&r["description"]))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A component schema: its description, then its properties or its alternatives.
fn schema_body(schema: &Value) -> Markup {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    html! {
        @if let Some(d) = schema["description"].as_str() {
            p { (prose(d)) }
        }
        @if let Some(props) = schema["properties"].as_object() {
            div class="table-scroll" {
                table {
                    thead { tr { th { "field" } th { "type" } th { "required" } th { "description" } } }
                    tbody {
                        @for (name, p) in props {
                            tr {
                                td { code { (name) } }
                                td { (type_html(p)) }
                                td { (if required.contains(&name.as_str()) { "yes" } else { "no" }) }
                                td { (prose(text(&p["description"]))) }
                            }
                        }
                    }
                }
            }
        } @else {
            p { (type_html(schema)) }
        }
    }
}

/// A schema's type in a few words, with links to the named schemas it uses.
fn type_html(schema: &Value) -> Markup {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = schema[key].as_array() {
            let joiner = if key == "allOf" { " and " } else { " or " };
            return html! {
                @for (i, alt) in alts.iter().enumerate() {
                    @if i > 0 { (joiner) }
                    (type_html(alt))
                }
            };
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    html! {
        @for (i, t) in types.iter().enumerate() {
            @if i > 0 { " or " }
            @if *t == "array" {
                "array of " (type_html(&schema["items"]))
            } @else {
                (t)
            }
        }
        @if types.is_empty() { "any JSON" }
        @if let Some(f) = schema["format"].as_str() {
            " " span class="muted" { "(" (f) ")" }
        }
        @if let Some(values) = schema["enum"].as_array() {
            ": one of "
            @for (i, v) in values.iter().enumerate() {
                @if i > 0 { ", " }
                code { (v.to_string()) }
            }
        }
        @if let Some(p) = schema["pattern"].as_str() {
            " matching " code { (p) }
        }
    }
}

fn method_badge(method: &str) -> Markup {
    let kind = if method == "get" { "info" } else { "good" };
    html! { span class={ "badge " (kind) } { (method.to_ascii_uppercase()) } }
}

/// An id for an operation's section, e.g. `post-api-usage-events`.
fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{}", slug.trim_end_matches('-'))
}

/// Text in which `backticked` spans become code, as the descriptions write them.
fn prose(s: &str) -> Markup {
    html! {
        @for (i, part) in s.split('`').enumerate() {
            @if i % 2 == 1 {
                code { (part) }
            } @else {
                (part)
            }
        }
    }
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
            prose("send `<b>` & `x`").into_string(),
            "send <code>&lt;b&gt;</code> &amp; <code>x</code>"
        );
        assert_eq!(prose("no code").into_string(), "no code");
    }

    #[test]
    fn types_link_named_schemas_and_show_nullability() {
        let t = type_html(&serde_json::json!({"type": ["string", "null"], "format": "date-time"}))
            .into_string();
        assert_eq!(t, "string or null <span class=\"muted\">(date-time)</span>");
        let t = type_html(
            &serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}),
        )
        .into_string();
        assert_eq!(t, "array of <a href=\"#schema-Tenant\">Tenant</a>");
    }
}
