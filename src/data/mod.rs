//! Audio data: WAV reading, features, data sets, augmentation, batching,
//! streams and synthetic keyword and spoken-language data.

pub mod augment;
pub mod batch;
pub mod cli;
pub mod dataset;
pub mod error;
pub mod features;
pub mod lid;
pub mod prepare;
pub mod stats;
pub mod stream;
pub mod synth;
pub mod wav;

pub use error::{DataError, DataResult};
