//! `canal-server decode`: binlog files to JSON lines (or measurements).

use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
    sync::Arc,
};

use clap::Args;

use canal::{
    binlog::{
        decode::{Decoder, DecoderOptions, UnnamedColumns},
        file::BinlogFileReader,
    },
    protocol::json::entry_to_json,
};

use crate::output::{OutputArgs, broken_pipe_is_fine};

#[derive(Args)]
pub struct DecodeArgs {
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

pub fn decode(args: DecodeArgs) -> Result<(), String> {
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
