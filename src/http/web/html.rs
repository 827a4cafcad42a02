//! HTML building blocks: the page layout, notices, badges, and formatting of money, dates and statuses.
//!
//! The pages are `maud::html!` templates: every value spliced in is escaped unless it is itself
//! `Markup`, so safety does not depend on each call site remembering to escape, and the compiler checks
//! the markup's structure. The stylesheet and the icon stay constants: they are files, not assembled.

use crate::domain::Cents;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

/// What the layout needs to know about the signed-in user, for the header.
pub struct Chrome<'a> {
    pub title: &'a str,
    /// Who is signed in and the CSRF token for the sign-out form; none on the sign-in pages.
    pub user: Option<(&'a str, &'a str)>,
    /// Whether to link the admin page in the header.
    pub admin_link: bool,
}

/// A whole page: the shared header, then `body`.
pub fn page(chrome: &Chrome<'_>, body: Markup) -> Markup {
    page_refreshing(chrome, None, body)
}

/// A page that reloads itself every `refresh` seconds (a page watching a run: our CSP allows no script,
/// and a meta refresh needs none).
pub fn page_refreshing(chrome: &Chrome<'_>, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (chrome.title) " · Thanotopolis Billing" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/billing.css";
            }
            body {
                header class="top" {
                    div class="wrap top-row" {
                        a class="brand" href="/billing" {
                            span class="logo" aria-hidden="true" { "T" }
                            "Thanotopolis "
                            span class="muted" { "Billing" }
                        }
                        @if let Some((who, csrf)) = chrome.user {
                            nav aria-label="Account" {
                                @if chrome.admin_link {
                                    a href="/admin/billing" { "Admin" }
                                }
                                span class="who" { (who) }
                                form method="post" action="/auth/logout" class="inline" {
                                    (csrf_field(csrf))
                                    button type="submit" class="link" id="sign-out" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main class="wrap" id="main" { (body) }
                footer class="wrap foot muted" {
                    "Amounts in US dollars. Payments are processed by Stripe."
                }
            }
        }
    }
}

/// A notice box: `kind` is `ok`, `warn`, `error` or `info`.
pub fn notice(kind: &str, id: &str, text: &str) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! {
        div class={ "notice " (kind) } id=(id) role=(role) { (text) }
    }
}

/// A date in the billing time zone, e.g. `Mar 5, 2026`.
pub fn date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%b %-d, %Y").to_string()
}

pub fn date_opt(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map(|t| date(t, tz)).unwrap_or_else(|| "—".to_owned())
}

/// A date and time in the billing time zone, e.g. `Mar 5, 2026 14:03`.
pub fn date_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%b %-d, %Y %H:%M").to_string()
}

/// A count with thousands separators.
pub fn count(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", crate::domain::group_thousands(n.unsigned_abs()))
}

pub fn money(c: i64) -> String {
    Cents(c).to_string()
}

/// A status badge (Stripe's subscription and invoice statuses), with words a person reads.
pub fn badge(status: &str) -> Markup {
    use crate::domain::SubscriptionStatus as S;
    use crate::stripe::InvoiceStatus as I;
    let sub = S::parse(status);
    let class = match (sub, I::parse(status)) {
        (S::Active, _) | (_, Some(I::Paid)) => "good",
        (S::Trialing, _) => "info",
        (S::PastDue | S::Unpaid, _) | (_, Some(I::Uncollectible)) => "bad",
        (S::Incomplete, _) | (_, Some(I::Open | I::Draft)) => "warn",
        _ => "neutral",
    };
    let label = if sub == S::Trialing {
        "trial".to_owned()
    } else {
        status.replace('_', " ")
    };
    html! { span class={ "badge " (class) } { (label) } }
}

/// Above a table that is wider than a phone: says it scrolls (shown on narrow screens only).
pub fn scroll_hint() -> Markup {
    html! { p class="scroll-hint" aria-hidden="true" { "Scroll the table sideways for more →" } }
}

