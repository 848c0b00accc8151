//! The expected list in use, shared by the API and `/metrics`, and its
//! re-reading (`docs/operations.md#expected-exposures`): on SIGHUP, and when
//! the file's (modified time, length) differs from the last read. A good
//! file replaces the list; a file that cannot be read or has a problem
//! leaves the previous list in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use super::expected::Expected;

/// The file's (modified time, length): what a poll compares to see a change.
type Stamp = (Option<SystemTime>, u64);

/// The expected list in use and the file it comes from.
pub struct Watched {
    /// `None`: no file configured; the list stays empty.
    path: Option<PathBuf>,
    current: RwLock<Arc<Expected>>,
    /// The file's stamp when it was last read, good or broken, so that a
    /// broken file is reported once per change rather than every poll;
    /// `None` when it could not be read.
    read_as: Mutex<Option<Stamp>>,
}

/// What a [`Watched::reload`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// Not asked to, and the file has not changed (or none is configured).
    Unchanged,
    /// The file was read and is in use, with this many entries.
    Loaded(usize),
    /// The file could not be read or has problems (each naming the file,
    /// line and key); the previous list stays in use.
    Failed(Vec<String>),
}

impl Watched {
    /// No file: nothing is expected (demo, analyze, tests).
    pub fn empty() -> Watched {
        Watched {
            path: None,
            current: RwLock::new(Arc::new(Expected::empty())),
            read_as: Mutex::new(None),
        }
    }

    /// Reads the file at `path` for a start: every problem if it cannot be
    /// used (a missing file is one), so that the service refuses to start.
    pub fn load(path: &Path) -> Result<Watched, Vec<String>> {
        let stamp = stamp(path);
        let expected = Expected::load(path)?;
        Ok(Watched {
            path: Some(path.to_owned()),
            current: RwLock::new(Arc::new(expected)),
            read_as: Mutex::new(stamp),
        })
    }

    /// The list `changes.expected` names, or none when it is unset.
    pub fn for_config(expected: Option<&Path>) -> Result<Watched, Vec<String>> {
        expected.map_or_else(|| Ok(Watched::empty()), Watched::load)
    }

    /// The file, if one is configured.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The list in use; a reload does not change a list already handed out.
    pub fn current(&self) -> Arc<Expected> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the file when `forced` (SIGHUP) or when it changed since the
    /// last read; see [`Reload`].
    pub fn reload(&self, forced: bool) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let now = stamp(path);
        let mut read_as = self.read_as.lock().unwrap_or_else(PoisonError::into_inner);
        if !forced && now == *read_as {
            return Reload::Unchanged;
        }
        *read_as = now;
        match Expected::load(path) {
            Ok(expected) => {
                let entries = expected.len();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(expected);
                Reload::Loaded(entries)
            }
            Err(problems) => Reload::Failed(problems),
        }
    }
}

/// The file's stamp, `None` if it cannot be read (a vanished file).
fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok(), metadata.len()))
}

#[cfg(test)]
mod tests;
