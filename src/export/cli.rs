//! `audionas export`: a trained model as an ONNX file.

use super::onnx::export_onnx;
use crate::data::error::write_atomically;
use crate::train::model_file::read_model_tensors;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A model file written by `audionas train` or `audionas ensemble`
    /// (runs/NAME/model.safetensors), or its run folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let (tensors, info) = read_model_tensors(&args.model)?;
    let exported = export_onnx(&tensors, &info)
        .with_context(|| format!("{}: exporting to ONNX", args.model.display()))?;
    write_atomically(&args.out, |w| w.write_all(&exported.bytes))?;
    println!(
        "{}: {} nodes, {} initializers, {} bytes; input \"features\" [batch, {}], output \"logits\" [batch, {}] ({})",
        args.out.display(),
        exported.nodes,
        exported.initializers,
        exported.bytes.len(),
        info.features
            .clip_shape()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        info.classes.len(),
        info.classes.join(", "),
    );
    Ok(())
}
