//! The HTML report: one self-contained page (inline CSS and SVG, no script, no CDN) with the
//! run's settings, totals, a table per request kind, errors, and charts over time.

use std::fmt::Write;

use crate::stats::{Latency, Point, Report, RequestKind};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

/// One line of a chart: name, colour, and (x, y) points; `None` breaks the line.
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, Option<f64>)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis maximum: 1, 2 or 5 times a power of ten, at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * power)
}

fn label(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// An SVG line chart of `lines` over the run's time (seconds).
fn chart(title: &str, unit: &str, end: f64, lines: &[Line<'_>]) -> String {
    let ymax = nice_max(
        lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let xmax = end.max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + t / xmax * plot_w;
    let y = |v: f64| TOP + plot_h - v / ymax * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="16" class="title">{} ({})</text>"#,
        escape(title),
        escape(unit)
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="axis" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            label(v),
            y = y(v)
        );
    }
    for i in 0..=6 {
        let t = xmax * f64::from(i) / 6.0;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">{}s</text>"#,
            x(t),
            HEIGHT - 10.0,
            if xmax < 12.0 {
                format!("{t:.1}")
            } else {
                format!("{t:.0}")
            }
        );
    }
    let mut legend_x = WIDTH - RIGHT;
    for line in lines.iter().rev() {
        legend_x -= 14.0 + 7.0 * line.name.len() as f64;
        let _ = write!(
            svg,
            r#"<rect x="{legend_x:.1}" y="8" width="10" height="10" fill="{c}"/><text x="{:.1}" y="17" class="axis">{}</text>"#,
            legend_x + 13.0,
            escape(line.name),
            c = line.colour
        );
    }
    for line in lines {
        let mut run = Vec::new();
        let flush = |run: &mut Vec<String>, svg: &mut String| {
            if !run.is_empty() {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"#,
                    line.colour,
                    run.join(" ")
                );
                run.clear();
            }
        };
        for &(t, v) in &line.points {
            match v {
                Some(v) => run.push(format!("{:.1},{:.1}", x(t), y(v))),
                None => flush(&mut run, &mut svg),
            }
        }
        flush(&mut run, &mut svg);
    }
    svg.push_str("</svg>\n");
    svg
}

fn series(points: &[Point], f: impl Fn(&Point) -> Option<f64>) -> Vec<(f64, Option<f64>)> {
    points.iter().map(|p| (p.t, f(p))).collect()
}

fn latency_lines<'a>(
    points: &[Point],
    pick: impl Fn(&Point) -> Option<Latency> + Copy,
) -> Vec<Line<'a>> {
    vec![
        Line {
            name: "p50",
            colour: "#2b7bb9",
            points: series(points, |p| pick(p).map(|l| l.p50)),
        },
        Line {
            name: "p95",
            colour: "#e08a00",
            points: series(points, |p| pick(p).map(|l| l.p95)),
        },
        Line {
            name: "p99",
            colour: "#c0392b",
            points: series(points, |p| pick(p).map(|l| l.p99)),
        },
    ]
}

