//! `canal-server`: the process each pod runs (`run`, the default), and the
//! tools around it (`tail`, `stream`, `decode`).

mod decode;
mod output;
mod run;
mod stream;
mod tail;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use canal::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "canal-server",
    version,
    about = "A canal-compatible MySQL/MariaDB binlog CDC server"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "CANAL_LOG_FORMAT")]
    log_format: LogFormat,
    /// Configuration directory (canal.properties and one directory per
    /// destination), for `run`, which is what runs without a subcommand.
    #[arg(long, env = "CANAL_CONF_DIR", default_value = "conf")]
    conf: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server from --conf (the default).
    Run,
    /// Subscribe to a destination on a canal server and print each change,
    /// acknowledging after printing; with --zk, follow the active server.
    Tail(tail::TailArgs),
    /// Connect to a MySQL/MariaDB source as a replica and print each change
    /// as one JSON line, following the binlog until interrupted.
    Stream(stream::StreamArgs),
    /// Decode binlog files and print each change as one JSON line (the
    /// protobuf JSON mapping of canal's Entry, storeValue decoded).
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::run(&cli.conf),
        Command::Tail(args) => tail::tail(args),
        Command::Stream(args) => stream::stream(args),
        Command::Decode(args) => decode::decode(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("canal-server: {message}");
            ExitCode::FAILURE
        }
    }
}
