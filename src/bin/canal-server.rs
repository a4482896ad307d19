//! `canal-server`: the process each pod runs, plus tools around it.

use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use clap::{Args, Parser, Subcommand};

use canal::{
    binlog::{
        decode::{Decoder, DecoderOptions, UnnamedColumns},
        file::BinlogFileReader,
        filter::{ColumnFilter, EventFilter, TableFilter},
        value::ValueOptions,
    },
    protocol::json::entry_to_json,
    telemetry::{self, LogFormat},
};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode binlog files and print each change as one JSON line (the
    /// protobuf JSON mapping of canal's Entry, storeValue decoded).
    Decode(DecodeArgs),
}

#[derive(Args)]
struct DecodeArgs {
    /// Binlog files, decoded in the order given as one stream.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Time zone TIMESTAMP values are shown in (IANA name).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Show ENUM and SET values as labels instead of canal's index/bitmask.
    #[arg(long)]
    enum_set_labels: bool,
    /// Fill GTID header fields, as canal does with canal.instance.gtidon=true.
    #[arg(long)]
    gtid: bool,
    /// Table include filter (canal.instance.filter.regex syntax).
    #[arg(long, default_value = r".*\..*")]
    filter: String,
    /// Table exclude filter (canal.instance.filter.black.regex syntax).
    #[arg(long, default_value = r"mysql\.slave_.*")]
    black_filter: String,
    /// Fail on tables whose binlog carries no column names instead of
    /// naming their columns by position (@1, @2...).
    #[arg(long)]
    require_column_names: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Decode(args) => decode(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("canal-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn decode(args: DecodeArgs) -> Result<(), String> {
    let time_zone = jiff::tz::TimeZone::get(&args.time_zone)
        .map_err(|e| format!("--time-zone {}: {e}", args.time_zone))?;
    let filter = EventFilter {
        tables: TableFilter::new(&args.filter, &args.black_filter).map_err(|e| e.to_string())?,
        columns: ColumnFilter::default(),
    };
    let options = DecoderOptions {
        values: ValueOptions {
            time_zone,
            enum_set_labels: args.enum_set_labels,
        },
        gtid_header: args.gtid,
        unnamed_columns: if args.require_column_names {
            UnnamedColumns::Reject
        } else {
            UnnamedColumns::Positional
        },
        ..DecoderOptions::default()
    };
    let mut decoder = Decoder::new(options, Arc::new(filter));
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut changes = Vec::new();
    for path in &args.files {
        let reader = BinlogFileReader::open(path).map_err(|e| e.to_string())?;
        for event in reader {
            let event = event.map_err(|e| e.to_string())?;
            decoder
                .decode(&event, &mut changes)
                .map_err(|e| e.to_string())?;
            for change in changes.drain(..) {
                let json = entry_to_json(&change.entry).map_err(|e| e.to_string())?;
                if let Err(e) = writeln!(out, "{json}") {
                    return broken_pipe_is_fine(e);
                }
            }
        }
    }
    out.flush().or_else(broken_pipe_is_fine)
}

/// `canal-server decode f | head` closes stdout early; that is not an error.
fn broken_pipe_is_fine(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(format!("cannot write output: {error}"))
    }
}
