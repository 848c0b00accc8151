//! This process's `tracing` logs, captured where a test can read them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

/// Where the logs go: an anonymous temporary file (gone with the process).
#[derive(Clone)]
pub struct Captured(Arc<File>);

impl Captured {
    /// Every line logged so far.
    pub fn text(&self) -> String {
        let len = self.0.metadata().expect("the log file").len();
        let mut raw = vec![0; usize::try_from(len).unwrap()];
        self.0.read_exact_at(&mut raw, 0).expect("the log is read");
        String::from_utf8_lossy(&raw).into_owned()
    }
}

/// Sends this process's logs up to `level` into a [`Captured`]. Global, not
/// scoped: a scoped subscriber misses callsites other threads registered
/// first. The first call installs it, with its level; later calls share it.
pub fn capture_logs(level: tracing::Level) -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured(Arc::new(tempfile::tempfile().expect("a log file")));
        tracing_subscriber::fmt()
            .with_writer(Arc::clone(&captured.0))
            .with_ansi(false)
            .with_max_level(level)
            .init();
        captured
    })
    .clone()
}
