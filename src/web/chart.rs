//! Bar charts drawn as SVG on the server: no script, nothing to load, readable by screen readers through
//! the title and description. Values are integers (cents or counts); only coordinates are floats.

use maud::{html, Markup};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;
/// Fill colours of the stacked series, in order (match `.swatch.s0`, `.swatch.s1` in the stylesheet).
const COLOURS: [&str; 2] = ["#2f4fd8", "#1fa67a"];

/// One bar: its label and the value of each series, stacked bottom-up.
pub struct Bar {
    pub label: String,
    pub values: Vec<i64>,
}

/// A stacked bar chart. `axis` formats a value for the axis labels (e.g. cents as dollars); the axis
/// reaches at least `min_top` (so an empty chart of dollars does not count in cents).
pub fn bars(
    id: &str,
    title: &str,
    description: &str,
    bars: &[Bar],
    min_top: i64,
    axis: impl Fn(i64) -> String,
) -> Markup {
    let max = bars
        .iter()
        .map(|b| b.values.iter().map(|v| (*v).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let top_value = nice_ceiling(max.max(min_top));
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_of = |v: i64| TOP + plot_h - (v as f64 / top_value as f64) * plot_h;

    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.62).max(2.0);
    html! {
        svg class="chart" id=(id) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-labelledby={ (id) "-title " (id) "-desc" } xmlns="http://www.w3.org/2000/svg" {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (description) }
            // Four grid lines with their values. SVG elements are closed explicitly: in HTML a `<line>`
            // without `/>` or `</line>` would swallow the elements after it.
            @for step in 0..=4 {
                @let v = top_value * step / 4;
                @let y = y_of(v);
                line class=(if step == 0 { "axis" } else { "grid-line" }) x1=(LEFT) x2=(WIDTH - RIGHT)
                    y1=(f1(y)) y2=(f1(y)) {}
                text x=(LEFT - 6.0) y=(f1(y + 4.0)) text-anchor="end" { (axis(v)) }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                @for (s, base, v) in stacked(&bar.values) {
                    @let (y_top, y_bottom) = (y_of(base + v), y_of(base));
                    rect x=(f1(x)) y=(f1(y_top)) width=(f1(bar_w)) height=(f1((y_bottom - y_top).max(0.5)))
                        fill=(COLOURS[s % COLOURS.len()]) {}
                }
                text x=(f1(x + bar_w / 2.0)) y=(f1(HEIGHT - 8.0)) text-anchor="middle" { (bar.label) }
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

/// A coordinate with one decimal: enough for a 640-unit-wide drawing, and short.
fn f1(v: f64) -> String {
    format!("{v:.1}")
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
            |v| v.to_string(),
        )
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("Revenue &lt;by month&gt;"));
    }
}
