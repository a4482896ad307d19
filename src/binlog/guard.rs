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

/// Why a guarded parser call failed.
#[derive(Debug, thiserror::Error)]
pub enum Guarded<E> {
    /// The parser refused the input with its own error.
    #[error("{0}")]
    Refused(#[source] E),
    /// The parser panicked on input it did not expect; the panic's message.
    #[error("malformed event ({0})")]
    Panicked(String),
}

/// Why mysql_common could not parse an event body.
pub type ParseError = Guarded<std::io::Error>;

/// Runs a parser; a panic inside it becomes [`Guarded::Panicked`].
pub fn guarded<T, E>(parse: impl FnOnce() -> Result<T, E>) -> Result<T, Guarded<E>> {
    install_quiet_hook();
    let was_quiet = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(parse));
    QUIET.with(|q| q.set(was_quiet));
    match outcome {
        Ok(result) => result.map_err(Guarded::Refused),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "parser failed".to_owned());
            Err(Guarded::Panicked(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let result: Result<(), Guarded<std::io::Error>> = guarded(|| panic!("boom"));
        let error = result.unwrap_err();
        assert!(matches!(&error, Guarded::Panicked(m) if m == "boom"));
        assert_eq!(error.to_string(), "malformed event (boom)");
        assert_eq!(guarded(|| Ok::<_, std::io::Error>(5)).unwrap(), 5);
        let refused = guarded(|| Err::<(), _>(std::io::Error::other("no"))).unwrap_err();
        assert!(matches!(&refused, Guarded::Refused(_)));
        assert_eq!(refused.to_string(), "no");
    }
}
