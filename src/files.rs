//! Where evidence files live, beside the log: files in the data folder on the embedded back end,
//! a NATS Object Store bucket (replicated like the stream: `crate::log::object_store`) on NATS, so every instance of a
//! cluster serves every file. A file is stored under its SHA-256 (the same photo twice is one
//! file) and is durable before the event that names it is appended; a file whose event never
//! came (the append failed, the service stopped in between) is an orphan, removed by
//! [`sweep_orphans`] once it is old enough that no upload can still be on its way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::files::is_sha256_hex;

/// How old a file with no event naming it must be before the sweeper removes it.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often the sweeper looks.
pub const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(3600);
/// Unfinished writes in the folder store start with this.
const PARTIAL_PREFIX: &str = "partial-";

/// Whether a name in the folder is an unfinished write (a prefix, nothing that leaves it).
fn is_partial(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX) && !name.contains(['/', '\\']) && !name.contains("..")
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes that no longer hash to their name.
    #[error("file {0} is damaged: its bytes no longer match its SHA-256")]
    Damaged(String),
}

/// One stored file, as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// What it is stored under: its SHA-256 (hex), or the name of a write that never finished.
    pub name: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

#[async_trait]
pub trait FileStore: Send + Sync {
    /// Stores `bytes` under `sha256` (their hash, checked by the caller); Ok only once they are
    /// durable. Storing the same file again is a no-op.
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), FileError>;
    /// The bytes stored under `sha256`, checked against it; `None` when there is no such file.
    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, FileError>;
    async fn list(&self) -> Result<Vec<StoredFile>, FileError>;
    /// Removes what is stored under `name` (a listed name); removing nothing is not an error.
    async fn delete(&self, name: &str) -> Result<(), FileError>;
}

pub use crate::domain::files::sha256_hex;

pub(crate) fn checked(sha256: &str, bytes: Bytes) -> Result<Bytes, FileError> {
    if sha256_hex(&bytes) == sha256 {
        Ok(bytes)
    } else {
        Err(FileError::Damaged(sha256.to_owned()))
    }
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> FileError {
    FileError::Unavailable(format!("{what}: {e}"))
}

// ------------------------------------------------------------------------------- a folder

/// Files in a folder of the data folder, one per SHA-256; written to a partial file, synced,
/// renamed into place, and the folder synced.
pub struct FolderFiles {
    dir: PathBuf,
}

impl FolderFiles {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, FileError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| unavailable(&format!("cannot create {}", dir.display()), e))?;
        Ok(FolderFiles { dir })
    }

    /// The path of a stored file or of an unfinished write, by its name in the folder.
    fn path(&self, name: &str) -> Result<PathBuf, FileError> {
        if !is_sha256_hex(name) && !is_partial(name) {
            return Err(FileError::Unavailable(format!("{name:?} is not a file name of this store")));
        }
        Ok(self.dir.join(name))
    }
}

#[async_trait]
impl FileStore for FolderFiles {
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), FileError> {
        let path = self.path(sha256)?;
        let dir = self.dir.clone();
        let sha256 = sha256.to_owned();
        tokio::task::spawn_blocking(move || -> Result<(), FileError> {
            use std::io::Write;
            if path.exists() {
                return Ok(());
            }
            let partial = dir.join(format!("{PARTIAL_PREFIX}{sha256}-{}", uuid::Uuid::now_v7()));
            let written = (|| {
                let mut file = std::fs::File::create(&partial)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&partial, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            })();
            written.map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                unavailable("cannot store the file", e)
            })
        })
        .await
        .map_err(|e| unavailable("file task", e))?
    }

    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, FileError> {
        let path = self.path(sha256)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => checked(sha256, Bytes::from(bytes)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(&format!("cannot read {}", path.display()), e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredFile>, FileError> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| unavailable(&format!("cannot list {}", self.dir.display()), e))?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| unavailable("cannot list files", e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().await.map_err(|e| unavailable("cannot list files", e))?;
            let modified = meta.modified().map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now());
            // Unfinished writes are listed too, so the sweeper takes them once old.
            if is_sha256_hex(&name) || is_partial(&name) {
                out.push(StoredFile { name, size: meta.len(), modified });
            }
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), FileError> {
        match tokio::fs::remove_file(self.path(name)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("cannot remove a file", e)),
        }
    }
}

// ------------------------------------------------------------------------------- orphans

/// Removes stored files older than `grace` that no event names. Only once the views have
/// applied everything the log held when the listing was taken, so a file whose event is in the
/// log is never taken for an orphan. Returns how many were removed.
pub async fn sweep_orphans(
    files: &dyn FileStore,
    views: &crate::projector::views::Views,
    log: &dyn crate::log::EventLog,
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> Result<usize, FileError> {
    let head = log.head().await.map_err(|e| unavailable("cannot read the log's head", e))?;
    let listed = files.list().await?;
    let checkpoint = views.checkpoint().map_err(|e| unavailable("cannot read the views", e))?;
    if checkpoint < head {
        return Ok(0);
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or_else(|_| chrono::Duration::hours(1));
    let mut removed = 0;
    for file in listed {
        if now - file.modified < grace {
            continue;
        }
        let named = is_sha256_hex(&file.name)
            && views.attachment_named(&file.name).map_err(|e| unavailable("cannot read the views", e))?;
        if !named {
            files.delete(&file.name).await?;
            tracing::info!(name = %file.name, bytes = file.size, "removed a file no event names");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Sweeps orphans every [`SWEEP_PERIOD`] until `stop`.
pub async fn run_sweeper(
    files: Arc<dyn FileStore>,
    views: crate::projector::views::Views,
    log: Arc<dyn crate::log::EventLog>,
    clock: Arc<dyn crate::clock::Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_PERIOD) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = sweep_orphans(files.as_ref(), &views, log.as_ref(), clock.now(), ORPHAN_GRACE).await {
            tracing::warn!("orphan files not swept: {e}");
        }
    }
}
