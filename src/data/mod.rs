//! Audio data: WAV reading, features, data sets, augmentation, batching,
//! streams and synthetic keyword data.

pub mod cli;
