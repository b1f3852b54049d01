//! The log: off by default; to stderr or a file; each line tagged with the front end's name
//! and the process id; never secrets (nothing that could hold a token or plaintext is ever
//! formatted into a log line).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// Log levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    Off = 0,
    /// Failures.
    Error = 1,
    /// Key loads and notable events.
    Info = 2,
    /// Every operation.
    Debug = 3,
}

impl Level {
    /// Parses `off`, `error`, `info`, `debug` (also `0`-`3`).
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => Some(Level::Off),
            "error" | "err" | "1" => Some(Level::Error),
            "info" | "warn" | "2" => Some(Level::Info),
            "debug" | "trace" | "3" => Some(Level::Debug),
            _ => None,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(0);
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
/// The front end's name, at the start of each line.
static TAG: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the front end in log lines (`e_akv`, `akv`): once, when it is loaded.
pub fn set_tag(tag: &'static str) {
    let _ = TAG.set(tag);
}

/// Sets the level and destination (`None` = stderr).
pub fn configure(level: Level, file: Option<&str>) -> Result<(), String> {
    let handle = match file {
        Some(path) if !path.is_empty() => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {path}: {e}"))?,
        ),
        _ => None,
    };
    *FILE.lock().unwrap_or_else(|p| p.into_inner()) = handle;
    LEVEL.store(level as u8, Ordering::SeqCst);
    Ok(())
}

/// Whether messages of `level` are written.
pub fn enabled(level: Level) -> bool {
    level != Level::Off && LEVEL.load(Ordering::Relaxed) >= level as u8
}

fn write(level: Level, message: std::fmt::Arguments<'_>) {
    // Formatting happens only here, after the level check: a disabled log costs nothing.
    if !enabled(level) {
        return;
    }
    let tag = match level {
        Level::Error => "error",
        Level::Info => "info",
        _ => "debug",
    };
    let program = TAG.get().copied().unwrap_or("e_akv");
    let line = format!("{program}[{}]: {tag}: {message}\n", std::process::id());
    let mut file = FILE.lock().unwrap_or_else(|p| p.into_inner());
    match file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Times an operation for its log line. The clock is read only when lines of that level are
/// written: two reads per signature were a measurable part of its cost in a VM.
pub struct Stopwatch(Option<std::time::Instant>);

impl Stopwatch {
    /// Starts timing, if lines of `level` are written.
    pub fn start(level: Level) -> Stopwatch {
        Stopwatch(enabled(level).then(std::time::Instant::now))
    }
}

impl std::fmt::Display for Stopwatch {
    /// The time since the start (nothing when the level was off at the start).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(started) => write!(f, "{:?}", started.elapsed()),
            None => Ok(()),
        }
    }
}

/// Logs a failure.
pub fn error(message: std::fmt::Arguments<'_>) {
    write(Level::Error, message);
}

/// Logs a notable event.
pub fn info(message: std::fmt::Arguments<'_>) {
    write(Level::Info, message);
}

/// Logs an operation.
pub fn debug(message: std::fmt::Arguments<'_>) {
    write(Level::Debug, message);
}
