//! Bar charts drawn as SVG on the server: no script, nothing to load, readable by screen readers through
//! the title and description. Values are integers (cents or counts); only coordinates are floats.

use super::html::Esc;
use crate::push_html;

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
) -> String {
    let max = bars
        .iter()
        .map(|b| b.values.iter().map(|v| (*v).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let top_value = nice_ceiling(max.max(min_top));
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_of = |v: i64| TOP + plot_h - (v as f64 / top_value as f64) * plot_h;

    let mut out = String::new();
    push_html!(
        out,
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        Esc(title),
        Esc(description)
    );
    // Four grid lines with their values.
    for step in 0..=4 {
        let v = top_value * step / 4;
        let y = y_of(v);
        push_html!(
            out,
            "<line class=\"{}\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            if step == 0 { "axis" } else { "grid-line" },
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            Esc(&axis(v))
        );
    }
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.62).max(2.0);
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0i64;
        for (s, v) in bar.values.iter().enumerate() {
            let v = (*v).max(0);
            if v > 0 {
                let (y_top, y_bottom) = (y_of(base + v), y_of(base));
                push_html!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y_top:.1}\" width=\"{bar_w:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                    (y_bottom - y_top).max(0.5),
                    COLOURS[s % COLOURS.len()]
                );
            }
            base += v;
        }
        push_html!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + bar_w / 2.0,
            HEIGHT - 8.0,
            Esc(&bar.label)
        );
    }
    out.push_str("</svg>");
    out
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
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("Revenue &lt;by month&gt;"));
    }
}
