//! What the checker received against what the writer committed: nothing
//! lost, nothing invented, transactions whole, order per table, and how many
//! duplicates each reconnect brought.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    time::Duration,
};

use jiff::Timestamp;

use super::{
    checker::{CheckerReport, Item},
    writer::{CommittedTxn, WriterReport},
};

/// A first arrival of a row with a smaller id than an earlier first arrival
/// in the same table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderViolation {
    pub table: String,
    pub previous: i64,
    pub id: i64,
}

/// The checker's session `index` (> 0) replacing the one before it.
#[derive(Debug, Clone)]
pub struct Reconnect {
    pub index: usize,
    pub from: String,
    pub to: String,
    pub connected_at: Timestamp,
    /// From the last batch with rows before this session to its first batch
    /// with rows; `None` if it received no rows.
    pub gap: Option<Duration>,
    /// Rows it delivered that had been delivered before.
    pub duplicates: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub committed_txns: usize,
    pub committed_rows: usize,
    pub uncertain_txns: usize,
    /// Uncertain transactions whose rows all arrived.
    pub uncertain_arrived: usize,
    pub aborted_txns: usize,
    /// Row deliveries, duplicates included.
    pub delivered_rows: usize,
    pub distinct_rows: usize,
    /// Committed rows never delivered.
    pub missing: Vec<(String, i64)>,
    /// Delivered rows no committed or uncertain transaction wrote (rolled
    /// back, unknown, or with another `txn` than the writer gave them).
    pub phantoms: Vec<(String, i64)>,
    /// Uncertain transactions of which some rows arrived but not all.
    pub uncertain_partial: Vec<i64>,
    /// Transactions delivered other than as exactly their rows within one
    /// TRANSACTIONBEGIN..TRANSACTIONEND bracket, on any delivery.
    pub txns_split: Vec<i64>,
    pub order_violations: Vec<OrderViolation>,
    /// Deliveries beyond the first of each row.
    pub duplicates: usize,
    pub reconnects: Vec<Reconnect>,
    /// Reconnects to another address than the session before.
    pub server_switches: usize,
    pub failed_attempts: usize,
    /// Stream shapes that should not happen (a row outside a bracket, a
    /// BEGIN inside an open bracket, an END without BEGIN mid-stream).
    pub anomalies: Vec<String>,
}

impl Verdict {
    /// Nothing missing or invented, transactions whole, order kept.
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.phantoms.is_empty()
            && self.uncertain_partial.is_empty()
            && self.txns_split.is_empty()
            && self.order_violations.is_empty()
            && self.anomalies.is_empty()
    }

    /// Panics with the whole verdict unless [`Verdict::ok`].
    pub fn assert_ok(&self) {
        assert!(self.ok(), "the delivered stream is wrong:\n{self}");
    }
}

/// A bracket of rows as delivered on one session.
struct Bracket {
    rows: Vec<(String, i64, i64)>,
    /// Closed by TRANSACTIONEND (else cut off by the session's end, or a
    /// row outside any bracket).
    complete: bool,
}

/// Compares what `checker` received with what `writer` committed.
pub fn verify(writer: &WriterReport, checker: &CheckerReport) -> Verdict {
    let mut verdict = Verdict {
        committed_txns: writer.committed.len(),
        committed_rows: writer.committed_rows(),
        uncertain_txns: writer.uncertain.len(),
        aborted_txns: writer.aborted.len(),
        failed_attempts: checker.failed_attempts,
        ..Verdict::default()
    };
    let writes = Writes::of(writer);
    let deliveries = check_deliveries(&mut verdict, checker, &writes);
    check_arrivals(&mut verdict, writer, &deliveries.seen);
    verdict.txns_split = split_transactions(checker, &writes, &mut verdict.anomalies);
    record_reconnects(&mut verdict, checker, &deliveries.duplicates_per_session);
    verdict
}

/// The writes that may exist (committed or uncertain), by transaction and
/// by row.
struct Writes<'a> {
    by_txn: HashMap<i64, &'a CommittedTxn>,
    /// The transaction that wrote each row.
    owner: HashMap<(&'a str, i64), i64>,
}

