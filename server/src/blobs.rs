//! Content-addressed file store under the data directory (`settings.blob_dir()`).
//!
//! A blob's key is the lowercase hex SHA-256 of its bytes, stored at `ab/cd/abcd…` so no
//! directory grows too large. Writes go to a temporary file in `tmp/` inside the store and
//! are renamed into place, so a reader never sees half a file and a crash leaves at most a
//! stray temporary file (swept on start-up by [`BlobStore::sweep_tmp`]). Identical
//! content is stored once; [`Put::created`] tells a caller whether it must remove the
//! blob again when the rest of its work fails.
//!
//! Several server replicas share one store by pointing their data directories at the same
//! volume (one machine, or a network file system such as NFS/EFS across machines): keys are
//! content hashes, a write is a rename within the store, and two replicas writing the same
//! bytes at once both succeed with identical files. Start-up therefore sweeps only temporary
//! files older than [`STALE_TMP`], never another replica's write in progress.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Age after which a temporary file is taken for the leftover of an interrupted write.
pub const STALE_TMP: Duration = Duration::from_secs(3600);

use sha2::{Digest, Sha256};

/// The file store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// What [`BlobStore::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// The blob's key (hex SHA-256 of its bytes).
    pub key: String,
    /// True when this call wrote the file; false when identical content was already stored.
    pub created: bool,
}

impl BlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The hex SHA-256 of `bytes`, which is also their key.
    pub fn key_of(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// The hex SHA-256 of everything `reader` yields, read in 1 MiB blocks (for files too
    /// large to hold in memory).
    pub fn key_of_reader(mut reader: impl std::io::Read) -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Where the blob with `key` lives, or `None` for a malformed key (never a path a
    /// caller could steer outside the store).
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        Some(self.root.join(&key[..2]).join(&key[2..4]).join(key))
    }

    /// Stores `bytes` (blocking I/O: call from `spawn_blocking`).
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<Put> {
        let key = Self::key_of(bytes);
        let path = self
            .path(&key)
            .ok_or_else(|| std::io::Error::other("invalid blob key"))?;
        if path.exists() {
            return Ok(Put {
                key,
                created: false,
            });
        }
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        // Another writer may have stored the same bytes meanwhile; the rename is atomic and
        // the content identical, so either file is fine.
        let created = !path.exists();
        tmp.persist(&path).map_err(|err| err.error)?;
        Ok(Put { key, created })
    }

    /// Stores everything `reader` yields, hashing it while it is copied in 1 MiB blocks, so
    /// a large upload never sits in memory whole (blocking I/O: call from `spawn_blocking`).
    /// On any error (a full disk: [`std::io::ErrorKind::StorageFull`]) the temporary file
    /// is removed and nothing is stored. Returns the blob and its size in bytes.
    pub fn put_reader(&self, mut reader: impl std::io::Read) -> std::io::Result<(Put, u64)> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
            size += n as u64;
        }
        tmp.as_file().sync_all()?;
        let key = hex::encode(hasher.finalize());
        let path = self
            .path(&key)
            .ok_or_else(|| std::io::Error::other("invalid blob key"))?;
        if path.exists() {
            // Identical content is stored already; the temporary copy goes.
            return Ok((
                Put {
                    key,
                    created: false,
                },
                size,
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let created = !path.exists();
        tmp.persist(&path).map_err(|err| err.error)?;
        Ok((Put { key, created }, size))
    }

    /// Reads a blob.
    pub fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        let path = self
            .path(key)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "invalid blob key"))?;
        std::fs::read(path)
    }

    /// Removes a blob; a missing blob is not an error.
    pub fn delete(&self, key: &str) -> std::io::Result<()> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                // Tidy the fan-out directories when they become empty (errors ignored: a
                // concurrent writer may just have added a sibling).
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir(dir);
                    if let Some(dir) = dir.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Removes temporary files left by writes that were interrupted (a crash mid-write):
    /// those older than [`STALE_TMP`], so a replica sharing the store keeps its writes in
    /// progress.
    pub fn sweep_tmp(&self) -> std::io::Result<usize> {
        self.sweep_tmp_older_than(STALE_TMP)
    }

    /// Removes temporary files last modified more than `age` ago.
    pub fn sweep_tmp_older_than(&self, age: Duration) -> std::io::Result<usize> {
        let dir = self.root.join("tmp");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_idempotent() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::new(dir.path());
        let first = store.put(b"marking guide")?;
        assert!(first.created);
        assert_eq!(first.key, BlobStore::key_of(b"marking guide"));
        let again = store.put(b"marking guide")?;
        assert!(!again.created);
        assert_eq!(store.get(&first.key)?, b"marking guide");
        store.delete(&first.key)?;
        assert!(store.get(&first.key).is_err());
        // Only the empty tmp directory is left.
        let left: Vec<_> = std::fs::read_dir(dir.path())?.flatten().collect();
        assert_eq!(left.len(), 1);
        Ok(())
    }

    #[test]
    fn sweeping_spares_a_fresh_temp_file_of_another_replica() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::new(dir.path());
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        std::fs::write(dir.path().join("tmp/.tmpInFlight"), b"half a file")?;
        assert_eq!(store.sweep_tmp()?, 0, "a write in progress is kept");
        assert!(dir.path().join("tmp/.tmpInFlight").exists());
        assert_eq!(store.sweep_tmp_older_than(Duration::ZERO)?, 1);
        assert!(!dir.path().join("tmp/.tmpInFlight").exists());
        Ok(())
    }

    #[test]
    fn put_reader_streams_and_matches_put() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::new(dir.path());
        let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let (put, size) = store.put_reader(std::io::Cursor::new(&bytes))?;
        assert!(put.created);
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(put.key, BlobStore::key_of(&bytes));
        assert_eq!(store.get(&put.key)?, bytes);
        let (again, _) = store.put_reader(std::io::Cursor::new(&bytes))?;
        assert!(!again.created);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("tmp"))?.count(), 0);
        Ok(())
    }

    #[test]
    fn malformed_keys_never_become_paths() {
        let store = BlobStore::new("/srv/blobs");
        assert!(store.path("../../etc/passwd").is_none());
        assert!(store.path(&"A".repeat(64)).is_none());
        assert!(store.path(&"a".repeat(64)).is_some());
    }
}
