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
    /// Peers whose `X-Forwarded-For` is believed (`[server] trusted_proxies`).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
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
        let (stream, peer) = tokio::select! {
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
        // The client's address travels with each request (`ConnectInfo`): sign-in
        // throttles failures per client address.
        let trusted = limits.trusted_proxies.clone();
        let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |request: axum::http::Request<_>| {
                let mut request = canonical_request(request);
                let client = client_address(peer, request.headers(), &trusted);
                request.extensions_mut().insert(axum::extract::ConnectInfo(client));
                request
            },
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

/// Who sent the request: the peer, or — when the peer is a trusted proxy — the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy (proxies append; what
/// a client wrote itself comes before, and is not believed). Port 0 when forwarded.
pub fn client_address(
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::SocketAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if trusted.is_empty() || !is_trusted(peer.ip()) {
        return peer;
    }
    // At most 32 hops are looked at: a header of a million commas costs nothing more.
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    for hop in hops.iter().rev().take(32) {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return std::net::SocketAddr::new(ip, 0),
            // Not an address (a proxy's `unknown`, garbage): the chain cannot be followed
            // past it; the hop that wrote it is the client as far as we can tell.
            Err(_) => break,
        }
    }
    peer
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

#[cfg(test)]
mod client_address_tests {
    use super::client_address;
    use axum::http::HeaderMap;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap(), "192.0.2.7/32".parse().unwrap()];
        let proxy = "10.1.2.3:5555".parse().unwrap();
        let stranger = "198.51.100.9:4444".parse().unwrap();
        // A client that is not a proxy cannot choose its address.
        assert_eq!(client_address(stranger, &headers(&["203.0.113.5"]), &trusted), stranger);
        // Behind the proxy: the last address not itself a proxy; what the client wrote
        // before it is not believed.
        let forwarded = headers(&["6.6.6.6, 203.0.113.5", "192.0.2.7"]);
        assert_eq!(client_address(proxy, &forwarded, &trusted).ip().to_string(), "203.0.113.5");
        assert_eq!(client_address(proxy, &headers(&["2001:db8::1"]), &trusted).ip().to_string(), "2001:db8::1");
        // Nothing usable: the proxy itself.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_address(proxy, &headers(&["unknown"]), &trusted), proxy);
        assert_eq!(client_address(proxy, &headers(&["10.9.9.9"]), &trusted), proxy);
        // Nothing trusted (the default): always the peer.
        assert_eq!(client_address(proxy, &headers(&["203.0.113.5"]), &[]), proxy);
        // A long chain is cut short, not walked.
        let long = vec!["10.0.0.1"; 10_000].join(",");
        assert_eq!(client_address(proxy, &headers(&[&long]), &trusted), proxy);
    }
}