/// A hidden CSRF field for a form.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The stylesheet every page links (served from `/assets/billing.css`, so the CSP needs no inline styles).
pub const CSS: &str = r#":root{--bg:#f6f7f9;--card:#fff;--ink:#1b1f24;--muted:#5b6470;--line:#e2e5ea;--accent:#2f4fd8;--accent-ink:#fff;--good:#136c3a;--good-bg:#e3f4ea;--bad:#a4161a;--bad-bg:#fbe5e6;--warn:#7a4d00;--warn-bg:#fff2d6;--info:#1f4c9a;--info-bg:#e3ecfb}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
a{color:var(--accent)}
.wrap{max-width:1080px;margin:0 auto;padding:0 16px}
.top{background:var(--card);border-bottom:1px solid var(--line)}
.top-row{display:flex;align-items:center;justify-content:space-between;gap:12px;min-height:56px;flex-wrap:wrap}
.brand{display:flex;align-items:center;gap:8px;font-weight:650;color:var(--ink);text-decoration:none}
.logo{display:inline-grid;place-items:center;width:28px;height:28px;border-radius:7px;background:var(--accent);color:#fff;font-weight:700}
nav{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
.who{color:var(--muted);font-size:14px;overflow-wrap:anywhere}
main.wrap{padding-top:28px;padding-bottom:28px}
h1{font-size:26px;line-height:1.2;margin:0 0 4px}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:0 0 8px}
.sub{color:var(--muted);margin:0 0 20px}
.muted{color:var(--muted)}
.grid{display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));margin-bottom:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px;margin-bottom:16px;min-width:0}
.grid .card{margin-bottom:0}
.price{font-size:34px;font-weight:700;margin:4px 0}
.price small{font-size:15px;font-weight:400;color:var(--muted)}
ul.features{padding-left:20px;margin:8px 0 16px}
ul.features li{margin:4px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:0 0 16px}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;font-weight:550}
.kpis{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));margin-bottom:16px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;min-width:0}
.kpi .label{color:var(--muted);font-size:13px}
.kpi .value{font-size:24px;font-weight:700;margin-top:2px;font-variant-numeric:tabular-nums;overflow-wrap:anywhere;line-height:1.25}
a.kpi-link{display:block;color:var(--ink);text-decoration:none}
a.kpi-link:hover{border-color:var(--accent)}
.kpi .more{font-size:13px;color:var(--accent);text-decoration:underline;margin-top:2px}
/* Wide tables scroll inside their card; shadows at an edge say there is more that way (the covers scroll
   with the content, the shadows stay), and the scrollbar stays visible. */
