//! The API served in this process (`api::serve` on a real loopback socket)
//! over an engine the test fills (`support::engine()`), as `exposure run`
//! serves it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exposure::api::{self, ApiState};
use exposure::changes::watch::Watched;
use exposure::config::{ApiConfig, Auth};
use exposure::health::Health;
use exposure::metrics::Metrics;
use exposure::state::Engine;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Health of an instance that has restored its state and holds partitions.
pub fn ready() -> Arc<Health> {
    let health = Arc::new(Health::default());
    health.set_restored(true);
    health.set_assigned(true);
    health
}

/// `[api]` with the defaults but without authentication.
pub fn no_auth() -> ApiConfig {
    ApiConfig {
        auth: Auth::None,
        ..ApiConfig::default()
    }
}

/// A runtime of two worker threads, for a test that is not async itself.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `api::serve` on a free loopback port, until [`ApiServer::stop`].
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Serves the router of this state (`config.listen` becomes the port
    /// bound) in the current runtime.
    pub async fn start(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        config: ApiConfig,
        wall_clock: fn() -> i64,
    ) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ApiState {
            engine,
            expected: Arc::new(Watched::empty()),
            metrics,
            health,
            config: ApiConfig {
                listen: addr,
                ..config
            },
            wall_clock,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(api::serve(listener, api::router(state), stop.clone()));
        ApiServer { addr, stop, task }
    }

    /// Shuts down gracefully; what `serve` returned (within 10 s).
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic")
    }
}
