//! Training fixed architectures: experiment configs, the training loop,
//! evaluation, model files and checkpoints, run folders with metrics and
//! plots, learning-rate schedules, the `train`/`eval`/`infer`/`cost`
//! commands.

pub mod atomic;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cost_cmd;
pub mod error;
pub mod metrics;
pub mod model_file;
pub mod plots;
pub mod progress;
pub mod run_dir;
pub mod schedule;
pub mod session;
pub mod trainer;

pub use atomic::write_durably;
pub use checkpoint::{load_checkpoint, save_checkpoint, NamedTensor};
pub use error::{TrainError, TrainResult};
pub use metrics::{read_epoch_records, truncate_after_epoch, EpochRecord, MetricsLog, EPOCH_KIND};
pub use plots::{font_available, plot_curves};
pub use progress::Progress;
pub use run_dir::{validate_run_name, RunDir};
pub use schedule::{LrSchedule, Schedule};
