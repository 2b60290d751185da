//! The axum handlers of `/Users` and `/Groups` (one generic set over `Endpoint`), and
//! `/.search` across both.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;

use crate::auth::ScimCaller;
use crate::body::*;
use crate::error::ScimResult;
use crate::list::{self, ListParams};
use crate::render::*;
use crate::resources::*;
use crate::schema::ResourceKind;
use crate::state::ScimState;

/// Which endpoint a handler serves; one generic handler per operation serves both.
pub trait Endpoint: Send + Sync + 'static {
    const KIND: ResourceKind;
}

pub struct Users;

pub struct Groups;

impl Endpoint for Users {
    const KIND: ResourceKind = ResourceKind::User;
}

impl Endpoint for Groups {
    const KIND: ResourceKind = ResourceKind::Group;
}

pub async fn get_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ScimResult<Response> {
    get_one(state, caller, E::KIND, id, headers, q).await
}

/// `attributes` and `excludedAttributes` shape the answers of POST and PUT too (RFC 7644
/// §3.9).
pub async fn create_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let projection = projection_query(q.as_deref())?.projection();
    create(&state, &caller, E::KIND, &body, &projection).await
}

pub async fn replace_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let projection = projection_query(q.as_deref())?.projection();
    replace(&state, &caller, E::KIND, &id, &body, header_str(&headers, header::IF_MATCH), &projection).await
}

pub async fn patch_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let params = projection_query(q.as_deref())?;
    let projection = params.asked().then(|| params.projection());
    patch(&state, &caller, E::KIND, &id, &body, header_str(&headers, header::IF_MATCH), projection).await
}

pub async fn delete_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ScimResult<Outcome> {
    delete(&state, &caller, E::KIND, &id, header_str(&headers, header::IF_MATCH)).await
}

pub async fn list_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    RawQuery(q): RawQuery,
) -> ScimResult<Response> {
    let params = ListParams::from_query(q.as_deref())?;
    list::list(&state, &caller, Some(E::KIND), params).await
}

pub async fn search_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    list::list(&state, &caller, Some(E::KIND), ListParams::from_search(&body)?).await
}

pub async fn search_all(
    caller: ScimCaller,
    State(state): State<ScimState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    list::list(&state, &caller, None, ListParams::from_search(&body)?).await
}
