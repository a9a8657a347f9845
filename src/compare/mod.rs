//! `audionas compare`: any runs (training, searches of every strategy,
//! ensembles) side by side on the same cost model: one table per group of
//! runs on the same data and features, Pareto plots of accuracy against
//! parameters and MACs, and a report page per run.

pub mod html;
pub mod runs;
pub mod svg;

use crate::data::error::write_atomically;
use crate::data::features::FeatureConfig;
use crate::gpu::Gpu;
use crate::model::cost::measure_latency;
use crate::train::model_file::load_model;
use crate::train::session::DataRecord;
use anyhow::Context;
use clap::Args;
use runs::{read_run, RunRecord};
use std::io::Write;
use std::path::PathBuf;

/// The page each run gets in its folder.
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders (runs/NAME) of `train`, `search` (any strategy) or `ensemble`.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The comparison page to write.
    #[arg(long, default_value = "compare.html")]
    pub out: PathBuf,
    /// Do not measure each model's inference latency on the adapter.
    #[arg(long)]
    pub no_latency: bool,
    /// Batch-1 inferences timed per model (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub latency_runs: usize,
}

/// Runs on the same data (by its record's id) and the same features.
pub struct Group {
    pub data: Option<DataRecord>,
    pub features: FeatureConfig,
    pub runs: Vec<RunRecord>,
}

/// The feature settings in a few words.
pub fn features_summary(f: &FeatureConfig) -> String {
    let shape = f.clip_shape();
    format!(
        "{} {}, {} ms clips, clip shape {:?}",
        serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        &crate::data::dataset::sha1_hex(&f.fingerprint())[..8],
        f.clip_ms,
        shape
    )
}

/// The class names a run was trained on: its data record's, else (a run
/// made before runs recorded their data) its model's.
fn classes_of(run: &RunRecord) -> Option<&[String]> {
    match (&run.data, &run.class_names) {
        (Some(d), _) => Some(&d.classes),
        (None, names) => names.as_deref(),
    }
}

/// Whether two runs are on the same data: the same data record where both
/// have one; where either was made before runs recorded their data, the
/// same class names, the best evidence left.
fn same_data(a: &RunRecord, b: &RunRecord) -> bool {
    match (&a.data, &b.data) {
        (Some(x), Some(y)) => x.id == y.id,
        _ => classes_of(a) == classes_of(b),
    }
}

/// Groups runs by data and features, in the order they were given: a run
/// joins the first group with its features whose every run is on its data.
pub fn group_runs(runs: Vec<RunRecord>) -> Vec<Group> {
    let mut groups: Vec<(String, Group)> = Vec::new();
    for run in runs {
        let features = run.features.fingerprint();
        match groups
            .iter_mut()
            .find(|(f, g)| *f == features && g.runs.iter().all(|r| same_data(r, &run)))
        {
            Some((_, g)) => {
                if g.data.is_none() {
                    g.data = run.data.clone();
                }
                g.runs.push(run)
            }
            None => groups.push((
                features,
                Group {
                    data: run.data.clone(),
                    features: run.features.clone(),
                    runs: vec![run],
                },
            )),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The median batch-1 latency of each run's model, in milliseconds.
fn measure(gpu: &Gpu, runs: &mut [RunRecord], repeats: usize) -> anyhow::Result<()> {
    for run in runs.iter_mut() {
        let Some(model) = &run.model_file else {
            continue;
        };
        let (mut network, _, _) = load_model(gpu, model, None)
            .with_context(|| format!("run {}: loading {}", run.name, model.display()))?;
        let time = measure_latency(gpu, &mut network, 1, repeats.max(1))?;
        run.latency_ms = Some(time.as_secs_f64() * 1000.0);
    }
    Ok(())
}

fn print_table(groups: &[Group]) {
    for (i, group) in groups.iter().enumerate() {
        let data = group
            .data
            .as_ref()
            .map_or("data not recorded".to_string(), |d| {
                format!("data {} (id {})", d.root.display(), d.id)
            });
        println!(
            "group {}: {data}; features {}",
            i + 1,
            features_summary(&group.features)
        );
        let rows: Vec<Vec<String>> = group.runs.iter().map(html::row_cells).collect();
        let widths: Vec<usize> = (0..html::HEADERS.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([html::HEADERS[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(html::HEADERS.to_vec());
        println!(
            "|{}|",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &rows {
            line(row.iter().map(String::as_str).collect());
        }
        println!();
    }
    if groups.len() > 1 {
        println!(
            "{} groups: runs on different data or features are not compared in one table",
            groups.len()
        );
    }
}

/// `open_gpu` is called only when some run has a model to time.
pub fn run_compare(
    args: CompareArgs,
    open_gpu: impl FnOnce() -> anyhow::Result<Gpu>,
) -> anyhow::Result<()> {
    let mut records = args
        .runs
        .iter()
        .map(|dir| read_run(dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut adapter = None;
    if !args.no_latency && records.iter().any(|r| r.model_file.is_some()) {
        let gpu = open_gpu()?;
        measure(&gpu, &mut records, args.latency_runs)?;
        adapter = Some(gpu.info().name.clone());
    }
    for record in &records {
        let page = html::run_report(record);
        let path = record.dir.join(REPORT_FILE);
        write_atomically(&path, |w| w.write_all(page.as_bytes()))?;
    }
    let groups = group_runs(records);
    print_table(&groups);
    let page = html::compare_page(&groups, adapter.as_deref());
    write_atomically(&args.out, |w| w.write_all(page.as_bytes()))?;
    println!(
        "wrote {} and a report.html in each run folder",
        args.out.display()
    );
    Ok(())
}
