//! Bar charts drawn as SVG on the server: no script, nothing to load, readable by screen readers through
//! the title and description. Values are integers (cents or counts); only coordinates are floats.

use crate::domain::{group_thousands, Cents};
use maud::{html, Markup};

// The wide drawing (a column chart), in SVG units; it scales with its card.
const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
/// Room above the tallest bar for its value.
const TOP: f64 = 22.0;
const BOTTOM: f64 = 26.0;
// The narrow drawing (bars across, one row per label): on a phone the wide one would scale its text
// down to about 6 px, and twelve columns leave no room for values.
const N_WIDTH: f64 = 360.0;
const N_LABEL: f64 = 58.0;
/// Room right of the longest bar for its value, written in full.
const N_VALUE: f64 = 92.0;
const N_ROW: f64 = 26.0;
const N_PAD: f64 = 4.0;
/// Fill colours of the stacked series, in order (match `.swatch.s0`, `.swatch.s1` in the stylesheet).
const COLOURS: [&str; 2] = ["#2f4fd8", "#1fa67a"];

/// One bar: its label and the value of each series, stacked bottom-up.
pub struct Bar {
    pub label: String,
    pub values: Vec<i64>,
}

/// What the values count, which decides how they are written.
#[derive(Clone, Copy)]
pub enum Scale {
    /// Cents, written as dollars.
    Cents,
    /// A plain count (words, calls).
    Count,
}

impl Scale {
    /// In full: `$1,234.56`, `12,345`.
    fn full(self, v: i64) -> String {
        match self {
            Scale::Cents => Cents(v).to_string(),
            Scale::Count => crate::http::web::html::count(v),
        }
    }

    /// An axis tick (round numbers): `$500`, `20,000`.
    fn tick(self, v: i64) -> String {
        match self {
            Scale::Cents => {
                let s = Cents(v).to_string();
                s.strip_suffix(".00").map(str::to_owned).unwrap_or(s)
            }
            Scale::Count => crate::http::web::html::count(v),
        }
    }

    /// Short enough to sit above a column: `$299`, `$1.2k`, `950`, `14k`, `1.2M`. Rounded half up,
    /// in integers (no float near an amount).
    fn short(self, v: i64) -> String {
        let v = v.max(0);
        match self {
            Scale::Cents => format!("${}", short_number((v + 50) / 100)),
            Scale::Count => short_number(v),
        }
    }
}

/// 999 → `999`; 1,250 → `1.3k`; 14,345 → `14k`; 2,500,000 → `2.5M`.
fn short_number(n: i64) -> String {
    let scaled = |n: i64, unit: i64, suffix: &str| {
        if n < 10 * unit {
            // One decimal, rounded half up.
            let tenths = (n * 10 + unit / 2) / unit;
            if tenths % 10 == 0 {
                format!("{}{suffix}", tenths / 10)
            } else {
                format!("{}.{}{suffix}", tenths / 10, tenths % 10)
            }
        } else {
            format!(
                "{}{suffix}",
                group_thousands(((n + unit / 2) / unit) as u64)
            )
        }
    };
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        scaled(n, 1_000, "k")
    } else {
        scaled(n, 1_000_000, "M")
    }
}

/// A stacked bar chart, drawn twice: columns for wide screens and bars across for phones (the
/// stylesheet shows one), each bar with its value. The axis reaches at least `min_top` (so an empty
/// chart of dollars does not count in cents).
pub fn bars(
    id: &str,
    title: &str,
    description: &str,
    bars: &[Bar],
    min_top: i64,
    scale: Scale,
) -> Markup {
    let total = |b: &Bar| b.values.iter().map(|v| (*v).max(0)).sum::<i64>();
    let max = bars.iter().map(total).max().unwrap_or(0);
    let top_value = nice_ceiling(max.max(min_top));
    html! {
        (columns(id, title, description, bars, top_value, scale))
        (rows(&format!("{id}-narrow"), title, description, bars, top_value, scale))
    }
}

/// The wide drawing: a column per bar, the value above it, four grid lines with their values.
fn columns(
    id: &str,
    title: &str,
    description: &str,
    bars: &[Bar],
    top_value: i64,
    scale: Scale,
) -> Markup {
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_of = |v: i64| TOP + plot_h - (v as f64 / top_value as f64) * plot_h;

    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.62).max(2.0);
    html! {
        svg class="chart chart-wide" id=(id) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (description) }
            // Grid lines at whole values, with their values. SVG elements are closed explicitly: in HTML a `<line>`
            // without `/>` or `</line>` would swallow the elements after it.
            @let steps = grid_steps(top_value);
            @for step in 0..=steps {
                @let v = top_value * step / steps;
                @let y = y_of(v);
                line class=(if step == 0 { "axis" } else { "grid-line" }) x1=(LEFT) x2=(WIDTH - RIGHT)
                    y1=(f1(y)) y2=(f1(y)) {}
                text x=(LEFT - 6.0) y=(f1(y + 4.0)) text-anchor="end" { (scale.tick(v)) }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                @let sum: i64 = bar.values.iter().map(|v| (*v).max(0)).sum();
                @for (s, base, v) in stacked(&bar.values) {
                    @let (y_top, y_bottom) = (y_of(base + v), y_of(base));
                    rect x=(f1(x)) y=(f1(y_top)) width=(f1(bar_w)) height=(f1((y_bottom - y_top).max(0.5)))
                        fill=(COLOURS[s % COLOURS.len()]) {}
                }
                @if sum > 0 {
                    text class="bar-value" x=(f1(x + bar_w / 2.0)) y=(f1(y_of(sum) - 5.0))
                        text-anchor="middle" { (scale.short(sum)) }
                }
                text x=(f1(x + bar_w / 2.0)) y=(f1(HEIGHT - 8.0)) text-anchor="middle" { (bar.label) }
            }
        }
    }
}

