//! `canal-server`: the process each pod runs, plus tools around it.

use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use clap::{Args, Parser, Subcommand};

use canal::{
    binlog::{
        decode::{Decoder, DecoderOptions, UnnamedColumns},
        file::BinlogFileReader,
        filter::{ColumnFilter, EventFilter, TableFilter},
        gtid::GtidState,
        position::StartPosition,
        replica::ReplicaConfig,
        source::{BinlogSource, SourceConfig},
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
    /// Connect to a MySQL/MariaDB source as a replica and print each change
    /// as one JSON line, following the binlog until interrupted.
    Stream(StreamArgs),
}

#[derive(Args)]
struct StreamArgs {
    /// Source address, host:port.
    #[arg(long, env = "CANAL_SOURCE_ADDRESS", default_value = "127.0.0.1:3306")]
    address: String,
    /// Replication account (needs SELECT, REPLICATION SLAVE, REPLICATION CLIENT).
    #[arg(long, env = "CANAL_SOURCE_USER", default_value = "canal")]
    user: String,
    #[arg(
        long,
        env = "CANAL_SOURCE_PASSWORD",
        default_value = "canal",
        hide_env_values = true
    )]
    password: String,
    /// This replica's server id (unique among the source's replicas).
    #[arg(long, default_value_t = 1001)]
    server_id: u32,
    /// Start position: `latest`, `FILE:POS`, `gtid:SET` or `time:MILLIS`.
    #[arg(long, default_value = "latest")]
    start: String,
    /// Resume by GTID after reconnects and fill GTID header fields.
    #[arg(long)]
    gtid: bool,
    /// Stop after this many entries (0 = follow forever).
    #[arg(long, default_value_t = 0)]
    limit: u64,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct OutputArgs {
    /// Time zone TIMESTAMP values are shown in (IANA name).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Show ENUM and SET values as labels instead of canal's index/bitmask.
    #[arg(long)]
    enum_set_labels: bool,
    /// Table include filter (canal.instance.filter.regex syntax).
    #[arg(long, default_value = r".*\..*")]
    filter: String,
    /// Table exclude filter (canal.instance.filter.black.regex syntax).
    #[arg(long, default_value = r"mysql\.slave_.*")]
    black_filter: String,
}

impl OutputArgs {
    fn filter(&self) -> Result<EventFilter, String> {
        Ok(EventFilter {
            tables: TableFilter::new(&self.filter, &self.black_filter)
                .map_err(|e| e.to_string())?,
            columns: ColumnFilter::default(),
        })
    }

    fn values(&self) -> Result<ValueOptions, String> {
        let time_zone = jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|e| format!("--time-zone {}: {e}", self.time_zone))?;
        Ok(ValueOptions {
            time_zone,
            enum_set_labels: self.enum_set_labels,
        })
    }
}

