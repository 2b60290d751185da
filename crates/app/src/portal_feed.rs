//! The Portal API's change feed: a tenant's change events in outbox order, from a cursor
//! a portal keeps. A page never moves past a young hole in the positions — an event
//! another instance has not committed yet would otherwise fall behind the cursor for good
//! (the same rule as webhook delivery, `delivery::settled`).

use idbridge_core::DomainResult;
use idbridge_core::audit::ChangeEvent;
use idbridge_core::tenant::TenantSlug;

use crate::operator::Operator;

/// How far past the cursor the outbox is looked at for holes.
const LOOK_AHEAD: u32 = 1000;

/// One page of the feed; `next` is the cursor to ask from next time.
#[derive(Debug)]
pub struct FeedPage {
    pub changes: Vec<(i64, ChangeEvent)>,
    pub next: i64,
}

/// The tenant's change events after position `after` (at most `limit`).
pub async fn changes(operator: &Operator, slug: &TenantSlug, after: i64, limit: u32) -> DomainResult<FeedPage> {
    let tenant = operator.tenant(slug).await?;
    let after = after.max(0);
    let mut events = operator.change_events(tenant.id, after, limit).await?;
    let global = operator.all_change_events(after, LOOK_AHEAD).await?;
    let ready = crate::delivery::settled(after, &global, idbridge_core::clock::now(), crate::delivery::GAP_WAIT);
    let checked_up_to = match global.get(ready) {
        Some((hole, _)) => Some(*hole),
        // Only the first LOOK_AHEAD positions were looked at.
        None if global.len() == LOOK_AHEAD as usize => global.last().map(|(position, _)| position + 1),
        None => None,
    };
    if let Some(limit) = checked_up_to {
        events.retain(|(position, _)| *position < limit);
    }
    let next = events.last().map_or(after, |(position, _)| *position);
    Ok(FeedPage { changes: events, next })
}
