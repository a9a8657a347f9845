//! Architecture search: search spaces built as supernets, the strategies
//! that train and read them, and the derivation of a plain architecture.

pub mod cli;
pub mod config;
pub mod darts;
pub mod derive;
pub mod ensemble;
pub mod model_search;
pub mod plots;
pub mod sanas;
pub mod space;
