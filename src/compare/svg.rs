//! Small inline SVG plots for the HTML reports: lines (training curves)
//! and points with a tooltip each (runs on a Pareto plot), on a linear or
//! a logarithmic x axis. Inline SVG keeps a page self-contained.

use std::fmt::Write;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 72.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 48.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

pub enum Mark {
    Line,
    /// Points, each with its label and its tooltip.
    Points(Vec<(String, String)>),
}

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub series: Vec<Series>,
}

/// XML text: `&`, `<`, `>` and quotes escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About five round tick values covering `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Ticks of a log axis spanning `[10^lo, 10^hi]`: the decades, with 2 and 5
/// times each where fewer than three decades fall inside.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.floor() as i32..=hi.ceil() as i32;
    let inside = |v: &f64| (lo..=hi).contains(&v.log10());
    let mut ticks: Vec<f64> = decades
        .clone()
        .map(|k| 10f64.powi(k))
        .filter(inside)
        .collect();
    if ticks.len() < 3 {
        ticks = decades
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
            .filter(inside)
            .collect();
    }
    ticks
}

/// A number as a tick label: 1.2k, 3.4M, 0.85.
pub fn short_number(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = format!("{scaled:.3}");
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{digits}{suffix}")
}

impl Plot {
    fn finite_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0))
    }

    /// The plot as an `<svg>` element (`class="plot"`), points as
    /// `<circle class="point">` with a `<title>`.
    pub fn svg(&self) -> String {
        let points: Vec<(f64, f64)> = self.finite_points().collect();
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        if points.is_empty() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">no data</text></svg>"#,
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
            return out;
        }
        let fx = |x: f64| if self.log_x { x.log10() } else { x };
        let (mut x0, mut x1, mut y0, mut y1) = points.iter().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |(a, b, c, d), &(x, y)| (a.min(fx(x)), b.max(fx(x)), c.min(y), d.max(y)),
        );
        // Some room around the data, and a span even for one point.
        let pad = |lo: &mut f64, hi: &mut f64| {
            let span = (*hi - *lo).max(1e-9 + lo.abs() * 0.1);
            *lo -= span * 0.06;
            *hi += span * 0.06;
        };
        pad(&mut x0, &mut x1);
        pad(&mut y0, &mut y1);
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * ph;
        // Frame, ticks and labels.
        let _ = write!(
            out,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        let x_ticks: Vec<f64> = match self.log_x {
            true => log_ticks(x0, x1),
            false => linear_ticks(x0, x1),
        };
        for t in x_ticks {
            let x = sx(t);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
                TOP,
                TOP + ph,
                TOP + ph + 16.0,
                short_number(t)
            );
        }
        for t in linear_ticks(y0, y1) {
            let y = sy(t);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                short_number(t)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 10.0,
            escape(&self.x_label)
        );
        let _ = write!(
            out,
            r#"<text x="14" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let inside: Vec<(usize, (f64, f64))> = series
                .points
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, (x, y))| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0))
                .collect();
            match &series.mark {
                Mark::Line => {
                    let path: Vec<String> = inside
                        .iter()
                        .map(|(_, (x, y))| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                        .collect();
                    let _ = write!(
                        out,
                        r#"<polyline class="line" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                        path.join(" ")
                    );
                }
                Mark::Points(labels) => {
                    for (k, (x, y)) in &inside {
                        let (label, tip) = labels.get(*k).cloned().unwrap_or_default();
                        let _ = write!(
                            out,
                            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="5" fill="{color}" fill-opacity="0.8"><title>{}</title></circle><text x="{:.1}" y="{:.1}" font-size="9" fill="#444">{}</text>"##,
                            sx(*x),
                            sy(*y),
                            escape(&tip),
                            sx(*x) + 7.0,
                            sy(*y) - 5.0,
                            escape(&label)
                        );
                    }
                }
            }
            // Legend, one entry per series, in a row above the frame.
            let lx = LEFT + 150.0 * i as f64;
            let _ = write!(
                out,
                r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
                TOP - 19.0,
                lx + 14.0,
                TOP - 10.0,
                escape(&series.name)
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = linear_ticks(0.0, 1.0);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        let t = linear_ticks(0.37, 0.91);
        assert!(t.iter().all(|v| (0.37..=0.91).contains(v)), "{t:?}");
        assert!(t.len() >= 3, "{t:?}");
    }

    #[test]
    fn a_log_axis_within_a_decade_still_has_ticks() {
        let t = log_ticks(4.1, 4.6);
        assert_eq!(t, vec![20000.0]);
        let t = log_ticks(3.0, 6.0);
        assert_eq!(t, vec![1e3, 1e4, 1e5, 1e6]);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(23180.0), "23.18k");
        assert_eq!(short_number(2_656_768.0), "2.657M");
        assert_eq!(short_number(1000.0), "1k");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(0.0), "0");
    }

    #[test]
    fn points_carry_their_tooltips_escaped() {
        let plot = Plot {
            title: "a < b".into(),
            x_label: "params".into(),
            y_label: "accuracy".into(),
            log_x: true,
            series: vec![Series {
                name: "runs".into(),
                points: vec![(1000.0, 0.5), (0.0, 0.7), (20000.0, 0.9)],
                mark: Mark::Points(
                    ["r&1", "zero", "r2"]
                        .map(|n| (n.to_string(), format!("{n}: tip")))
                        .to_vec(),
                ),
            }],
        };
        let svg = plot.svg();
        // The point at x = 0 has no place on a log axis.
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains("<title>r&amp;1: tip</title>"));
        assert!(svg.contains("a &lt; b"));
    }
}