/// Renders the report page.
pub fn render(report: &Report) -> String {
    let c = &report.config;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>spherecast loadtest: {url}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:920px}}\
         table{{border-collapse:collapse;margin:8px 0 20px}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}} td:first-child,th:first-child{{text-align:left}}\
         .bad{{color:#c0392b;font-weight:bold}} .title{{font-weight:bold;font-size:13px}}\
         .axis{{font-size:11px;fill:#555}} .grid{{stroke:#e5e5e5}} svg{{display:block;margin:8px 0 18px}}\
         </style></head><body>\n<h1>Load test report</h1>\n",
        url = escape(&c.url)
    );
    let verdict = if report.total_errors == 0 && report.stalls.count == 0 {
        "<p>No errors, no stalls.</p>".to_string()
    } else {
        format!(
            "<p class=\"bad\">{} errors, {} stalls ({:.1} s stalled in all).</p>",
            report.total_errors, report.stalls.count, report.stalls.seconds
        )
    };
    let cpu = report.cpu.as_ref().map_or("unknown".to_string(), |cpu| {
        format!(
            "{:.1} s ({:.0} % of one core)",
            cpu.seconds, cpu.percent_of_one_core
        )
    });
    let _ = write!(
        page,
        "{verdict}\n<table>\
         <tr><td>URL</td><td>{url}</td></tr>\
         <tr><td>viewers (target / started / peak active / played)</td><td>{} / {} / {} / {}</td></tr>\
         <tr><td>ramp, full load, elapsed</td><td>{:.0} s, {:.0} s, {:.1} s</td></tr>\
         <tr><td>variant policy, request timeout</td><td>{}, {:.1} s</td></tr>\
         <tr><td>requests, errors</td><td>{}, {}</td></tr>\
         <tr><td>received</td><td>{:.1} MB ({:.1} MB/s)</td></tr>\
         <tr><td>segments, parts, missed</td><td>{}, {}, {}</td></tr>\
         <tr><td>stalls, stalled time, viewers with stalls</td><td>{}, {:.1} s, {}</td></tr>\
         <tr><td>viewers that reached the end of the stream</td><td>{}</td></tr>\
         <tr><td>load generator CPU</td><td>{cpu}</td></tr></table>\n",
        report.viewers.target,
        report.viewers.started,
        report.viewers.peak_active,
        report.viewers.played,
        c.ramp.as_secs_f64(),
        c.duration.as_secs_f64(),
        report.elapsed_secs,
        c.variant,
        c.timeout.as_secs_f64(),
        report.total_requests,
        report.total_errors,
        report.bytes as f64 / 1e6,
        report.bytes_per_sec / 1e6,
        report.media.segments,
        report.media.parts,
        report.media.missed_segments,
        report.stalls.count,
        report.stalls.seconds,
        report.viewers.with_stalls,
        report.viewers.reached_end_of_stream,
        url = escape(&c.url),
    );
    page.push_str(
        "<h2>Requests</h2>\n<table><tr><th>kind</th><th>count</th><th>errors</th>\
         <th>MB/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr>",
    );
    for kind in RequestKind::ALL {
        let k = report.kind(kind);
        if k.count == 0 {
            continue;
        }
        let l = &k.latency_ms;
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td{}>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td></tr>",
            kind.label(),
            k.count,
            if k.errors > 0 { " class=\"bad\"" } else { "" },
            k.errors,
            k.bytes_per_sec / 1e6,
            l.p50,
            l.p95,
            l.p99,
            l.max
        );
    }
    page.push_str("</table>\n");
    if !report.errors.is_empty() {
        page.push_str(
            "<h2>Errors</h2>\n<table><tr><th>request</th><th>error</th><th>count</th></tr>",
        );
        for e in &report.errors {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.kind.label(),
                escape(&e.error),
                e.count
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str("<h2>Over time</h2>\n");
    let points = &report.series;
    let end = report.elapsed_secs;
    page.push_str(&chart(
        "Active viewers",
        "viewers",
        end,
        &[Line {
            name: "active",
            colour: "#2b7bb9",
            points: series(points, |p| Some(f64::from(p.active))),
        }],
    ));
    page.push_str(&chart(
        "Throughput",
        "MB/s",
        end,
        &[Line {
            name: "received",
            colour: "#27ae60",
            points: series(points, |p| Some(p.bytes_per_sec / 1e6)),
        }],
    ));
    page.push_str(&chart(
        "Request rate",
        "requests/s",
        end,
        &[Line {
            name: "requests",
            colour: "#8e44ad",
            points: series(points, |p| Some(p.requests_per_sec)),
        }],
    ));
    if points.iter().any(|p| p.segment_ms.is_some()) {
        page.push_str(&chart(
            "Segment latency",
            "ms",
            end,
            &latency_lines(points, |p| p.segment_ms),
        ));
    }
    if points.iter().any(|p| p.part_ms.is_some()) {
        page.push_str(&chart(
            "Part latency",
            "ms",
            end,
            &latency_lines(points, |p| p.part_ms),
        ));
    }
    if points.iter().any(|p| p.playlist_ms.is_some()) {
        page.push_str(&chart(
            "Playlist latency (non-blocking)",
            "ms",
            end,
            &latency_lines(points, |p| p.playlist_ms),
        ));
    }
    page.push_str(&chart(
        "Errors and stalls",
        "per interval",
        end,
        &[
            Line {
                name: "errors",
                colour: "#c0392b",
                points: series(points, |p| Some(p.errors as f64)),
            },
            Line {
                name: "stalls",
                colour: "#e08a00",
                points: series(points, |p| Some(p.stalls as f64)),
            },
        ],
    ));
    page.push_str(
        "<p>Latency is from sending the request to the last byte of the body. A stall is media \
         that arrived after the viewer's buffer ran dry (or a dry buffer when the run ended). \
         Blocking playlist reloads wait for the server by design and are left out of the \
         latency charts.</p>\n</body></html>\n",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round_and_cover_the_data() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.8), 1.0);
        assert_eq!(nice_max(1.3), 2.0);
        assert_eq!(nice_max(3000.0), 5000.0);
        assert_eq!(nice_max(5001.0), 10000.0);
    }

    #[test]
    fn a_gap_in_a_series_breaks_the_line() {
        let svg = chart(
            "t",
            "u",
            10.0,
            &[Line {
                name: "a",
                colour: "red",
                points: vec![
                    (0.0, Some(1.0)),
                    (1.0, Some(2.0)),
                    (2.0, None),
                    (3.0, Some(1.0)),
                ],
            }],
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(!svg.contains("http"), "no external references: {svg}");
    }
}
