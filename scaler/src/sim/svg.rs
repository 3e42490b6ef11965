//! The chart of one run: queue depth and capacity over time, as hand-written SVG.

use std::fmt::Write as _;

use super::outcome::{Outcome, Sample};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = WIDTH - 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = HEIGHT - 84.0;

/// The series drawn, in legend order: label, colour, width, dash pattern, value.
type Series = (
    &'static str,
    &'static str,
    f64,
    Option<&'static str>,
    fn(&Sample) -> u64,
);

const SERIES: [Series; 4] = [
    ("queue (visible)", "#1f77b4", 2.0, None, |s| s.visible),
    ("in flight", "#9467bd", 1.5, None, |s| s.in_flight),
    ("target capacity", "#ff7f0e", 2.0, Some("6 4"), |s| {
        u64::from(s.target)
    }),
    ("instances (booting included)", "#2ca02c", 2.0, None, |s| {
        u64::from(s.instances)
    }),
];

/// An SVG document charting `outcome`'s samples, with `title` and `subtitle` above.
pub fn chart(outcome: &Outcome, title: &str, subtitle: &str) -> String {
    let samples = &outcome.samples;
    let t0 = outcome.start;
    let t1 = outcome.end.max(t0 + 1);
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (RIGHT - LEFT);
    let highest = samples
        .iter()
        .flat_map(|s| SERIES.iter().map(move |series| (series.4)(s)))
        .max()
        .unwrap_or(0)
        .max(1);
    let y_step = nice_step(highest, 8);
    let y_max = highest.div_ceil(y_step) * y_step;
    let y = |v: u64| BOTTOM - v as f64 / y_max as f64 * (BOTTOM - TOP);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        "<title>{}: {}</title>",
        escape(title),
        escape(subtitle)
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="44">{}</text>"#,
        escape(subtitle)
    );

    // Grid, ticks and labels.
    let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
    for v in (0..=y_max).step_by(y_step as usize) {
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{0:.1}" x2="{RIGHT}" y2="{0:.1}"/>"#,
            y(v)
        );
    }
    let x_step = time_step(t1 - t0);
    let first_tick = t0.div_ceil(x_step) * x_step;
    let x_ticks: Vec<u64> = (first_tick..=t1).step_by(x_step as usize).collect();
    for &t in &x_ticks {
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{BOTTOM}"/>"#,
            x(t)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<g stroke="#333333" stroke-width="1"><line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}"/></g>"##
    );
    let _ = writeln!(svg, r#"<g text-anchor="end">"#);
    for v in (0..=y_max).step_by(y_step as usize) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{v}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r#"<g text-anchor="middle">"#);
    for &t in &x_ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{:02}:{:02}</text>"#,
            x(t),
            BOTTOM + 16.0,
            t / 3600,
            t / 60 % 60
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">time of day on the trace's clock (HH:MM)</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 34.0
    );
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">messages / instances</text>"#,
        (TOP + BOTTOM) / 2.0
    );

    // The series, as steps: a value holds until the next sample.
    for (label, colour, width, dash, value) in SERIES {
        let mut points = String::new();
        let mut previous: Option<u64> = None;
        for s in samples {
            let v = value(s);
            if let Some(p) = previous {
                let _ = write!(points, " {:.1},{:.1}", x(s.t), y(p));
            }
            let _ = write!(points, " {:.1},{:.1}", x(s.t), y(v));
            previous = Some(v);
        }
        let dash = dash.map_or_else(String::new, |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="{}"><title>{label}</title></polyline>"#,
            points.trim_start()
        );
    }

    // Legend, one row under the axis title.
    let legend_y = HEIGHT - 22.0;
    let mut lx = LEFT;
    let _ = writeln!(svg, "<g>");
    for (label, colour, width, dash, _) in SERIES {
        let dash = dash.map_or_else(String::new, |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{colour}" stroke-width="{width}"{dash}/><text x="{2:.1}" y="{3:.1}">{label}</text>"#,
            legend_y,
            lx + 28.0,
            lx + 34.0,
            legend_y + 4.0
        );
        lx += 34.0 + 7.0 * label.len() as f64 + 24.0;
    }
    let _ = writeln!(svg, "</g>");
    svg.push_str("</svg>\n");
    svg
}

/// The smallest of 1, 2, 5, 10, 20, 50... that cuts `highest` into at most `ticks` steps.
fn nice_step(highest: u64, ticks: u64) -> u64 {
    let mut magnitude = 1;
    loop {
        for step in [magnitude, 2 * magnitude, 5 * magnitude] {
            if highest.div_ceil(step) <= ticks {
                return step;
            }
        }
        magnitude *= 10;
    }
}

/// A clock-friendly tick spacing giving at most 12 ticks over `span` seconds.
fn time_step(span: u64) -> u64 {
    const STEPS: [u64; 11] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    ];
    STEPS
        .into_iter()
        .find(|&step| span / step <= 12)
        .unwrap_or(span.div_ceil(12).max(1))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_few() {
        assert_eq!(nice_step(1, 8), 1);
        assert_eq!(nice_step(8, 8), 1);
        assert_eq!(nice_step(9, 8), 2);
        assert_eq!(nice_step(37, 8), 5);
        assert_eq!(nice_step(120, 8), 20);
        assert_eq!(time_step(3600), 300);
        assert_eq!(time_step(10 * 3600), 3600);
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
