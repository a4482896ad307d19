//! `canal-server stream`: follow a source as a replica, print JSON lines.

use std::{
    io::{self, Write},
    sync::Arc,
    time::Duration,
};

use clap::Args;
use tokio_util::sync::CancellationToken;

use canal::{
    binlog::{
        decode::{Decoder, DecoderOptions},
        gtid::GtidState,
        position::StartPosition,
        replica::ReplicaConfig,
        source::{BinlogSource, SourceConfig},
    },
    protocol::json::entry_to_json,
};

use crate::output::{OutputArgs, broken_pipe_is_fine};

#[derive(Args)]
pub struct StreamArgs {
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

pub fn stream(args: StreamArgs) -> Result<(), String> {
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
