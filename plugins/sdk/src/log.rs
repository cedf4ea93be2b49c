//! Logging through the host's `log` import (the host caps lines and counts
//! them per evaluation). In native builds (the [`crate::testing`] harness)
//! lines go to standard error.

use crate::bindings::scalegate::policy::host::LogLevel;

fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::scalegate::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}