#[derive(Args)]
struct DecodeArgs {
    /// Binlog files, decoded in the order given as one stream.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Fill GTID header fields, as canal does with canal.instance.gtidon=true.
    #[arg(long)]
    gtid: bool,
    /// Fail on tables whose binlog carries no column names instead of
    /// naming their columns by position (@1, @2...).
    #[arg(long)]
    require_column_names: bool,
    /// Measure instead of print: build and serialize every entry as the
    /// server would, then print one JSON line of counts, time and peak RSS.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    output: OutputArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Decode(args) => decode(args),
        Command::Stream(args) => stream(args),
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
    let options = DecoderOptions {
        values: args.output.values()?,
        gtid_header: args.gtid,
        unnamed_columns: if args.require_column_names {
            UnnamedColumns::Reject
        } else {
            UnnamedColumns::Positional
        },
        ..DecoderOptions::default()
    };
    let filter = args.output.filter()?;
    let mut decoder = Decoder::new(options, Arc::new(filter));
    if args.stats {
        return decode_stats(&args.files, &mut decoder);
    }
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

/// Decodes and serializes without printing entries; prints one summary line.
fn decode_stats(files: &[PathBuf], decoder: &mut Decoder) -> Result<(), String> {
    use prost::Message;
    let started = std::time::Instant::now();
    let (mut events, mut entries, mut row_images, mut entry_bytes, mut file_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut changes = Vec::new();
    let mut buffer = Vec::new();
    for path in files {
        file_bytes += std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let reader = BinlogFileReader::open(path).map_err(|e| e.to_string())?;
        for event in reader {
            let event = event.map_err(|e| e.to_string())?;
            events += 1;
            decoder
                .decode(&event, &mut changes)
                .map_err(|e| e.to_string())?;
            for change in changes.drain(..) {
                entries += 1;
                row_images += u64::from(change.row_images);
                buffer.clear();
                change
                    .entry
                    .encode(&mut buffer)
                    .map_err(|e| e.to_string())?;
                entry_bytes += buffer.len() as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "files": files.len(),
        "file_bytes": file_bytes,
        "events": events,
        "entries": entries,
        "row_images": row_images,
        "entry_bytes": entry_bytes,
        "seconds": seconds,
        "peak_rss_kib": peak_rss_kib(),
    });
    println!("{summary}");
    Ok(())
}

/// Peak resident set size of this process (Linux), KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `canal-server decode f | head` closes stdout early; that is not an error.
fn broken_pipe_is_fine(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(format!("cannot write output: {error}"))
    }
}

fn parse_start(text: &str) -> Result<StartPosition, String> {
    let bad = || format!("--start {text}: expected latest, FILE:POS, gtid:SET or time:MILLIS");
    if text == "latest" {
        return Ok(StartPosition::Latest);
    }
    if let Some(set) = text.strip_prefix("gtid:") {
        return GtidState::parse(set)
            .map(StartPosition::Gtid)
            .map_err(|e| e.to_string());
    }
    if let Some(ms) = text.strip_prefix("time:") {
        return ms.parse().map(StartPosition::Timestamp).map_err(|_| bad());
    }
    let (journal, position) = text.rsplit_once(':').ok_or_else(bad)?;
    Ok(StartPosition::FilePosition {
        journal_name: journal.to_owned(),
        position: position.parse().map_err(|_| bad())?,
    })
}

fn stream(args: StreamArgs) -> Result<(), String> {
    let start = parse_start(&args.start)?;
    let options = DecoderOptions {
        values: args.output.values()?,
        gtid_header: args.gtid,
        ..DecoderOptions::default()
    };
    let decoder = Decoder::new(options, Arc::new(args.output.filter()?));
    let config = SourceConfig {
        replica: ReplicaConfig {
            address: args.address,
            user: args.user,
            password: args.password,
            server_id: args.server_id,
            heartbeat: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        },
        start,
        resume_by_gtid: args.gtid,
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(30),
    };
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1024);
        let mut source = BinlogSource::new(config, decoder);
        let source_cancel = cancel.clone();
        let task = tokio::spawn(async move { source.run(sender, source_cancel).await });
        let stdout = io::stdout();
        let mut printed = 0u64;
        let result = loop {
            let change = tokio::select! {
                change = receiver.recv() => change,
                _ = tokio::signal::ctrl_c() => break Ok(()),
            };
            let Some(change) = change else { break Ok(()) };
            let json = match entry_to_json(&change.entry) {
                Ok(json) => json,
                Err(e) => break Err(e.to_string()),
            };
            let mut out = stdout.lock();
            if let Err(e) = writeln!(out, "{json}").and_then(|_| out.flush()) {
                break broken_pipe_is_fine(e);
            }
            printed += 1;
            if args.limit > 0 && printed >= args.limit {
                break Ok(());
            }
        };
        cancel.cancel();
        drop(receiver);
        match task.await {
            Ok(Ok(())) => result,
            Ok(Err(error)) => Err(error.to_string()),
            Err(join) => Err(format!("the binlog source task failed: {join}")),
        }
    })
}
