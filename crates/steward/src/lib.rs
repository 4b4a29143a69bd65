//! The `steward` package's library: the configuration file, shared by the `steward` binary,
//! its tests and the fuzz targets (`fuzz/`).

pub mod config;
pub mod fuzzing;
