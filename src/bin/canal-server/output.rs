//! Options shared by the commands that print changes.

use std::io;

use clap::Args;

use canal::binlog::{
    filter::{ColumnFilter, EventFilter, TableFilter},
    value::ValueOptions,
};

#[derive(Args)]
pub struct OutputArgs {
    /// Time zone TIMESTAMP values are shown in (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Show ENUM and SET values as labels instead of canal's index/bitmask.
    #[arg(long)]
    pub enum_set_labels: bool,
    /// Table include filter (canal.instance.filter.regex syntax).
    #[arg(long, default_value = r".*\..*")]
    pub filter: String,
    /// Table exclude filter (canal.instance.filter.black.regex syntax).
    #[arg(long, default_value = r"mysql\.slave_.*")]
    pub black_filter: String,
}

impl OutputArgs {
    pub fn filter(&self) -> Result<EventFilter, String> {
        Ok(EventFilter {
            tables: TableFilter::new(&self.filter, &self.black_filter)
                .map_err(|e| e.to_string())?,
            columns: ColumnFilter::default(),
        })
    }

    pub fn values(&self) -> Result<ValueOptions, String> {
        let time_zone = jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|e| format!("--time-zone {}: {e}", self.time_zone))?;
        Ok(ValueOptions {
            time_zone,
            enum_set_labels: self.enum_set_labels,
        })
    }
}

/// `canal-server decode f | head` closes stdout early; that is not an error.
pub fn broken_pipe_is_fine(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(format!("cannot write output: {error}"))
    }
}