/// The narrow drawing: a row per bar, its label on the left and its value in full after the bar.
fn rows(
    id: &str,
    title: &str,
    description: &str,
    bars: &[Bar],
    top_value: i64,
    scale: Scale,
) -> Markup {
    let height = N_PAD * 2.0 + N_ROW * bars.len().max(1) as f64;
    let plot_w = N_WIDTH - N_LABEL - N_VALUE;
    let x_of = |v: i64| N_LABEL + (v as f64 / top_value as f64) * plot_w;
    let bar_h = N_ROW * 0.62;
    html! {
        svg class="chart chart-narrow" id=(id) viewBox={ "0 0 " (N_WIDTH) " " (f1(height)) } role="img"
            aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (description) }
            line class="axis" x1=(N_LABEL) x2=(N_LABEL) y1=(N_PAD) y2=(f1(height - N_PAD)) {}
            @for (i, bar) in bars.iter().enumerate() {
                @let y = N_PAD + N_ROW * i as f64 + (N_ROW - bar_h) / 2.0;
                @let sum: i64 = bar.values.iter().map(|v| (*v).max(0)).sum();
                text x=(N_LABEL - 8.0) y=(f1(y + bar_h / 2.0 + 4.5)) text-anchor="end" { (bar.label) }
                @for (s, base, v) in stacked(&bar.values) {
                    @let (x0, x1) = (x_of(base), x_of(base + v));
                    rect x=(f1(x0)) y=(f1(y)) width=(f1((x1 - x0).max(0.5))) height=(f1(bar_h))
                        fill=(COLOURS[s % COLOURS.len()]) {}
                }
                text class="bar-value" x=(f1(x_of(sum) + 6.0)) y=(f1(y + bar_h / 2.0 + 4.5)) {
                    (scale.full(sum))
                }
            }
        }
    }
}

/// The positive values of a bar with their series index and the value they stack on.
fn stacked(values: &[i64]) -> Vec<(usize, i64, i64)> {
    let mut base = 0i64;
    let mut out = Vec::with_capacity(values.len());
    for (s, v) in values.iter().enumerate() {
        let v = (*v).max(0);
        if v > 0 {
            out.push((s, base, v));
        }
        base += v;
    }
    out
}

/// A coordinate with one decimal: enough for a drawing some hundreds of units wide, and short.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// How many equal steps divide the axis into whole values (10 → 0, 2, 4, 6, 8, 10; not 0, 2, 5, 7, 10).
fn grid_steps(top: i64) -> i64 {
    [5, 4, 2, 1].into_iter().find(|s| top % s == 0).unwrap_or(1)
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `v`; at least 1.
fn nice_ceiling(v: i64) -> i64 {
    let v = v.max(1);
    let mut magnitude = 1i64;
    while magnitude.saturating_mul(10) <= v {
        magnitude *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(29_900), 50_000);
        assert_eq!(nice_ceiling(100), 100);
        assert_eq!(nice_ceiling(101), 200);
        // Every grid line at a whole value.
        for top in [1, 2, 5, 10, 20, 50, 10_000, 50_000] {
            let steps = grid_steps(top);
            assert_eq!(top % steps, 0, "{top}");
        }
        assert_eq!(grid_steps(10), 5);
        assert_eq!(grid_steps(2), 2);
        assert_eq!(grid_steps(1), 1);
    }

    #[test]
    fn short_values_round_half_up_in_integers() {
        assert_eq!(short_number(999), "999");
        assert_eq!(short_number(1_000), "1k");
        assert_eq!(short_number(1_250), "1.3k");
        assert_eq!(short_number(14_345), "14k");
        assert_eq!(short_number(2_500_000), "2.5M");
        assert_eq!(Scale::Cents.short(29_900), "$299");
        assert_eq!(Scale::Cents.short(123_456), "$1.2k");
        assert_eq!(Scale::Cents.full(123_456), "$1,234.56");
        assert_eq!(Scale::Cents.tick(50_000), "$500");
    }

    #[test]
    fn draws_one_rect_per_nonzero_value_and_escapes_labels() {
        let svg = bars(
            "c",
            "Revenue <by month>",
            "d",
            &[
                Bar {
                    label: "Jan".into(),
                    values: vec![100, 50],
                },
                Bar {
                    label: "Feb".into(),
                    values: vec![0, 0],
                },
            ],
            1,
            Scale::Count,
        )
        .into_string();
        // Two nonzero values, drawn once as columns and once across.
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("Revenue &lt;by month&gt;"));
        // The bar's value: short above the column, in full after the row; none for the empty bar's column.
        assert_eq!(svg.matches("class=\"bar-value\"").count(), 3, "{svg}");
        assert!(svg.contains(">150</text>"));
    }
}