.table-scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;scrollbar-width:thin;scrollbar-color:#8a93a0 #eceef2;background:linear-gradient(to right,var(--card) 40%,rgba(255,255,255,0)) left/32px 100% no-repeat local,linear-gradient(to left,var(--card) 40%,rgba(255,255,255,0)) right/32px 100% no-repeat local,radial-gradient(farthest-side at 0 50%,rgba(27,31,36,.3),rgba(27,31,36,0)) left/14px 100% no-repeat scroll,radial-gradient(farthest-side at 100% 50%,rgba(27,31,36,.3),rgba(27,31,36,0)) right/14px 100% no-repeat scroll}
.scroll-hint{display:none;font-size:13px;color:var(--muted);margin:0 0 6px}
table{width:100%;border-collapse:collapse;font-size:14px}
th,td{text-align:left;padding:9px 10px;border-bottom:1px solid var(--line);vertical-align:middle}
th{color:var(--muted);font-weight:600;font-size:13px;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:last-child td{border-bottom:0}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12.5px;font-weight:600;white-space:nowrap;background:#eceef2;color:#39414c}
.badge.good{background:var(--good-bg);color:var(--good)}.badge.bad{background:var(--bad-bg);color:var(--bad)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}.badge.info{background:var(--info-bg);color:var(--info)}
.notice{border-radius:10px;padding:12px 14px;margin-bottom:16px;border:1px solid transparent}
.notice.ok{background:var(--good-bg);color:var(--good);border-color:#bfe3cd}
.notice.error{background:var(--bad-bg);color:var(--bad);border-color:#f1c1c3}
.notice.warn{background:var(--warn-bg);color:var(--warn);border-color:#f3dca8}
.notice.info{background:var(--info-bg);color:var(--info);border-color:#c6d7f5}
form{margin:0}
form.inline{display:inline}
.actions{display:flex;gap:10px;flex-wrap:wrap;align-items:center}
label{display:block;font-weight:600;font-size:14px;margin-bottom:4px}
.check{display:flex;align-items:center;gap:8px;font-weight:500}
input[type=text],input[type=number],textarea{width:100%;max-width:100%;padding:9px 11px;border:1px solid #c5cad3;border-radius:8px;font:inherit;background:#fff;color:var(--ink)}
textarea{min-height:120px;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
/* The focus ring is the accent, #2f4fd8: 6.5:1 against white, 6.1:1 against the page's #f6f7f9; the
   offset keeps a gap of the background between it and a filled button. */
input:focus-visible,textarea:focus-visible,select:focus-visible,button:focus-visible,a:focus-visible,.table-scroll:focus-visible{outline:3px solid #2f4fd8;outline-offset:2px}
.field{margin-bottom:12px}
.hint{color:var(--muted);font-size:13px;margin-top:4px}
button,.button{display:inline-block;border:1px solid var(--accent);background:var(--accent);color:var(--accent-ink);padding:9px 16px;border-radius:8px;font:inherit;font-weight:600;cursor:pointer;text-decoration:none;line-height:1.3}
button.secondary,.button.secondary{background:#fff;color:var(--accent)}
button.danger,.button.danger{background:var(--bad);border-color:var(--bad);color:#fff}
button.danger-outline,.button.danger-outline{background:#fff;border-color:var(--bad);color:var(--bad)}
button.small,.button.small{padding:5px 10px;font-size:13px;white-space:nowrap}
td.when,td.nowrap{white-space:nowrap}
#run-form{margin-bottom:16px}
button.link{background:none;border:0;color:var(--accent);padding:0;font-weight:500;text-decoration:underline}
.row-form{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-end}
.row-form .field{margin:0;flex:1 1 160px}
.chart{width:100%;height:auto;display:block}
.chart .axis{stroke:#c5cad3}.chart .grid-line{stroke:#edf0f3}
.chart text{fill:#5b6470;font-size:12px}
.chart text.bar-value{fill:#1b1f24;font-weight:600}
.chart-narrow{display:none}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:13px;color:var(--muted);margin-top:6px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:middle}
.swatch.s0{background:#2f4fd8}.swatch.s1{background:#1fa67a}
.foot{font-size:13px;padding-bottom:24px}
.narrow{max-width:560px}
.crumbs{margin:0 0 8px;font-size:14px}
.run-error{color:var(--bad);font-size:13px;margin-top:4px;max-width:260px;overflow-wrap:anywhere}
.payment-flag{margin-top:4px}
.payment-flag a{display:block;font-size:13px}
.confirm-summary{font-size:20px;font-weight:650;margin:0 0 12px}
.confirm-actions{margin-top:16px}
.bad-text{color:var(--bad)}
ul.lines{margin:0;padding-left:18px}
@media (max-width:760px){.scroll-hint{display:block}}
@media (max-width:600px){main.wrap{padding-top:20px}.kpis{grid-template-columns:repeat(2,minmax(0,1fr))}.kpi{padding:12px}.kpi .value{font-size:19px}.chart-wide{display:none}.chart-narrow{display:block}}
@media (max-width:600px){h1{font-size:22px}.card{padding:16px}.price{font-size:28px}main{padding-top:16px}}
/* billing page: the failed-payment banner's actions, and a form field's own error */
.billing-alert .actions{margin-top:10px}
.field.invalid input{border-color:var(--bad)}
.field-error{color:var(--bad);font-size:13px;font-weight:600;margin-top:4px}
"#;

/// The favicon: the logo's letter on the accent colour (without it browsers log a 404 on every page).
pub const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2f4fd8"/><text x="16" y="23" font-family="Arial,sans-serif" font-size="20" font-weight="700" text-anchor="middle" fill="#fff">T</text></svg>"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        assert_eq!(
            notice("error", "e", r#"<a href="x">'&'</a>"#).into_string(),
            "<div class=\"notice error\" id=\"e\" role=\"alert\">&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;</div>"
        );
        assert_eq!(
            csrf_field("\"><b>").into_string(),
            "<input type=\"hidden\" name=\"csrf\" value=\"&quot;&gt;&lt;b&gt;\">"
        );
        assert_eq!(
            badge("past_due").into_string(),
            "<span class=\"badge bad\">past due</span>"
        );
    }

    #[test]
    fn counts_and_money_read_well() {
        assert_eq!(count(12345), "12,345");
        assert_eq!(count(-5), "-5");
        assert_eq!(money(29_900), "$299.00");
    }
}
