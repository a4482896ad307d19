//! A boundary around mysql_common's event parsers.
//!
//! Those parsers assume well-formed events and a few `unwrap()` on corrupt
//! input (unknown compression types, for instance). Binlog bytes are outside
//! input, so every call into them goes through [`guarded`], which turns such a
//! panic into an error naming the event, and keeps the panic message off
//! stderr (the error is reported instead). Allocation failures cannot be
//! caught; the counts that mysql_common allocates for are checked before the
//! call instead (see `gtid::parse_previous_gtids`, `table::check_table_map_body`).

use std::{
    cell::Cell,
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs a parser; a panic inside it becomes `Err` with the panic message.
pub fn guarded<T, E: ToString>(parse: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    install_quiet_hook();
    let was_quiet = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(parse));
    QUIET.with(|q| q.set(was_quiet));
    match outcome {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "parser failed".to_owned());
            Err(format!("malformed event ({message})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let result: Result<(), String> = guarded(|| -> Result<(), String> { panic!("boom") });
        assert!(result.unwrap_err().contains("boom"));
        assert_eq!(guarded(|| Ok::<_, String>(5)), Ok(5));
        assert_eq!(guarded(|| Err::<(), _>("no")), Err("no".to_owned()));
    }
}
