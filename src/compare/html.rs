//! The HTML pages: `compare.html` (one table and two Pareto plots per group
//! of comparable runs) and each run's `report.html` (its figures, curves,
//! architecture and the plots it wrote). Self-contained: styles, plots
//! (inline SVG) and pictures (data URLs) are in the page.

use super::runs::RunRecord;
use super::svg::{escape, Mark, Plot, Series};
use super::Group;
use crate::train::metrics::EpochRecord;
use base64::Engine;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin:12px 0}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f3f3f3}td.text,th.text{text-align:left}\
.note{color:#555;font-size:90%}.plots{display:flex;flex-wrap:wrap;gap:16px}\
img{max-width:100%;border:1px solid #eee}";

/// Sets `data-rendered` on the body once the page is laid out: how many
/// table rows, plots and plotted points have a size on screen.
const RENDER_CHECK: &str = "<script>addEventListener('load',()=>{\
const shown=s=>[...document.querySelectorAll(s)].filter(e=>{const r=e.getBoundingClientRect();return r.width>0&&r.height>0}).length;\
document.body.dataset.rendered=`rows=${shown('table.runs tbody tr')} plots=${shown('svg.plot')} points=${shown('svg.plot circle.point')}`;});</script>";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}\n{RENDER_CHECK}</body></html>\n",
        escape(title)
    )
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn count(v: Option<u64>) -> String {
    v.map_or("-".into(), group_digits)
}

/// 23180 as "23,180".
pub fn group_digits(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The values of one table row, shared by the text table and the page.
pub fn row_cells(r: &RunRecord) -> Vec<String> {
    let steps = match (r.kind.as_str(), r.trials, r.epochs) {
        ("model-search", Some(t), _) => format!("{t} trials"),
        ("ensemble", Some(t), _) => format!("{t} replicas"),
        ("sanas", Some(t), Some(e)) => format!("{t} points x {e} epochs"),
        (_, _, Some(e)) => format!("{e} epochs"),
        _ => "-".into(),
    };
    vec![
        r.name.clone(),
        r.kind.clone(),
        r.model.clone(),
        duration(r.seconds),
        steps,
        count(r.params),
        r.macs_per_second()
            .map_or("-".into(), |m| group_digits(m.round() as u64)),
        r.latency_ms.map_or("-".into(), |ms| format!("{ms:.2}")),
        percent(r.test_accuracy),
        r.stream.map_or("-".into(), |s| {
            format!("{:.1}% / {:.1}%", 100.0 * s.matched, 100.0 * s.false_alarms)
        }),
    ]
}

pub const HEADERS: [&str; 10] = [
    "run",
    "strategy",
    "model",
    "wall time",
    "epochs or trials",
    "parameters",
    "MACs per second of audio",
    "latency (ms)",
    "test accuracy",
    "stream Match / FA",
];

fn runs_table(runs: &[&RunRecord], link_reports: bool) -> String {
    let mut out = String::from("<table class=\"runs\"><thead><tr>");
    for (i, h) in HEADERS.iter().enumerate() {
        let class = if i < 3 { " class=\"text\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in runs {
        out.push_str("<tr>");
        for (i, cell) in row_cells(r).iter().enumerate() {
            let class = if i < 3 { " class=\"text\"" } else { "" };
            let cell = match (i, link_reports) {
                (0, true) => format!(
                    "<a href=\"{}\">{}</a>",
                    escape(&report_link(r)),
                    escape(cell)
                ),
                _ => escape(cell),
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    let notes: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            r.accuracy_note
                .as_ref()
                .map(|n| format!("{}: {}", r.name, n))
        })
        .collect();
    if !notes.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">Test accuracy of {}.</p>",
            escape(&notes.join("; "))
        );
    }
    out
}

fn report_link(r: &RunRecord) -> String {
    r.dir.join(super::REPORT_FILE).display().to_string()
}

/// The runs not beaten by another on both cost and accuracy, by cost.
fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|last| p.1 > last.1) {
            front.push(p);
        }
    }
    front
}

fn pareto_plot(
    runs: &[&RunRecord],
    cost: impl Fn(&RunRecord) -> Option<f64>,
    what: &str,
) -> String {
    let scored: Vec<(&RunRecord, (f64, f64))> = runs
        .iter()
        .filter_map(|r| Some((*r, (cost(r)?, r.test_accuracy? * 100.0))))
        .collect();
    let points: Vec<(f64, f64)> = scored.iter().map(|(_, p)| *p).collect();
    let labels = scored
        .iter()
        .map(|(r, (x, y))| {
            let tip = format!(
                "{} ({}, {}): {y:.1}% at {} {what}",
                r.name,
                r.kind,
                r.model,
                super::svg::short_number(*x)
            );
            (r.name.clone(), tip)
        })
        .collect();
    Plot {
        title: format!("Test accuracy against {what}"),
        x_label: format!("{what} (log scale)"),
        y_label: "test accuracy (%)".into(),
        log_x: true,
        series: vec![
            Series {
                name: "runs".into(),
                points: points.clone(),
                mark: Mark::Points(labels),
            },
            Series {
                name: "Pareto front".into(),
                points: pareto_front(&points),
                mark: Mark::Line,
            },
        ],
    }
    .svg()
}

fn group_heading(group: &Group) -> String {
    let data = match &group.data {
        Some(d) => format!(
            "data {} (id {}; {} classes; {} train, {} validation, {} test clips; {})",
            d.root.display(),
            d.id,
            d.classes.len(),
            d.train,
            d.validation,
            d.test,
            d.split
        ),
        None => "data not recorded (runs made before audionas wrote data.json)".into(),
    };
    format!(
        "<p>{}; features {}</p>",
        escape(&data),
        escape(&super::features_summary(&group.features))
    )
}

