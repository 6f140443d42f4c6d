//! A storage provider's fragments: metadata (root, length, when stored) in
//! sled, bytes in one file per fragment.
//!
//! A fragment is accepted only if it hashes to the root it is stored under,
//! and every read hashes it again: a fragment the disk corrupted is
//! reported ([`StorageError::Corrupt`]) and never served. Writes go to a
//! temporary file that is synced and renamed into place before the
//! metadata is written, so a crash leaves either the whole fragment or
//! nothing (a file without metadata is removed when the store opens). The
//! store holds at most `capacity` bytes of fragments.

use crate::tree::{self, ChunkProof};
use crate::{blake3_root, ContentId, Result, StorageError};
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::hash::Hash;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest fragment a store accepts (a 64 MiB segment with k = 1).
pub const MAX_FRAGMENT_BYTES: u64 = crate::codec::MAX_SEGMENT_BYTES as u64;

/// Which fragment: object, segment, index within the segment.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub struct FragmentId {
    pub content: ContentId,
    pub segment: u32,
    pub index: u16,
}

impl FragmentId {
    fn key(&self) -> [u8; 38] {
        let mut k = [0u8; 38];
        k[..32].copy_from_slice(self.content.0.as_bytes());
        k[32..36].copy_from_slice(&self.segment.to_be_bytes());
        k[36..].copy_from_slice(&self.index.to_be_bytes());
        k
    }

    fn from_key(k: &[u8]) -> Result<FragmentId> {
        if k.len() != 38 {
            return Err(StorageError::Malformed {
                what: "fragment key",
                reason: format!("{} bytes", k.len()),
            });
        }
        Ok(FragmentId {
            content: ContentId(Hash(k[..32].try_into().expect("32 bytes"))),
            segment: u32::from_be_bytes(k[32..36].try_into().expect("4 bytes")),
            index: u16::from_be_bytes(k[36..].try_into().expect("2 bytes")),
        })
    }

    fn file_name(&self) -> String {
        format!("{}-{}-{}", self.content.to_hex(), self.segment, self.index)
    }
}

impl std::fmt::Display for FragmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fragment {}/{} of {}",
            self.segment, self.index, self.content
        )
    }
}

/// What the store knows of a fragment without reading it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FragmentMeta {
    pub root: Hash,
    pub len: u64,
    /// When it was stored (unix ms, from the caller).
    pub stored_at: u64,
}

/// One provider's fragments on disk.
pub struct FragmentStore {
    _db: sled::Db,
    meta: sled::Tree,
    dir: PathBuf,
    capacity: u64,
    used: u64,
}

impl std::fmt::Debug for FragmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FragmentStore({}, {}/{} bytes)",
            self.dir.display(),
            self.used,
            self.capacity
        )
    }
}

fn decode_meta(bytes: &[u8]) -> Result<FragmentMeta> {
    borsh::from_slice(bytes).map_err(|e| StorageError::Malformed {
        what: "fragment metadata",
        reason: e.to_string(),
    })
}

