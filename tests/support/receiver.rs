//! A webhook receiver on 127.0.0.1, served on a thread of its own: it
//! records every request and answers with the status it is set to (0: it
//! never answers, as a hung receiver).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// One request the receiver got, and the status it answered (0: none).
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
    pub addr: Option<SocketAddr>,
}

impl Receiver {
    /// Listening, answering `status`.
    pub fn start(status: u16) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let receiver = Receiver {
            addr: Some(listener.local_addr().unwrap()),
            ..Receiver::default()
        };
        receiver.set_status(status);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await
            })
        });
        receiver
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr.expect("started"))
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = r.status.load(Ordering::SeqCst);
    r.got.lock().unwrap().push(Received {
        headers,
        body,
        answered: status,
    });
    match status {
        0 => std::future::pending().await,
        code => StatusCode::from_u16(code).unwrap(),
    }
}
