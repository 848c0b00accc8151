//! The `DescribeInternetOpen*` answers, computed from the engine's state:
//! parameters, time windows, filters, ordering and paging
//! (`docs/api.md#rules-every-action-shares`, `docs/api.md#describeinternetopenport`).
//!
//! `DescribeInternetOpenPort` over the last 1, 7 or 30 days (its default
//! range is the last 7) reads the engine's port index: one entry per (port,
//! protocol), kept as flows arrive. Everything else reads the state through
//! one walk, [`scan::scan`], which yields each endpoint open in the range
//! with its traffic and service; [`scan::Group`] sums endpoints into the
//! rows of `DescribeInternetOpenPort` (by port), `DescribeInternetOpenIp`
//! (by address) and `DescribeInternetOpenService` (by service).
//! `DescribeInternetOpenDetail` lists the endpoints themselves and
//! `DescribeInternetOpenStatistic` counts them. Both ways give the same
//! answer (`src/query/tests/index.rs` holds them to it).
//!
//! `DescribeExposureChanges` ([`changes`]) answers from the engine's event
//! log instead of its state.

pub mod changes;
pub mod detail;
pub mod ip;
pub mod params;
pub mod port;
pub mod scan;
pub mod service;
pub mod statistic;

use serde::Serialize;

pub use changes::{describe_exposure_changes, ChangesResponse};
pub use detail::{describe_internet_open_detail, DetailResponse, DetailRow};
pub use ip::{describe_internet_open_ip, IpResponse, IpRow};
pub use params::{ParamError, PortQuery, Query};
pub use port::{describe_internet_open_port, PortResponse, PortRow};
pub use service::{describe_internet_open_service, ServiceResponse, ServiceRow};
pub use statistic::{describe_internet_open_statistic, StatisticResponse};

use crate::changes::expected::Expected;
use crate::state::index::recent_windows;
use crate::state::{hour_of, Engine, HourRange};

/// The Actions answered, as in the `cloudfw` API version `2017-12-07`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Port,
    Ip,
    Service,
    Detail,
    Statistic,
    /// `DescribeExposureChanges`: not in `cloudfw`; the exposure changes
    /// (`docs/api.md#exposure-changes`).
    Changes,
}

impl Action {
    /// Every Action, in the order of [`Action::NAMES`].
    pub const ALL: [Action; 6] = [
        Action::Port,
        Action::Ip,
        Action::Service,
        Action::Detail,
        Action::Statistic,
        Action::Changes,
    ];

    /// The Action names, as sent in `Action` or `x-acs-action`.
    pub const NAMES: [&'static str; 6] = [
        "DescribeInternetOpenPort",
        "DescribeInternetOpenIp",
        "DescribeInternetOpenService",
        "DescribeInternetOpenDetail",
        "DescribeInternetOpenStatistic",
        "DescribeExposureChanges",
    ];

    pub const fn name(self) -> &'static str {
        Action::NAMES[self as usize]
    }

    /// The Action called `name` (case-sensitive, as Alibaba Cloud).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The request parameters of the Action's SDK model that this service
    /// reads (`alibabacloud_cloudfw20171207.models`).
    pub fn params(self) -> &'static [params::Param] {
        use params::Param::*;
        match self {
            Action::Port => &[
                SourceIp,
                Lang,
                ServiceName,
                ServiceNameFuzzy,
                RiskLevel,
                SuggestLevel,
                Port,
                StartTime,
                EndTime,
                CurrentPage,
                PageSize,
            ],
            Action::Ip => &[
                Lang,
                ServiceName,
                RiskLevel,
                Port,
                PublicIp,
                Inventory,
                StartTime,
                EndTime,
                CurrentPage,
                PageSize,
            ],
            Action::Service => &[
                SourceIp,
                Lang,
                ServiceName,
                ServiceNameFuzzy,
                RiskLevel,
                SuggestLevel,
                Port,
                StartTime,
                EndTime,
                CurrentPage,
                PageSize,
            ],
            Action::Detail => &[
                SourceIp,
                Lang,
                ServiceName,
                ServiceNameFuzzy,
                RiskLevel,
                SuggestLevel,
                Port,
                PublicIp,
                Inventory,
                StartTime,
                EndTime,
                CurrentPage,
                PageSize,
                SortList,
            ],
            Action::Statistic => &[SourceIp, Lang, StartTime, EndTime],
            // No SDK model: the parameters of docs/api.md#exposure-changes.
            Action::Changes => &[
                Lang,
                Kind,
                RiskLevel,
                Expected,
                Port,
                ServiceName,
                StartTime,
                EndTime,
                CurrentPage,
                PageSize,
            ],
        }
    }
}

