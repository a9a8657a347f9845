//! Loss and accuracy curves of a run, drawn as PNG files with plotters.
//!
//! Text needs a TrueType font, which plotters (built without its font-config
//! backend) does not look for: the first readable one of `$AUDIONAS_FONT` and
//! a few usual system paths (Debian's `fonts-dejavu-core`, macOS, Windows) is
//! registered once per process. Without one the curves, grid and axes are
//! still drawn, only without captions, tick labels and legend.

use super::atomic::write_durably;
use super::error::{TrainError, TrainResult};
use super::metrics::EpochRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;
/// Beyond this many points a curve is drawn without its dots.
pub(crate) const MAX_DOTS: usize = 40;
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(214, 39, 40);

/// Where to look for a font, in order, after `$AUDIONAS_FONT`.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Geneva.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
    "C:\\Windows\\Fonts\\segoeui.ttf",
];

/// Registers a system font as plotters' "sans-serif" the first time it is
/// called; says whether text can be drawn.
pub fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let from_env = std::env::var_os("AUDIONAS_FONT").map(PathBuf::from);
        from_env
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .any(|path| register(&path))
    })
}

fn register(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // TrueType (0x00010000, "true"), OpenType ("OTTO") or a collection ("ttcf").
    let magic_ok = matches!(
        bytes.get(..4),
        Some([0, 1, 0, 0]) | Some(b"true") | Some(b"OTTO") | Some(b"ttcf")
    );
    if !magic_ok {
        return false;
    }
    // plotters keeps fonts for the life of the process; this runs once per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
}

/// Draws `loss.png` (train and validation loss per epoch) and `accuracy.png`
/// (train and validation accuracy) into `dir`, each written atomically, and
/// returns their paths. Validation curves use the epochs that have a value.
/// An empty `records` writes nothing and returns an empty list.
pub fn plot_curves(records: &[EpochRecord], dir: &Path) -> TrainResult<Vec<PathBuf>> {
    draw_curves(records, dir, font_available())
}

fn draw_curves(records: &[EpochRecord], dir: &Path, text: bool) -> TrainResult<Vec<PathBuf>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| r.epoch);
    let loss = Figure {
        title: "loss",
        y_desc: "loss",
        train: sorted.iter().map(|r| (r.epoch, r.train_loss)).collect(),
        val: sorted
            .iter()
            .filter_map(|r| r.val_loss.map(|v| (r.epoch, v)))
            .collect(),
        y_floor: 0.0,
        legend: SeriesLabelPosition::UpperRight,
    };
    let accuracy = Figure {
        title: "accuracy",
        y_desc: "accuracy",
        train: sorted.iter().map(|r| (r.epoch, r.train_accuracy)).collect(),
        val: sorted
            .iter()
            .filter_map(|r| r.val_accuracy.map(|v| (r.epoch, v)))
            .collect(),
        y_floor: 1.0,
        legend: SeriesLabelPosition::LowerRight,
    };
    let mut written = Vec::with_capacity(2);
    for (figure, name) in [(loss, "loss.png"), (accuracy, "accuracy.png")] {
        let path = dir.join(name);
        write_png(&path, (WIDTH, HEIGHT), |root| figure.draw(root, text))?;
        written.push(path);
    }
    Ok(written)
}

/// One picture: a train and a validation series over epochs.
struct Figure {
    title: &'static str,
    y_desc: &'static str,
    train: Vec<(usize, f64)>,
    val: Vec<(usize, f64)>,
    /// The y axis reaches at least this high (1 for accuracies).
    y_floor: f64,
    /// Where the legend goes: where the curves usually are not.
    legend: SeriesLabelPosition,
}

