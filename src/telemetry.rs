//! Logging setup shared by the binaries: human-readable lines by default,
//! one JSON object per line with `--log-format json`, filtered by `RUST_LOG`
//! (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber. Logs go to stderr so that commands whose
/// output is data (`decode`, `tail --json`) keep stdout clean.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: log files and log
    // collectors get plain text. NO_COLOR (no-color.org) turns them off too.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
}
