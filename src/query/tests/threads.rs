//! Flows applied on several threads at once give the same state as the
//! same flows applied one by one on one thread: applied by the thread that
//! owns their endpoint, as the Kafka source's workers apply them, or by
//! any thread in any order.

use std::collections::HashSet;
use std::sync::mpsc::channel;

use super::*;
use crate::generate::{bench, Generator, World};
use crate::query::{describe_internet_open_port, PortQuery};
use crate::state::{wall_now_ms, Prepared};

const THREADS: usize = 3;

fn every_row(e: &Engine, now: i64) -> PortResponse {
    let q = PortQuery {
        page_size: 1000,
        ..PortQuery::default()
    };
    describe_internet_open_port(e, &q, now, String::new())
}

/// A fresh engine for `world` with `flows` applied in order on this thread.
fn in_order(world: &World, flows: &[Flow], now: i64) -> Engine {
    let one = bench::engine(world);
    for f in flows {
        one.apply(f, now);
    }
    one
}

/// `got` holds what `want` holds: the same endpoints open and pending,
/// the same counts of what became of each flow, the same rows.
fn assert_same_state(got: &Engine, want: &Engine, now: i64) {
    assert!(want.open_endpoints() > 300, "{}", want.open_endpoints());
    assert_eq!(got.open_endpoints(), want.open_endpoints());
    assert_eq!(got.pending_endpoints(), want.pending_endpoints());
    assert_eq!(got.stats().snapshot(), want.stats().snapshot());
    assert_eq!(got.new_exposures(), want.new_exposures());
    let (a, b) = (every_row(got, now), every_row(want, now));
    assert_eq!(a.page_info, b.page_info);
    assert_eq!(a.data_list, b.data_list);
}

#[test]
fn every_endpoint_has_one_owner_and_every_thread_owns_some() {
    let world = World::new(7, 2_000);
    let e = bench::engine(&world);
    let now = wall_now_ms();
    let mut owned = [0usize; THREADS];
    for f in Generator::new(&world, 7, now - HOUR, HOUR).take(20_000) {
        let Ok(prepared) = e.prepare(&f, now) else {
            continue;
        };
        let owner = e.owner(&prepared, THREADS);
        assert!(owner < THREADS);
        assert_eq!(e.owner(&prepared, THREADS), owner, "the same every time");
        assert_eq!(e.owner(&prepared, 1), 0);
        owned[owner] += 1;
    }
    assert!(owned.iter().all(|&n| n > 1_000), "{owned:?}");
}

#[test]
fn flows_applied_by_their_owners_give_the_state_of_flows_applied_in_order() {
    let world = World::new(3, 2_000);
    let now = wall_now_ms();
    let flows: Vec<Flow> = Generator::new(&world, 3, now - 2 * HOUR, 2 * HOUR)
        .take(60_000)
        .collect();
    let one = in_order(&world, &flows, now);

    // Each thread prepares every THREADS-th chunk, applies what it owns
    // and passes the rest on, as the workers do.
    let owners = bench::engine(&world);
    std::thread::scope(|s| {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..THREADS).map(|_| channel::<Vec<Prepared>>()).unzip();
        for (me, inbox) in receivers.into_iter().enumerate() {
            let (peers, owners, flows) = (senders.clone(), &owners, &flows);
            s.spawn(move || {
                for chunk in flows.chunks(512).skip(me).step_by(THREADS) {
                    let mut outboxes: Vec<Vec<Prepared>> = vec![Vec::new(); THREADS];
                    for f in chunk {
                        if let Ok(p) = owners.prepare(f, now) {
                            let owner = owners.owner(&p, THREADS);
                            if owner == me {
                                owners.apply_prepared(p);
                            } else {
                                outboxes[owner].push(p);
                            }
                        }
                    }
                    for (owner, outbox) in outboxes.into_iter().enumerate() {
                        if !outbox.is_empty() {
                            peers[owner].send(outbox).unwrap();
                        }
                    }
                }
                drop(peers);
                for passed in inbox {
                    for p in passed {
                        owners.apply_prepared(p);
                    }
                }
            });
        }
    });

    assert!(one.open_endpoints() > 500, "{}", one.open_endpoints());
    assert_same_state(&owners, &one, now);
}

/// An endpoint's request and its first reply, applied on two threads at
/// once, make one endpoint, counted once, open.
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
    let one = in_order(&world, &flows, now);

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

    assert!(one.pending_endpoints() > 300, "{}", one.pending_endpoints());
    assert_same_state(&many, &one, now);
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
}
