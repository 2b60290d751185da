//! The HTTP surface: health, readiness and metrics, and the operator admin API under
//! `/admin/v1`. Later capabilities (SCIM, Portal API, OpenID provider) add their routers
//! here.

mod admin;
mod bodies;
mod error;
mod portal;
mod query;
mod state;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use error::{ApiError, ApiResult};
pub use state::{AppState, REQUEST_ID, bearer_match};

pub fn router(
    state: AppState,
    scim: idbridge_scim::ScimState,
    sso: Router,
    server: &crate::config::ServerSettings,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/admin/v1", admin::router())
        .nest("/portal/v1", portal::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .nest("/scim/v2/{tenant}", idbridge_scim::router(scim))
        .merge(sso)
        .layer(axum::extract::DefaultBodyLimit::max(server.max_body_bytes))
        // A body that stops arriving fails its read (the connection is then closed)
        // instead of holding the request open.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(server.body_read_timeout()))
        .layer(middleware::from_fn(catch_panics))
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers within a second.
async fn readyz(State(state): State<AppState>) -> Response {
    // A store that answers reads but cannot write (a full disk) is not ready: a one-row
    // write (a lease that expires at once) proves it can.
    let operator = state.operator.clone();
    let probe = async move {
        match tokio::time::timeout(Duration::from_secs(3), operator.probe_writable()).await {
            Ok(result) => result,
            Err(_) => Err(idbridge_core::DomainError::Storage("a write did not finish within 3 s".into())),
        }
    };
    match tokio::time::timeout(Duration::from_secs(4), probe).await {
        // A backlog of owed reconciliations does not make the daemon unready (requests are
        // served and the intents are durable); it is shown so that on-call can see it.
        Ok(Ok(())) => {
            let mut ready = json!({ "status": "ready" });
            if let Some(queue) = state.intent_queue.get() {
                ready["reconciliation"] = json!(queue);
            }
            // A portal that keeps failing does not make idbridge unready either; its
            // quarantined connector is named.
            match state.operator.connectors().quarantined().await {
                Ok(quarantined) if !quarantined.is_empty() => {
                    ready["connectors"] = json!({ "quarantined": quarantined })
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the connectors' health for /readyz"),
            }
            Json(ready).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": "database" })))
                .into_response()
        }
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "reason": "database timeout" })))
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => ([("content-type", "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

/// A panic in a handler is answered, never a dropped connection: logged with the request
/// id, and a 500 in the protocol's own error format (SCIM's under /scim, the API's
/// elsewhere).
async fn catch_panics(request: axum::extract::Request, next: middleware::Next) -> Response {
    use futures::FutureExt;
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let scim = request.uri().path().starts_with("/scim/");
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            metrics::counter!("idbridge_http_panics_total").increment(1);
            tracing::error!(request_id, panic = message, "request handler panicked");
            if scim {
                idbridge_scim::error::ScimError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error (request {request_id}); nothing more is known to the client"),
                )
                .into_response()
            } else {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error (request {request_id})"),
                )
                .into_response()
            }
        }
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Counts and times every request by route template (never by raw path, which would let
/// clients create unbounded label values).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("idbridge_http_requests_total", &labels).increment(1);
    metrics::histogram!("idbridge_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}
