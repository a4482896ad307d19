//! The signals that ask a binary to stop: SIGTERM (what the kubelet sends
//! before the grace period runs out) and Ctrl-C.

/// Returns when the process is asked to stop. Where SIGTERM cannot be
/// watched (not a Unix, or the handler cannot be installed), Ctrl-C alone.
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
