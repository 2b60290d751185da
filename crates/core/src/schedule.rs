//! Local date-times in an individual's time zone and the instants they stand for.
//!
//! PortaBilling stores activation and expiration as local dates in the individual's time
//! zone. The instant is derived with one documented rule for the two DST anomalies:
//! - a local time that falls in a gap (clocks jump forward) means the first valid instant
//!   after the gap, i.e. the transition itself;
//! - a local time that occurs twice (clocks fall back) means the earlier of the two.
//!
//! Both choices err towards "sooner", so an activation is never delayed by a skipped hour
//! and an expiration never lets access run an hour longer than the calendar says.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

/// Parses an IANA zone name, naming it in the error.
pub fn parse_time_zone(name: &str) -> DomainResult<TimeZone> {
    TimeZone::get(name).map_err(|_| DomainError::invalid("time zone", format!("{name:?} is not an IANA time zone")))
}

/// The instant a local date-time stands for in `tz`, by the rule of this module.
pub fn resolve_local(local: DateTime, tz: &TimeZone) -> DomainResult<Timestamp> {
    let ambiguous = tz.to_ambiguous_zoned(local);
    let bad =
        |e: jiff::Error| DomainError::invalid("local date-time", format!("{local} cannot be placed in time: {e}"));
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            offset.to_timestamp(local).map_err(bad)
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the post-gap offset the local time lands before the transition;
            // the next transition from there is the first instant that exists again.
            let probe = after.to_timestamp(local).map_err(bad)?;
            let transition = tz.following(probe).next().ok_or_else(|| {
                DomainError::invalid("local date-time", format!("{local} falls in a gap with no end"))
            })?;
            Ok(transition.timestamp())
        }
    }
}

/// A local date-time in a named zone together with the instant derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalInstant {
    /// What the administrator or source said, e.g. `2026-03-29T00:00:00`.
    pub local: DateTime,
    /// The IANA zone it is local to.
    pub time_zone: String,
    /// The instant, derived by [`resolve_local`].
    pub at: Timestamp,
}

impl LocalInstant {
    pub fn new(local: DateTime, time_zone: &str) -> DomainResult<Self> {
        let tz = parse_time_zone(time_zone)?;
        Ok(Self { local, time_zone: time_zone.to_owned(), at: resolve_local(local, &tz)? })
    }

    /// Parses `YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM[:SS]` as local to the zone.
    /// A date-time with an offset or `Z` — what Entra ID sends for `employeeHireDate` and
    /// `employeeLeaveDateTime` — is an instant: it is kept, and shown as the local time it
    /// is in the zone.
    pub fn parse(text: &str, time_zone: &str) -> DomainResult<Self> {
        if text.len() > 10
            && let Ok(at) = text.parse::<Timestamp>()
        {
            let tz = parse_time_zone(time_zone)?;
            return Ok(Self { local: at.to_zoned(tz).datetime(), time_zone: time_zone.to_owned(), at });
        }
        let local = parse_local(text)?;
        Self::new(local, time_zone)
    }
}

/// Parses a local date or date-time without offset.
pub fn parse_local(text: &str) -> DomainResult<DateTime> {
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && text.len() == 10
    {
        return Ok(date.at(0, 0, 0, 0));
    }
    text.parse::<DateTime>().map_err(|_| {
        DomainError::invalid(
            "local date-time",
            format!("{text:?} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS without offset"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str, tz: &str) -> String {
        LocalInstant::parse(local, tz).unwrap().at.to_string()
    }

    #[test]
    fn instants_with_an_offset_keep_their_instant() {
        let leave = LocalInstant::parse("2026-12-31T23:00:00Z", "Europe/Berlin").unwrap();
        assert_eq!(leave.at.to_string(), "2026-12-31T23:00:00Z");
        assert_eq!(leave.local.to_string(), "2027-01-01T00:00:00");
        let hire = LocalInstant::parse("2026-12-01T09:00:00-05:00", "Europe/Berlin").unwrap();
        assert_eq!(hire.at.to_string(), "2026-12-01T14:00:00Z");
        assert!(LocalInstant::parse("2026-12-01T09:00:00+99:00", "UTC").is_err());
    }

    #[test]
    fn ordinary_local_time() {
        assert_eq!(at("2026-07-01T09:00:00", "Europe/Berlin"), "2026-07-01T07:00:00Z");
        assert_eq!(at("2026-01-15", "America/New_York"), "2026-01-15T05:00:00Z");
    }

    #[test]
    fn gap_resolves_to_the_first_instant_after_it() {
        // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00Z).
        assert_eq!(at("2026-03-29T02:30:00", "Europe/Berlin"), "2026-03-29T01:00:00Z");
        // Santiago: midnight does not exist on 2026-09-06 (00:00 -04 → 01:00 -03).
        assert_eq!(at("2026-09-06", "America/Santiago"), "2026-09-06T04:00:00Z");
    }

    #[test]
    fn overlap_resolves_to_the_earlier_instant() {
        // Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        assert_eq!(at("2026-10-25T02:30:00", "Europe/Berlin"), "2026-10-25T00:30:00Z");
    }

    #[test]
    fn bad_input_is_named() {
        assert!(LocalInstant::parse("2026-02-30", "UTC").unwrap_err().to_string().contains("2026-02-30"));
        assert!(LocalInstant::parse("2026-01-01", "Nowhere/City").unwrap_err().to_string().contains("Nowhere/City"));
        assert!(parse_local("2026-01-01T10:00:00Z").is_err());
    }
}
