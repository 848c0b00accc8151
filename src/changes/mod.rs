//! Changes in what is exposed, judged against what the organisation says it
//! expects: [`events`] numbers, keeps and serves the changes the engine
//! sees; [`expected`] reads the list of expected exposures and answers
//! whether an endpoint is on it; [`watch`] holds the list in use and
//! re-reads its file.

pub mod events;
pub mod expected;
pub mod watch;
