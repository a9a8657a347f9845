//! Audio data: WAV reading, features, data sets, augmentation, batching,
//! streams and synthetic keyword data.

pub mod cli;
pub mod error;
pub mod features;
pub mod wav;

pub use error::{DataError, DataResult};