impl<'a> Writes<'a> {
    fn of(writer: &'a WriterReport) -> Writes<'a> {
        let mut by_txn = HashMap::new();
        let mut owner = HashMap::new();
        for txn in writer.committed.iter().chain(&writer.uncertain) {
            by_txn.insert(txn.txn, txn);
            for (table, id) in &txn.rows {
                owner.insert((table.as_str(), *id), txn.txn);
            }
        }
        Writes { by_txn, owner }
    }
}

/// What the deliveries showed beyond the verdict's counts.
struct Deliveries {
    /// Every row delivered at least once.
    seen: HashSet<(String, i64)>,
    /// Repeated deliveries, by the session that brought them.
    duplicates_per_session: Vec<usize>,
}

/// Deliveries, first arrivals and order, duplicates per session, phantoms.
fn check_deliveries(
    verdict: &mut Verdict,
    checker: &CheckerReport,
    writes: &Writes<'_>,
) -> Deliveries {
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    let mut last_first: HashMap<String, i64> = HashMap::new();
    let mut duplicates_per_session = vec![0usize; checker.connections.len()];
    let mut phantoms: HashSet<(String, i64)> = HashSet::new();
    for batch in &checker.batches {
        for (table, id, txn) in batch.rows() {
            verdict.delivered_rows += 1;
            if writes.owner.get(&(table, id)) != Some(&txn) {
                phantoms.insert((table.to_owned(), id));
            }
            if !seen.insert((table.to_owned(), id)) {
                verdict.duplicates += 1;
                if let Some(count) = duplicates_per_session.get_mut(batch.connection) {
                    *count += 1;
                }
                continue;
            }
            let previous = last_first.entry(table.to_owned()).or_insert(i64::MIN);
            if id < *previous {
                verdict.order_violations.push(OrderViolation {
                    table: table.to_owned(),
                    previous: *previous,
                    id,
                });
            }
            *previous = (*previous).max(id);
        }
    }
    verdict.distinct_rows = seen.len();
    verdict.phantoms = phantoms.into_iter().collect();
    verdict.phantoms.sort();
    Deliveries {
        seen,
        duplicates_per_session,
    }
}

/// Committed rows that never arrived; uncertain transactions that arrived
/// whole or in part.
fn check_arrivals(verdict: &mut Verdict, writer: &WriterReport, seen: &HashSet<(String, i64)>) {
    verdict.missing = writer
        .committed
        .iter()
        .flat_map(|t| &t.rows)
        .filter(|row| !seen.contains(*row))
        .cloned()
        .collect();
    for txn in &writer.uncertain {
        let arrived = txn.rows.iter().filter(|row| seen.contains(*row)).count();
        if arrived == txn.rows.len() {
            verdict.uncertain_arrived += 1;
        } else if arrived > 0 {
            verdict.uncertain_partial.push(txn.txn);
        }
    }
}

/// Transactions not delivered whole, sorted: every bracket must hold exactly
/// one transaction's rows (a bracket cut off by the session's end: a part
/// of one).
fn split_transactions(
    checker: &CheckerReport,
    writes: &Writes<'_>,
    anomalies: &mut Vec<String>,
) -> Vec<i64> {
    let mut split: HashSet<i64> = HashSet::new();
    for bracket in brackets(checker, anomalies) {
        let txns: HashSet<i64> = bracket.rows.iter().map(|r| r.2).collect();
        if txns.len() > 1 {
            split.extend(txns);
            continue;
        }
        let Some(&txn) = txns.iter().next() else {
            continue;
        };
        let Some(expected) = writes.by_txn.get(&txn) else {
            continue; // a phantom, reported as such
        };
        if !holds_whole(&bracket, expected) {
            split.insert(txn);
        }
    }
    let mut split: Vec<i64> = split.into_iter().collect();
    split.sort_unstable();
    split
}

/// A complete bracket holds exactly `expected`'s rows; a cut-off one a part
/// of them, each once.
fn holds_whole(bracket: &Bracket, expected: &CommittedTxn) -> bool {
    let mut got: Vec<(&str, i64)> = bracket.rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    let mut want: Vec<(&str, i64)> = expected.rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    got.sort_unstable();
    want.sort_unstable();
    if bracket.complete {
        got == want
    } else {
        got.windows(2).all(|w| w[0] != w[1]) && got.iter().all(|r| want.contains(r))
    }
}

/// Reconnects: the gap in rows and the duplicates each brought, and how
/// many went to another server.
fn record_reconnects(
    verdict: &mut Verdict,
    checker: &CheckerReport,
    duplicates_per_session: &[usize],
) {
    let first_rows = |index: usize| {
        checker
            .batches
            .iter()
            .find(|b| b.connection == index && b.rows().next().is_some())
            .map(|b| b.received_at)
    };
    let last_rows_before = |index: usize| {
        checker
            .batches
            .iter()
            .rev()
            .find(|b| b.connection < index && b.rows().next().is_some())
            .map(|b| b.received_at)
    };
    for (index, pair) in checker.connections.windows(2).enumerate() {
        let index = index + 1;
        let gap = match (last_rows_before(index), first_rows(index)) {
            (Some(before), Some(after)) => {
                Some(Duration::try_from(after.duration_since(before)).unwrap_or_default())
            }
            _ => None,
        };
        if pair[0].server != pair[1].server {
            verdict.server_switches += 1;
        }
        verdict.reconnects.push(Reconnect {
            index,
            from: pair[0].server.clone(),
            to: pair[1].server.clone(),
            connected_at: pair[1].connected_at,
            gap,
            duplicates: duplicates_per_session[index],
        });
    }
}

/// The brackets of every session, in order; stream anomalies are noted.
fn brackets(checker: &CheckerReport, anomalies: &mut Vec<String>) -> Vec<Bracket> {
    let mut out = Vec::new();
    for index in 0..checker.connections.len() {
        let mut open: Option<Vec<(String, i64, i64)>> = None;
        let mut started = false;
        for batch in checker.batches.iter().filter(|b| b.connection == index) {
            for item in &batch.items {
                match item {
                    Item::Begin => {
                        if let Some(rows) = open.take() {
                            anomalies.push(format!(
                                "session {index} batch {}: BEGIN inside an open transaction",
                                batch.batch_id
                            ));
                            out.push(Bracket {
                                rows,
                                complete: false,
                            });
                        }
                        open = Some(Vec::new());
                        started = true;
                    }
                    Item::Row { table, id, txn } => {
                        let row = (table.clone(), *id, *txn);
                        match open.as_mut() {
                            Some(rows) => rows.push(row),
                            None => {
                                anomalies.push(format!(
                                    "session {index} batch {}: row {table}/{id} outside a transaction",
                                    batch.batch_id
                                ));
                                out.push(Bracket {
                                    rows: vec![row],
                                    complete: false,
                                });
                            }
                        }
                        started = true;
                    }
                    Item::End => match open.take() {
                        Some(rows) => out.push(Bracket {
                            rows,
                            complete: true,
                        }),
                        // A session resuming at an acked TRANSACTIONEND may
                        // begin with it.
                        None if !started => {}
                        None => anomalies.push(format!(
                            "session {index} batch {}: END without BEGIN",
                            batch.batch_id
                        )),
                    },
                    Item::Other => {}
                }
            }
        }
        if let Some(rows) = open {
            out.push(Bracket {
                rows,
                complete: false,
            });
        }
    }
    out
}

fn few<T: fmt::Debug>(items: &[T]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = items.iter().take(10).map(|i| format!("{i:?}")).collect();
    let more = if items.len() > 10 {
        format!(" … {} more", items.len() - 10)
    } else {
        String::new()
    };
    format!(" [{}{more}]", shown.join(", "))
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "committed: {} txns, {} rows; uncertain: {} txns ({} arrived whole); aborted: {} txns",
            self.committed_txns,
            self.committed_rows,
            self.uncertain_txns,
            self.uncertain_arrived,
            self.aborted_txns
        )?;
        writeln!(
            f,
            "delivered: {} rows, {} distinct, {} duplicates",
            self.delivered_rows, self.distinct_rows, self.duplicates
        )?;
        writeln!(f, "missing: {}{}", self.missing.len(), few(&self.missing))?;
        writeln!(
            f,
            "phantoms: {}{}",
            self.phantoms.len(),
            few(&self.phantoms)
        )?;
        writeln!(
            f,
            "uncertain txns partly delivered: {}{}",
            self.uncertain_partial.len(),
            few(&self.uncertain_partial)
        )?;
        writeln!(
            f,
            "txns split or mixed: {}{}",
            self.txns_split.len(),
            few(&self.txns_split)
        )?;
        writeln!(
            f,
            "order violations: {}{}",
            self.order_violations.len(),
            few(&self.order_violations)
        )?;
        writeln!(
            f,
            "reconnects: {}, server switches: {}, failed attempts: {}",
            self.reconnects.len(),
            self.server_switches,
            self.failed_attempts
        )?;
        for r in &self.reconnects {
            let gap = r
                .gap
                .map(|g| format!("{} ms", g.as_millis()))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  session {}: {} -> {} at {}, gap in rows {gap}, {} duplicates",
                r.index, r.from, r.to, r.connected_at, r.duplicates
            )?;
        }
        write!(
            f,
            "anomalies: {}{}",
            self.anomalies.len(),
            few(&self.anomalies)
        )
    }
}

/// Reconnects that repeated more rows than a failover may with cursors
/// written on every ack: the last two batches before it (the last one's ack
/// may not have been processed, the one before may have been in flight) plus
/// one transaction an ack point falls inside.
pub fn excess_duplicates(verdict: &Verdict, report: &CheckerReport) -> Vec<String> {
    let mut excess = Vec::new();
    for reconnect in &verdict.reconnects {
        let before: Vec<_> = report
            .batches
            .iter()
            .filter(|b| b.connection + 1 == reconnect.index)
            .collect();
        let bound: usize = before
            .iter()
            .rev()
            .take(2)
            .map(|b| b.rows().count())
            .sum::<usize>()
            + 5;
        if reconnect.duplicates > bound {
            excess.push(format!(
                "session {} repeated {} rows, more than the last two batches before it plus one \
                 transaction ({bound})",
                reconnect.index, reconnect.duplicates
            ));
        }
    }
    excess
}
