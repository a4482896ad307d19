//! `canal-operator`: runs the controller (`run`, the default) and prints
//! its CustomResourceDefinition (`crd`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use canal::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "canal-operator",
    version,
    about = "Runs CanalInstance resources as highly available canal-server StatefulSets"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "CANAL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CanalInstance CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Some(Command::Crd) | None => {
            print!("{}", canal::operator::crd::crd_yaml());
            ExitCode::SUCCESS
        }
    }
}
