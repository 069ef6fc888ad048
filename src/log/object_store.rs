//! Evidence files on NATS: an Object Store bucket with as many replicas as the stream, so every
//! instance of a cluster serves every file and a lost node loses none (`crate::files`).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::files::{checked, unavailable, FileError, FileStore, StoredFile};

/// The Object Store bucket.
pub const BUCKET: &str = "WHISTLE_FILES";

/// A NATS Object Store bucket, with as many replicas as the stream.
pub struct NatsFiles {
    store: async_nats::jetstream::object_store::ObjectStore,
}

impl NatsFiles {
    /// Opens the bucket, creating it if needed.
    pub async fn open(js: &async_nats::jetstream::Context, replicas: usize) -> Result<Self, FileError> {
        let store = match js.get_object_store(BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(async_nats::jetstream::object_store::Config {
                    bucket: BUCKET.into(),
                    description: Some("whistle: evidence files, by SHA-256".into()),
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(&format!("cannot create the object store {BUCKET}"), e))?,
        };
        Ok(NatsFiles { store })
    }
}

#[async_trait]
impl FileStore for NatsFiles {
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), FileError> {
        if let Ok(info) = self.store.info(sha256).await {
            if !info.deleted && info.size as u64 == bytes.len() as u64 {
                return Ok(());
            }
        }
        let mut reader = std::io::Cursor::new(bytes);
        self.store.put(sha256, &mut reader).await.map_err(|e| unavailable("cannot store the file", e))?;
        Ok(())
    }

    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, FileError> {
        let mut object = match self.store.get(sha256).await {
            Ok(object) => object,
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read the file", e)),
        };
        let mut bytes = Vec::with_capacity(object.info().size);
        object.read_to_end(&mut bytes).await.map_err(|e| unavailable("cannot read the file", e))?;
        checked(sha256, Bytes::from(bytes)).map(Some)
    }

    async fn list(&self) -> Result<Vec<StoredFile>, FileError> {
        let mut list = self.store.list().await.map_err(|e| unavailable("cannot list files", e))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| unavailable("cannot list files", e))?;
            if info.deleted {
                continue;
            }
            let modified = info
                .modified
                .and_then(|m| DateTime::<Utc>::from_timestamp(m.unix_timestamp(), m.nanosecond()))
                .unwrap_or_else(Utc::now);
            out.push(StoredFile { name: info.name, size: info.size as u64, modified });
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), FileError> {
        match self.store.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == async_nats::jetstream::object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("cannot remove a file", e)),
        }
    }
}
