//! Deleting settled intents off the request path (`core::intent`): the request that
//! reconciled its people hands the ids over and answers at once.

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::ports::IntentQueue;

/// Settled intents are deleted in batches, off the request path: a request that has
/// reconciled its people hands their intent ids here and answers at once. One DELETE per
/// batch instead of one write transaction per request (on SQLite every statement queues
/// behind the one writer). Ids lost in a crash before their batch is written are found
/// settled by the worker (their people are unchanged) and deleted then.
#[derive(Clone)]
pub struct Clearer {
    sender: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
}

impl Clearer {
    /// Starts the batching task over `queue`.
    pub fn start(queue: Arc<dyn IntentQueue>) -> Self {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<i64>>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                // Whatever else arrived meanwhile joins the batch.
                let mut batch = first;
                while batch.len() < 5000 {
                    match receiver.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                if let Err(e) = queue.clear_intents(&batch).await {
                    tracing::debug!(error = %e, intents = batch.len(), "settled intents not cleared; the worker settles them");
                }
                // A short pause lets the next batch gather (at most this much later).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { sender }
    }

    /// Hands settled intents over; never waits.
    pub fn clear(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            let _ = self.sender.send(ids);
        }
    }
}
