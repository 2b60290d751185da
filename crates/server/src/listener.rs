//! The HTTP listener with connection discipline: idbridge faces the internet (SCIM for
//! Entra and Okta, the login pages, the token endpoint), so no client may hold a
//! connection for free. Every connection has a header-read deadline (which also bounds an
//! idle keep-alive connection: hyper starts it whenever it waits for a request), every
//! request body a per-chunk read deadline (`http::router`'s body timeout), and the number
//! of connections a cap beyond which new ones get a fast 503 and are closed. HTTP/1 and
//! HTTP/2 limits (header sizes, concurrent streams) come from `[server]`.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What `[server]` says about connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
}

/// The answer to a connection past the cap: written at once, without reading the request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 71\r\n\r\n\
{\"error\":\"unavailable\",\"message\":\"too many connections; retry shortly\"}";

/// Serves `app` until `shutdown` resolves, then lets in-flight connections finish (the
/// caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a moment instead of spinning, and keep serving the others.
                    metrics::counter!("idbridge_http_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("idbridge_http_connections_refused_total").increment(1);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            canonical_request,
        ));
        let builder = builder.clone();
        let header_read_timeout = limits.header_read_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            metrics::gauge!("idbridge_http_connections_open").increment(1.0);
            // Until the first byte, hyper has not chosen HTTP/1 or HTTP/2 and no header
            // deadline runs: a connection that sends nothing is closed here.
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                metrics::gauge!("idbridge_http_connections_open").decrement(1.0);
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let connection = watcher.watch(connection);
            // A connection ends with an error for reasons of the client's (a reset, a
            // header deadline passed): nothing to report beyond debug.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
            metrics::gauge!("idbridge_http_connections_open").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Paths rewritten before routing: SCIM endpoints matched case-insensitively and with a
/// trailing slash (`idbridge_scim::canonical_path`), as clients expect of common servers.
fn canonical_request<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    if let Some(path) = idbridge_scim::canonical_path(request.uri().path()) {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(rewritten) = path_and_query.parse() {
            parts.path_and_query = Some(rewritten);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}
