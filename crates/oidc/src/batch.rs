//! Group commit for issued tokens: concurrent token requests hand their rows to one
//! writer task, which stores everything waiting in one multi-row INSERT. Under load a
//! code exchange then costs one statement fewer (the statement, not the rows, is what a
//! SQLite write costs most of); alone, a request waits for nobody.

use std::sync::Arc;

use idbridge_core::ports::SsoStore;
use idbridge_core::sso::OAuthToken;
use idbridge_core::{DomainError, DomainResult};
use tokio::sync::{mpsc, oneshot};

/// At most this many requests' tokens go into one statement.
const MAX_BATCH: usize = 64;

type Job = (Vec<OAuthToken>, oneshot::Sender<DomainResult<()>>);

#[derive(Clone)]
pub struct TokenWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for TokenWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWriter").finish_non_exhaustive()
    }
}

impl TokenWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn SsoStore>) -> Self {
        let (jobs, mut queue) = mpsc::channel::<Job>(1024);
        tokio::spawn(async move {
            let mut waiting: Vec<Job> = Vec::with_capacity(MAX_BATCH);
            while queue.recv_many(&mut waiting, MAX_BATCH).await > 0 {
                let rows: Vec<OAuthToken> = waiting.iter().flat_map(|(tokens, _)| tokens.iter().cloned()).collect();
                let result = store.put_tokens(&rows).await;
                for (_, reply) in waiting.drain(..) {
                    let _ = reply.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(DomainError::Storage(e.to_string())),
                    });
                }
            }
        });
        Self { jobs }
    }

    /// Stores the tokens (with whatever other requests are storing right now).
    pub async fn put(&self, tokens: Vec<OAuthToken>) -> DomainResult<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((tokens, reply)).await.map_err(|_| DomainError::Internal("the token writer stopped".into()))?;
        answer.await.map_err(|_| DomainError::Internal("the token writer stopped".into()))?
    }
}
