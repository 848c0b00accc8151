//! Where a webhook is, kept across restarts: `state.dir/webhooks/<name>.json`
//! holds the last `Seq` it delivered (and, for Alertmanager, the alerts it
//! holds firing). Written whole to a temporary file and renamed over the
//! old one, so a crash leaves the old or the new, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::error;

use super::alertmanager::{Alert, Post};

/// What a webhook saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Saved {
    /// The last `Seq` delivered (or given up); `None`: a new webhook.
    pub delivered: Option<u64>,
    /// Alertmanager: the alerts sent as firing and not resolved yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firing: Vec<Alert>,
    /// Alertmanager: resolutions not delivered yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolving: Vec<Post>,
}

/// One webhook's file.
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The file of the webhook named `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Store {
        Store {
            path: dir.join(format!("{name}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was saved; nothing for a new webhook. A file that cannot be
    /// read as one is moved aside (`.corrupt`), said in the log, and the
    /// webhook starts as a new one.
    pub fn load(&self) -> Saved {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Saved::default(),
            Err(e) => {
                error!(file = %self.path.display(), "cannot read the webhook's saved position, starting as a new webhook: {e}");
                return Saved::default();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                let aside = self.path.with_extension("json.corrupt");
                let moved = fs::rename(&self.path, &aside);
                error!(
                    file = %self.path.display(),
                    moved_to = %aside.display(),
                    moved = moved.is_ok(),
                    "the webhook's saved position is not valid JSON ({e}); starting as a new webhook"
                );
                Saved::default()
            }
        }
    }

    /// Replaces the file with `saved`, durably.
    pub fn save(&self, saved: &Saved) -> io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(saved).map_err(io::Error::other)?)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
