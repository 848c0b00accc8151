//! What the crate's unit tests share: engines over the test assets, and
//! builders of flows. Written once for both kits, in
//! `tests/support/shared.rs`: the integration tests' `support` has the
//! same items.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::Classifier;
use crate::config::Clock;
use crate::flow::tcp_flags::{ACK, PSH, SYN};
use crate::flow::{Flow, PROTO_TCP};
use crate::state::{Engine, Settings};

include!("../tests/support/shared.rs");