impl Figure {
    fn draw(&self, root: &Canvas, text: bool) -> DrawResult {
        // NaN or infinite values (a diverged run) cannot be placed on the axes.
        let finite = |s: &[(usize, f64)]| -> Vec<(f64, f64)> {
            s.iter()
                .filter(|(_, v)| v.is_finite())
                .map(|&(e, v)| (e as f64, v))
                .collect()
        };
        let train = finite(&self.train);
        let val = finite(&self.val);
        let all = train.iter().chain(&val);
        let (x_min, x_max) = all.clone().fold((f64::MAX, f64::MIN), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
        let (x_min, x_max) = if x_min > x_max {
            (0.0, 1.0)
        } else {
            (x_min, x_max.max(x_min + 1.0))
        };
        // A little room on both sides so that the end dots are not cut in half.
        let pad = (x_max - x_min) * 0.02;
        let (x_lo, x_hi) = (x_min - pad, x_max + pad);
        let x_ticks = ((x_max - x_min) as usize + 1).min(12);
        let y_lo = all.clone().map(|&(_, y)| y).fold(0.0, f64::min);
        let y_hi = all.map(|&(_, y)| y).fold(self.y_floor, f64::max);
        let y_hi = if y_hi > y_lo { y_hi * 1.05 } else { y_lo + 1.0 };

        let mut builder = ChartBuilder::on(root);
        builder.margin(15);
        if text {
            builder
                .caption(self.title, ("sans-serif", 24))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = builder.build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("epoch")
                .y_desc(self.y_desc)
                .x_labels(x_ticks)
                .x_label_formatter(&epoch_label);
        }
        mesh.draw()?;

        for (series, color, label) in [
            (&train, TRAIN_COLOR, "train"),
            (&val, VAL_COLOR, "validation"),
        ] {
            if series.is_empty() {
                continue;
            }
            let line = chart.draw_series(LineSeries::new(
                series.iter().copied(),
                color.stroke_width(2),
            ))?;
            if text {
                line.label(label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            // Dots, so that a run of a single epoch still shows its value;
            // beyond a few dozen epochs they only crowd the line.
            if series.len() <= MAX_DOTS {
                chart.draw_series(
                    series
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )?;
            }
        }
        if text {
            chart
                .configure_series_labels()
                .position(self.legend.clone())
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    }
}

/// A picture being drawn: plotters' drawing area over an RGB pixel buffer.
pub(crate) type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws a picture of `size` pixels on white with `draw` and writes it to
/// `path` as a PNG, atomically.
pub(crate) fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Canvas) -> DrawResult,
) -> TrainResult<()> {
    let png = render_png(size, draw).map_err(|reason| TrainError::Plot {
        path: path.to_path_buf(),
        reason,
    })?;
    write_durably(path, &png)
}

fn render_png(
    (width, height): (u32, u32),
    draw: impl FnOnce(&Canvas) -> DrawResult,
) -> Result<Vec<u8>, String> {
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(png)
}

/// The label of an epoch tick: epochs are whole numbers, so fractional
/// ticks stay unlabelled.
pub(crate) fn epoch_label(x: &f64) -> String {
    if *x >= 0.0 && (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, loss: f64, val: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            step: epoch as u64 * 10,
            lr: 0.01,
            train_loss: loss,
            train_accuracy: 1.0 - loss / 3.0,
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v / 3.0),
            samples_per_s: 100.0,
            seconds: 1.0,
        }
    }

    /// Without a font no text may be drawn: plotters would fail on it. This test
    /// binary never registers a font, so any text call here would be an error.
    #[test]
    fn curves_without_text_draw_without_a_font() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            record(1, 2.0, Some(2.1)),
            record(2, 1.0, None),
            record(3, f64::NAN, Some(1.5)),
        ];
        let paths = draw_curves(&records, dir.path(), false).unwrap();
        assert_eq!(paths.len(), 2);
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn a_single_epoch_still_plots() {
        let dir = tempfile::tempdir().unwrap();
        let paths = draw_curves(&[record(0, 0.0, None)], dir.path(), false).unwrap();
        assert_eq!(paths.len(), 2);
    }
}
