//! `canal-operator`: runs the controller (`run`, the default) and prints
//! its CustomResourceDefinition (`crd`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use canal::operator::controller::{self, OperatorOptions};
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
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default; its options go before `run`).
    Run,
    /// Print the CanalInstance CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Metrics and health endpoints.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// The image for instances without spec.image: the project's image
    /// holds both canal-operator and canal-server.
    #[arg(long, env = "CANAL_SERVER_IMAGE", default_value = concat!("ghcr.io/canal-operator/canal-operator:", env!("CARGO_PKG_VERSION")))]
    server_image: String,
    /// Namespace of the leadership Lease; without it the operator runs
    /// unelected (one replica only).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leadership Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "canal-operator")]
    lease_name: String,
    /// This replica's identity for the Lease and Events; must differ
    /// between replicas (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconciles running side by side.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Some(Command::Crd) => print_crd(),
        Some(Command::Run) | None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("canal-operator: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("cannot write the CRD: {0}")]
    WriteCrd(#[source] std::io::Error),
    #[error("cannot start: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Operator(#[from] controller::Error),
}

fn print_crd() -> Result<(), Failure> {
    // A closed pipe (`canal-operator crd | head`) is not an error.
    use std::io::Write;
    match std::io::stdout().write_all(canal::operator::crd::crd_yaml().as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::WriteCrd(e)),
        _ => Ok(()),
    }
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::Runtime)?;
    runtime.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let options = OperatorOptions {
            namespace: args.namespace,
            metrics_address: args.metrics_address,
            default_image: args.server_image,
            lease: args.lease_namespace.map(|ns| (ns, args.lease_name)),
            identity: args
                .identity
                .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
                .unwrap_or_else(|| format!("canal-operator-{}", std::process::id())),
            concurrency: args.concurrency,
        };
        let stop = cancel.clone();
        tokio::spawn(async move {
            canal::signals::stop_requested().await;
            tracing::info!("stopping");
            stop.cancel();
        });
        controller::run(options, cancel).await?;
        Ok(())
    })
}
