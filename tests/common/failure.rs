//! Whether any test of this binary has failed, so that what holds its logs
//! (a control plane's run directory, a kubelet stand-in's pod directories)
//! is kept for the person reading the failure instead of being purged when
//! the process exits.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static FAILED: AtomicBool = AtomicBool::new(false);

/// Starts noting panics (idempotent): the previous hook still prints them.
pub fn watch() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            FAILED.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Whether a panic was seen since [`watch`] (a failed assertion in any
/// test, or this thread panicking now).
pub fn seen() -> bool {
    FAILED.load(Ordering::SeqCst) || std::thread::panicking()
}

/// Where [`preserve`] copies logs to: `target/tmp/failed-logs`, which
/// `scripts/test` empties before a run and lists after a failed one.
pub fn logs_root() -> std::path::PathBuf {
    // CARGO_TARGET_TMPDIR exists for tests and benches only; anything else
    // built from these modules uses the temporary directory.
    option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from)
        .join("failed-logs")
}

/// Copies the `*.log` files of `dir` (recursively, leaving out the
/// directories named in `skip`, such as etcd's data; no kubeconfig or key) to `logs_root()/<name>`, so they
/// outlive the purge that follows; returns where they went.
pub fn preserve(
    dir: &std::path::Path,
    name: &str,
    skip: &[&str],
) -> std::io::Result<std::path::PathBuf> {
    fn copy(from: &std::path::Path, to: &std::path::Path, skip: &[&str]) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !skip.iter().any(|s| file_name == *s) {
                    copy(&entry.path(), &to.join(&file_name), skip)?;
                }
            } else if kind.is_file() && file_name.to_string_lossy().ends_with(".log") {
                std::fs::copy(entry.path(), to.join(&file_name))?;
            }
        }
        Ok(())
    }
    let to = logs_root().join(name);
    copy(dir, &to, skip)?;
    Ok(to)
}