/// The answer of one Action, serialized as its own body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Port(PortResponse),
    Ip(IpResponse),
    Service(ServiceResponse),
    Detail(DetailResponse),
    Statistic(StatisticResponse),
    Changes(ChangesResponse),
}

/// Computes the answer of `action` for `q` at `wall_now_ms`, judging open
/// endpoints against `expected` where the answer says which are expected.
pub fn answer(
    action: Action,
    engine: &Engine,
    expected: &Expected,
    q: &Query,
    wall_now_ms: i64,
    request_id: String,
) -> Answer {
    match action {
        Action::Port => Answer::Port(describe_internet_open_port(
            engine,
            q,
            wall_now_ms,
            request_id,
        )),
        Action::Ip => Answer::Ip(describe_internet_open_ip(
            engine,
            q,
            wall_now_ms,
            request_id,
        )),
        Action::Service => Answer::Service(describe_internet_open_service(
            engine,
            q,
            wall_now_ms,
            request_id,
        )),
        Action::Detail => Answer::Detail(describe_internet_open_detail(
            engine,
            q,
            wall_now_ms,
            request_id,
        )),
        Action::Statistic => Answer::Statistic(describe_internet_open_statistic(
            engine,
            expected,
            q,
            wall_now_ms,
            request_id,
        )),
        Action::Changes => Answer::Changes(describe_exposure_changes(
            engine.changes().map(|log| &**log),
            q,
            engine.now_ms(wall_now_ms),
            request_id,
        )),
    }
}

const DAY_S: i64 = 86_400;
/// Default range length before "now" (`docs/semantics.md#time`).
const DEFAULT_RANGE_DAYS: i64 = 7;

/// The body of a paged answer: `{RequestId, PageInfo, DataList}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Paged<Row> {
    pub request_id: String,
    pub page_info: PageInfo,
    pub data_list: Vec<Row>,
}

/// `PageInfo` of a paged answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PageInfo {
    pub current_page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// `[StartTime, EndTime)` in UNIX seconds at `now_ms`, with the defaults
/// filled in: the range ends just after now (so the second holding now is
/// included) and starts 7 days before it.
pub fn range_seconds(now_ms: i64, start_s: Option<i64>, end_s: Option<i64>) -> (i64, i64) {
    let now_s = now_ms.div_euclid(1000);
    (
        start_s.unwrap_or(now_s - DEFAULT_RANGE_DAYS * DAY_S),
        end_s.unwrap_or(now_s + 1),
    )
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
        let (start_s, end_s) = range_seconds(now_ms, start_s, end_s);
        let hours = |start: i64, end: i64| HourRange {
            start: hour_of(start.saturating_mul(1000)),
            // The hour holding `end - 1s` is the last one overlapped.
            end: hour_of(end.saturating_sub(1).saturating_mul(1000)) + 1,
        };
        let [last_1d, last_7d, last_30d] = recent_windows(hour_of(now_ms));
        TimeWindows {
            range: if start_s < end_s {
                hours(start_s, end_s)
            } else {
                HourRange { start: 0, end: 0 }
            },
            last_1d,
            last_7d,
            last_30d,
        }
    }

    /// Which of the last 1, 7 and 30 days (0, 1, 2) the range is, if any:
    /// such ranges are answered from the port index.
    pub fn range_is_recent(&self) -> Option<usize> {
        [self.last_1d, self.last_7d, self.last_30d]
            .iter()
            .position(|w| *w == self.range)
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
