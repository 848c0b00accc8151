//! The `DescribeInternetOpen*` answers, computed from the engine's state:
//! parameters, time windows, filters, ordering and paging (SPEC §6).

pub mod params;
pub mod port;

use serde::Serialize;

pub use params::{ParamError, PortQuery};
pub use port::{describe_internet_open_port, PortResponse, PortRow};

use crate::state::{hour_of, HourRange};

const DAY_S: i64 = 86_400;
/// Default range length before "now" (SPEC §5 Time).
const DEFAULT_RANGE_DAYS: i64 = 7;

/// `PageInfo` of a paged answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageInfo {
    #[serde(rename = "CurrentPage")]
    pub current_page: u32,
    #[serde(rename = "PageSize")]
    pub page_size: u32,
    #[serde(rename = "TotalCount")]
    pub total_count: u64,
}

/// The query range and the last 1, 7 and 30 days, in hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindows {
    /// `[StartTime, EndTime)` widened to every hour it overlaps.
    pub range: HourRange,
    pub last_1d: HourRange,
    pub last_7d: HourRange,
    pub last_30d: HourRange,
}

impl TimeWindows {
    /// The windows for a query at `now_ms` (UNIX ms). The default range ends
    /// just after now and starts 7 days before it, so the bucket holding
    /// now is always included.
    pub fn new(now_ms: i64, start_s: Option<i64>, end_s: Option<i64>) -> Self {
        let now_s = now_ms.div_euclid(1000);
        let end_s = end_s.unwrap_or(now_s + 1);
        let start_s = start_s.unwrap_or(now_s - DEFAULT_RANGE_DAYS * DAY_S);
        let hours = |start: i64, end: i64| HourRange {
            start: hour_of(start.saturating_mul(1000)),
            // The hour holding `end - 1s` is the last one overlapped.
            end: hour_of(end.saturating_sub(1).saturating_mul(1000)) + 1,
        };
        let last = |days: i64| hours(now_s - days * DAY_S, now_s + 1);
        TimeWindows {
            range: if start_s < end_s {
                hours(start_s, end_s)
            } else {
                HourRange { start: 0, end: 0 }
            },
            last_1d: last(1),
            last_7d: last(7),
            last_30d: last(30),
        }
    }

    /// The four windows in the order `[range, 1d, 7d, 30d]`.
    pub fn all(&self) -> [HourRange; 4] {
        [self.range, self.last_1d, self.last_7d, self.last_30d]
    }
}

/// `part` as a percentage of `whole`, rounded to one decimal, without a
/// trailing `.0` (`"77"`, `"11.1"`, `"0"`).
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0".to_owned();
    }
    // Tenths of a percent, rounded half up, in integers.
    let tenths = (u128::from(part) * 2000 + u128::from(whole)) / (2 * u128::from(whole));
    if tenths % 10 == 0 {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// Cuts page `current_page` of `page_size` rows out of the ordered list.
pub fn paginate<T>(list: Vec<T>, current_page: u32, page_size: u32) -> (PageInfo, Vec<T>) {
    let total_count = list.len() as u64;
    let skip = u64::from(current_page.saturating_sub(1)) * u64::from(page_size);
    let page: Vec<T> = list
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(page_size as usize)
        .collect();
    let info = PageInfo {
        current_page,
        page_size,
        total_count,
    };
    (info, page)
}

/// A request id in Alibaba Cloud's shape (`F3637663-991B-547F-9163-1A5AC367A1B2`).
pub fn new_request_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests;
