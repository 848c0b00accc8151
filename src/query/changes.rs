//! `DescribeExposureChanges` (`docs/api.md#exposure-changes`): the events
//! the engine recorded ([`crate::changes::events`]), filtered, newest first
//! and cut into a page.
//!
//! The answer reads the event log, not the endpoints' state, so it costs
//! what the log holds (at most `HISTORY_LIMIT` events), never a walk of
//! the endpoints. Only the page's events are copied, and turned into JSON in the
//! documented field order.

use super::params::IN_ASSESSMENT;
use super::{range_seconds, PageInfo, Paged, Query};
use crate::changes::events::{Filter, Log};

/// `{RequestId, PageInfo, DataList}`, each element an event object
/// (`docs/api.md#the-event-object`).
pub type ChangesResponse = Paged<crate::changes::events::Event>;

/// The events of `log` that `q` asks for, at `now_ms` on the window clock
/// (the clock events are dated on, so the default range holds the newest).
/// Without a log (an engine that does not track changes) there are none.
pub fn describe_exposure_changes(
    log: Option<&Log>,
    q: &Query,
    now_ms: i64,
    request_id: String,
) -> ChangesResponse {
    let skip = u64::from(q.current_page.saturating_sub(1)) * u64::from(q.page_size);
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let (total, page) = match (log, filter(q, now_ms)) {
        (Some(log), Some(filter)) => log.page(&filter, skip, q.page_size as usize),
        _ => (0, Vec::new()),
    };
    Paged {
        request_id,
        page_info: PageInfo {
            current_page: q.current_page,
            page_size: q.page_size,
            total_count: total as u64,
        },
        data_list: page,
    }
}

/// The log's filter for `q`, or `None` when nothing can match (`RiskLevel`
/// `-1`, "in assessment": every event is assessed when it is recorded).
fn filter(q: &Query, now_ms: i64) -> Option<Filter> {
    let risk_level = match q.risk_level {
        Some(IN_ASSESSMENT) => return None,
        level => level.map(|r| u8::try_from(r).expect("RiskLevel is validated as 0 to 3")),
    };
    let (start, end) = range_seconds(now_ms, q.start_time, q.end_time);
    Some(Filter {
        start,
        end,
        kind: q.kind,
        risk_level,
        expected: q.expected,
        port: q.port,
        service: q.service_name.clone(),
    })
}

#[cfg(test)]
mod tests;
