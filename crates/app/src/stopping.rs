//! Shutdown as a value. Long jobs (a directory run) watch it and end cleanly when the
//! process is asked to stop (SIGINT, SIGTERM): recorded as cancelled, their lease
//! released, so the next run can start at once instead of waiting for a lease to expire.

use tokio::sync::watch;

/// What a job watches.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

/// What the signal handler (or `serve`'s shutdown) fires.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

impl Stopping {
    pub fn new() -> (StopHandle, Stopping) {
        let (tx, rx) = watch::channel(false);
        (StopHandle(tx), Stopping(rx))
    }

    /// Never asked to stop (tools and tests that run a job to its end).
    pub fn never() -> Stopping {
        let (tx, rx) = watch::channel(false);
        // The sender lives as long as the process: `requested` then never returns.
        std::mem::forget(tx);
        Stopping(rx)
    }

    /// Returns once the process is asked to stop.
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            // Nobody can ask any more.
            std::future::pending::<()>().await;
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Stops on the first SIGINT or SIGTERM; a second one ends the process at once (exit
/// status 130), for an operator who does not want to wait for the clean end.
pub fn on_signals(handle: StopHandle) {
    tokio::spawn(async move {
        signal().await;
        tracing::warn!("asked to stop: ending the runs in progress (again to stop at once)");
        handle.stop();
        signal().await;
        std::process::exit(130);
    });
}

/// The next SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
