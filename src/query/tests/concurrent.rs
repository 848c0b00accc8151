//! Flows applied by several threads at once, each taking every few flows
//! whatever their endpoint, give the state of the same flows applied in
//! order on one thread: an endpoint's request and its first reply, applied
//! on two threads at once, make one endpoint, counted once, open.

use std::collections::HashSet;

use super::*;
use crate::generate::{bench, Generator, World};
use crate::query::{describe_internet_open_port, PortQuery};
use crate::state::wall_now_ms;

const THREADS: usize = 4;

#[test]
fn flows_applied_by_any_thread_give_the_state_of_flows_applied_in_order() {
    let world = World::new(11, 1_000);
    let now = wall_now_ms();
    // Without labels: which label an endpoint had when it opened (its
    // risk in `new_exposures`) depends on the order its flows came in, as
    // do its port's probes (a request counts as one only if it is applied
    // before the reply), which are not compared.
    let flows: Vec<Flow> = Generator::new(&world, 11, now - HOUR, HOUR)
        .take(40_000)
        .map(|f| Flow { label: None, ..f })
        .collect();

    let one = bench::engine(&world);
    for f in &flows {
        one.apply(f, now);
    }

    // Flow i goes to thread i % THREADS: a request and its reply, next to
    // each other, race on two threads.
    let many = bench::engine(&world);
    std::thread::scope(|s| {
        for me in 0..THREADS {
            let (many, flows) = (&many, &flows);
            s.spawn(move || {
                for f in flows.iter().skip(me).step_by(THREADS) {
                    many.apply(f, now);
                }
            });
        }
    });

    assert!(one.open_endpoints() > 300, "{}", one.open_endpoints());
    assert!(one.pending_endpoints() > 300, "{}", one.pending_endpoints());
    assert_eq!(many.open_endpoints(), one.open_endpoints());
    assert_eq!(many.pending_endpoints(), one.pending_endpoints());
    assert_eq!(many.stats().snapshot(), one.stats().snapshot());
    assert_eq!(many.new_exposures(), one.new_exposures());

    // Each endpoint held once, as its counters say.
    let (mut seen, mut open, mut pending) = (HashSet::new(), 0, 0);
    many.for_each(|endpoint, state| {
        assert!(seen.insert(*endpoint), "{endpoint:?} held twice");
        if state.ever_open {
            open += 1;
        } else {
            pending += 1;
        }
    });
    assert_eq!(
        (open, pending),
        (one.open_endpoints(), one.pending_endpoints())
    );

    let q = PortQuery {
        page_size: 1000,
        ..PortQuery::default()
    };
    let a = describe_internet_open_port(&many, &q, now, String::new());
    let b = describe_internet_open_port(&one, &q, now, String::new());
    assert_eq!(a.page_info, b.page_info);
    assert_eq!(a.data_list, b.data_list);
}
