//! A progress bar for one training epoch. It draws only when stderr is a
//! terminal (indicatif hides it otherwise), so logs and tests stay clean.

use indicatif::{ProgressBar, ProgressStyle};

const TEMPLATE: &str =
    "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]";

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for epoch `epoch` of `epochs` (shown as given, so pass it 1-based)
    /// with `steps` steps.
    pub fn new(epoch: usize, epochs: usize, steps: u64) -> Self {
        let bar = ProgressBar::new(steps);
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        Progress { bar }
    }

    /// Moves the bar to `step_in_epoch` finished steps and shows the latest
    /// loss, accuracy (a fraction, shown in percent) and throughput.
    pub fn update(&self, step_in_epoch: u64, loss: f64, accuracy: f64, samples_per_s: f64) {
        self.bar.set_position(step_in_epoch);
        self.bar.set_message(format!(
            "loss {loss:.4}  acc {:.1}%  {samples_per_s:.0} samples/s",
            accuracy * 100.0
        ));
    }

    /// Leaves the finished bar on screen with `message` in place of the numbers.
    pub fn finish(&self, message: &str) {
        self.bar.finish_with_message(message.to_string());
    }
}