impl FragmentStore {
    /// Opens (or creates) the store in `dir`, holding at most `capacity`
    /// bytes. Leftovers of an interrupted write are removed.
    pub fn open(dir: &Path, capacity: u64) -> Result<FragmentStore> {
        let files = dir.join("fragments");
        fs::create_dir_all(&files)?;
        let db = sled::open(dir.join("meta"))?;
        let meta = db.open_tree("fragments")?;
        let mut used = 0u64;
        let mut known = std::collections::HashSet::new();
        for kv in meta.iter() {
            let (k, v) = kv?;
            let id = FragmentId::from_key(&k)?;
            used += decode_meta(&v)?.len;
            known.insert(id.file_name());
        }
        for entry in fs::read_dir(&files)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || !known.contains(&name) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(FragmentStore {
            _db: db,
            meta,
            dir: files,
            capacity,
            used,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of fragments held.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    /// Fragments held.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    fn path(&self, id: &FragmentId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    pub fn meta(&self, id: &FragmentId) -> Result<Option<FragmentMeta>> {
        self.meta
            .get(id.key())?
            .map(|v| decode_meta(&v))
            .transpose()
    }

    /// Stores `bytes` as `id` if they hash to `root`. Storing the same
    /// fragment again is a no-op (false); another one under the same id
    /// is a conflict.
    pub fn put(&mut self, id: FragmentId, root: Hash, bytes: &[u8], now: u64) -> Result<bool> {
        let len = bytes.len() as u64;
        if bytes.is_empty() {
            return Err(StorageError::WrongLength {
                what: id.to_string(),
                expected: 1,
                got: 0,
            });
        }
        if len > MAX_FRAGMENT_BYTES {
            return Err(StorageError::TooLarge {
                what: "fragment",
                len,
                max: MAX_FRAGMENT_BYTES,
            });
        }
        let got = blake3_root(bytes);
        if got != root {
            return Err(StorageError::Corrupt {
                what: id.to_string(),
                expected: root,
                got,
            });
        }
        if let Some(m) = self.meta(&id)? {
            return if m.root == root {
                Ok(false)
            } else {
                Err(StorageError::Conflict(id.to_string()))
            };
        }
        if len > self.free() {
            return Err(StorageError::Full {
                need: len,
                free: self.free(),
            });
        }
        let path = self.path(&id);
        let tmp = path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        let m = FragmentMeta {
            root,
            len,
            stored_at: now,
        };
        self.meta
            .insert(id.key(), borsh::to_vec(&m).expect("borsh to a Vec"))?;
        self.meta.flush()?;
        self.used += len;
        Ok(true)
    }

    /// The fragment's bytes, checked against its root.
    pub fn get(&self, id: &FragmentId) -> Result<Vec<u8>> {
        let m = self
            .meta(id)?
            .ok_or_else(|| StorageError::NotFound(id.to_string()))?;
        let bytes = match fs::read(self.path(id)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Corrupt {
                    what: format!("{id} (its file is gone)"),
                    expected: m.root,
                    got: Hash::ZERO,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let got = blake3_root(&bytes);
        if bytes.len() as u64 != m.len || got != m.root {
            return Err(StorageError::Corrupt {
                what: id.to_string(),
                expected: m.root,
                got,
            });
        }
        Ok(bytes)
    }

    /// `len` bytes of the fragment from `offset`, from a checked read.
    pub fn read_range(&self, id: &FragmentId, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.get(id)?;
        let end = offset.checked_add(len).filter(|e| *e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(StorageError::NotFound(format!(
                "bytes {offset}..+{len} of {id} ({} bytes long)",
                bytes.len()
            )));
        };
        Ok(bytes[offset as usize..end as usize].to_vec())
    }

    /// The proof of 1 KiB chunk `chunk` of the fragment (an audit answer).
    pub fn prove(&self, id: &FragmentId, chunk: u64) -> Result<ChunkProof> {
        tree::prove(&self.get(id)?, chunk)
    }

    /// Drops a fragment; false if it was not here.
    pub fn remove(&mut self, id: &FragmentId) -> Result<bool> {
        let Some(old) = self.meta.remove(id.key())? else {
            return Ok(false);
        };
        self.meta.flush()?;
        self.used = self.used.saturating_sub(decode_meta(&old)?.len);
        match fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }

    /// Every fragment held, in id order.
    pub fn list(&self) -> Result<Vec<(FragmentId, FragmentMeta)>> {
        self.meta
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((FragmentId::from_key(&k)?, decode_meta(&v)?))
            })
            .collect()
    }

    /// Fragments of one object held here.
    pub fn of_object(&self, content: &ContentId) -> Result<Vec<(FragmentId, FragmentMeta)>> {
        self.meta
            .scan_prefix(content.0.as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((FragmentId::from_key(&k)?, decode_meta(&v)?))
            })
            .collect()
    }

    /// Reads every fragment back; returns those that are corrupt or gone.
    pub fn scrub(&self) -> Result<Vec<FragmentId>> {
        let mut bad = Vec::new();
        for (id, _) in self.list()? {
            match self.get(&id) {
                Ok(_) => {}
                Err(StorageError::Corrupt { .. }) => bad.push(id),
                Err(e) => return Err(e),
            }
        }
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8, index: u16) -> FragmentId {
        FragmentId {
            content: ContentId::of(&[n]),
            segment: u32::from(n),
            index,
        }
    }

    #[test]
    fn fragments_are_checked_on_the_way_in_and_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FragmentStore::open(dir.path(), 1 << 20).unwrap();
        let bytes = vec![7u8; 5_000];
        let root = blake3_root(&bytes);
        assert!(matches!(
            s.put(id(1, 0), Hash::ZERO, &bytes, 1),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(s.put(id(1, 0), root, &bytes, 1).unwrap());
        assert!(!s.put(id(1, 0), root, &bytes, 2).unwrap(), "idempotent");
        let other = vec![8u8; 10];
        assert!(matches!(
            s.put(id(1, 0), blake3_root(&other), &other, 3),
            Err(StorageError::Conflict(_))
        ));
        assert_eq!(s.get(&id(1, 0)).unwrap(), bytes);
        assert_eq!(s.read_range(&id(1, 0), 4_990, 10).unwrap(), vec![7u8; 10]);
        assert!(s.read_range(&id(1, 0), 4_990, 11).is_err());
        let p = s.prove(&id(1, 0), 4).unwrap();
        tree::verify(&root, 5_000, &p).unwrap();
        assert!(matches!(s.get(&id(2, 0)), Err(StorageError::NotFound(_))));

        // The disk flips a bit: detected, not served, found by a scrub.
        let path = s.path(&id(1, 0));
        let mut raw = fs::read(&path).unwrap();
        raw[100] ^= 1;
        fs::write(&path, &raw).unwrap();
        assert!(matches!(
            s.get(&id(1, 0)),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(s.prove(&id(1, 0), 0).is_err());
        assert_eq!(s.scrub().unwrap(), vec![id(1, 0)]);
        // Truncated or deleted: the same.
        fs::write(&path, &raw[..10]).unwrap();
        assert!(matches!(
            s.get(&id(1, 0)),
            Err(StorageError::Corrupt { .. })
        ));
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            s.get(&id(1, 0)),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn capacity_is_enforced_and_freed_by_removal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FragmentStore::open(dir.path(), 10_000).unwrap();
        let a = vec![1u8; 6_000];
        let b = vec![2u8; 6_000];
        s.put(id(1, 0), blake3_root(&a), &a, 0).unwrap();
        assert!(matches!(
            s.put(id(1, 1), blake3_root(&b), &b, 0),
            Err(StorageError::Full {
                need: 6_000,
                free: 4_000
            })
        ));
        assert!(s.remove(&id(1, 0)).unwrap());
        assert!(!s.remove(&id(1, 0)).unwrap());
        s.put(id(1, 1), blake3_root(&b), &b, 0).unwrap();
        assert_eq!(s.used(), 6_000);
    }

    #[test]
    fn reopening_keeps_what_was_stored_and_drops_half_written_files() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![3u8; 3_000];
        {
            let mut s = FragmentStore::open(dir.path(), 1 << 20).unwrap();
            s.put(id(1, 0), blake3_root(&bytes), &bytes, 0).unwrap();
            s.put(id(1, 1), blake3_root(&bytes), &bytes, 0).unwrap();
            s.put(id(2, 0), blake3_root(&bytes), &bytes, 0).unwrap();
        }
        // A crash mid-write left a temporary and an unrecorded file.
        let files = dir.path().join("fragments");
        fs::write(files.join("x.tmp"), b"partial").unwrap();
        fs::write(files.join(id(9, 9).file_name()), b"orphan").unwrap();
        let s = FragmentStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.used(), 9_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s.of_object(&id(1, 0).content).unwrap().len(), 2);
        assert_eq!(s.get(&id(2, 0)).unwrap(), bytes);
        assert_eq!(fs::read_dir(&files).unwrap().count(), 3);
    }
}