/// `compare.html`: each group of comparable runs, with the reason when
/// there is more than one.
pub fn compare_page(groups: &[Group], adapter: Option<&str>) -> String {
    let mut body = String::from("<h1>audionas: runs compared</h1>");
    let _ = write!(
        body,
        "<p class=\"note\">Latency: median of batch-1 inferences {}. MACs per second of audio: one inference per clip.</p>",
        match adapter {
            Some(a) => format!("on {}", escape(a)),
            None => "not measured".into(),
        }
    );
    if groups.len() > 1 {
        let _ = write!(
            body,
            "<p class=\"note\">These runs used {} different data sets or feature settings; runs are compared only within one, so each has its own table.</p>",
            groups.len()
        );
    }
    for (i, group) in groups.iter().enumerate() {
        let runs: Vec<&RunRecord> = group.runs.iter().collect();
        let _ = write!(body, "<h2>Group {}</h2>{}", i + 1, group_heading(group));
        body.push_str(&runs_table(&runs, true));
        body.push_str("<div class=\"plots\">");
        body.push_str(&pareto_plot(
            &runs,
            |r| r.params.map(|p| p as f64),
            "parameters",
        ));
        body.push_str(&pareto_plot(
            &runs,
            RunRecord::macs_per_second,
            "MACs per second of audio",
        ));
        body.push_str("</div>");
    }
    page("audionas: runs compared", &body)
}

fn curve(r: &RunRecord, pick: impl Fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    r.curves
        .iter()
        .filter_map(|e| Some((e.epoch as f64, pick(e)?)))
        .collect()
}

/// A run's `report.html`.
pub fn run_report(r: &RunRecord) -> String {
    let mut body = format!("<h1>{}</h1>", escape(&r.name));
    let group = Group {
        data: r.data.clone(),
        features: r.features.clone(),
        runs: Vec::new(),
    };
    body.push_str(&group_heading(&group));
    body.push_str(&runs_table(&[r], false));
    if !r.curves.is_empty() {
        body.push_str("<h2>Training curves</h2><div class=\"plots\">");
        let line = |name: &str, points| Series {
            name: name.into(),
            points,
            mark: Mark::Line,
        };
        let plot = |title: &str, y: &str, series| {
            Plot {
                title: title.into(),
                x_label: "epoch".into(),
                y_label: y.into(),
                log_x: false,
                series,
            }
            .svg()
        };
        body.push_str(&plot(
            "Loss",
            "loss",
            vec![
                line("train", curve(r, |e| Some(e.train_loss))),
                line("validation", curve(r, |e| e.val_loss)),
            ],
        ));
        body.push_str(&plot(
            "Accuracy",
            "accuracy",
            vec![
                line("train", curve(r, |e| Some(e.train_accuracy))),
                line("validation", curve(r, |e| e.val_accuracy)),
            ],
        ));
        body.push_str("</div>");
    }
    if let Some(arch) = &r.architecture {
        let _ = write!(body, "<h2>Architecture {}</h2>", escape(&arch.name));
        body.push_str(&architecture_table(r, arch));
    }
    let pictures = pictures(&r.dir);
    if !pictures.is_empty() {
        body.push_str("<h2>Plots of the run</h2><div class=\"plots\">");
        for (name, data) in pictures {
            let _ = write!(
                body,
                "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{data}\"><figcaption>{0}</figcaption></figure>",
                escape(&name)
            );
        }
        body.push_str("</div>");
    }
    page(&format!("audionas: {}", r.name), &body)
}

/// Layers with their inputs, output shapes and costs (when the class
/// count is known).
fn architecture_table(r: &RunRecord, arch: &crate::model::Architecture) -> String {
    let cost = r.cost();
    let sources = arch.sources().ok();
    let mut out = String::from(
        "<table class=\"layers\"><thead><tr><th class=\"text\">layer</th><th class=\"text\">op</th><th class=\"text\">inputs</th><th class=\"text\">output</th><th>parameters</th><th>MACs</th></tr></thead><tbody>",
    );
    for (i, spec) in arch.layers.iter().enumerate() {
        let inputs = match &sources {
            Some(s) => s[i]
                .iter()
                .map(|src| match src {
                    crate::model::Source::Input => "input".to_string(),
                    crate::model::Source::Layer(j) => arch.layer_name(*j),
                })
                .collect::<Vec<_>>()
                .join(", "),
            None => spec.inputs.join(", "),
        };
        let layer = cost.as_ref().map(|c| &c.layers[i]);
        let _ = write!(
            out,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&arch.layer_name(i)),
            escape(&spec.op.name()),
            escape(&inputs),
            layer.map_or("-".into(), |l| shape_text(&l.output)),
            count(layer.map(|l| l.params)),
            count(layer.map(|l| l.macs)),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `[8, 25, 5]` as `8x25x5`.
fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// The PNG plots a run wrote into its folder, as base64.
fn pictures(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| {
            let bytes = std::fs::read(dir.join(&n)).ok()?;
            Some((n, base64::engine::general_purpose::STANDARD.encode(bytes)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_only_unbeaten_points() {
        let front = pareto_front(&[
            (3.0, 80.0),
            (1.0, 70.0),
            (2.0, 65.0),
            (4.0, 79.0),
            (5.0, 90.0),
        ]);
        assert_eq!(front, vec![(1.0, 70.0), (3.0, 80.0), (5.0, 90.0)]);
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(23180), "23,180");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000_000), "1,000,000");
    }
}
