//! A directory acting as a bucket, for `spherecast up` and tests.
//!
//! Layout: the object with key `a/b.ts` is the plain file `ROOT/a/b.ts` (so it can be served or
//! inspected as is), and its metadata is `ROOT/.meta/a/b.ts.json`. Files are written to a
//! temporary `.tmp-<uuid>` file in the destination folder, synced, then renamed, so readers see
//! either the old object or the new one, never a part.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{ObjectInfo, ObjectStore, PutOptions, StoreError, validate_key, validate_metadata};

/// The folder under the root that holds metadata sidecars; never listed.
const META_DIR: &str = ".meta";
/// Name prefix of files being written; never listed, and reserved in keys.
const TEMP_PREFIX: &str = ".tmp-";
/// Copy buffer: large enough that a copy of a recording is a few thousand system calls.
const COPY_BUFFER: usize = 1 << 20;

/// A directory acting as a bucket. Writes are atomic (temporary file, then rename).
///
/// Besides the rules every store applies to keys, a local store reserves the first segment
/// `.meta` and segments starting with `.tmp-`. Two keys where one is a folder of the other
/// (`a` and `a/b`) cannot both exist, as on any file system; writing the second fails with
/// [`StoreError::Io`].
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    bucket: String,
}

/// What is kept next to an object: what S3 would return from HEAD.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    /// Modification time of the data file in ns since the Unix epoch. With `size` it tells
    /// whether this sidecar still describes the data file: the two are renamed one after the
    /// other, so a crash or a concurrent writer can leave a new file with an old sidecar.
    mtime_ns: u64,
    etag: String,
    content_type: Option<String>,
    cache_control: Option<String>,
    /// User metadata; absent from sidecars written before it was kept.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl Sidecar {
    fn describes(&self, meta: &fs::Metadata) -> bool {
        self.size == meta.len() && mtime_ns(meta) == Some(self.mtime_ns)
    }
}

/// Where the bytes of a new object come from.
enum Source {
    Bytes(bytes::Bytes),
    File(PathBuf),
}

impl LocalStore {
    /// A store over `root` (created on first write), reporting `bucket` as its bucket name in
    /// S3 events. Nothing is read or created until the first operation.
    pub fn new(root: impl Into<PathBuf>, bucket: impl Into<String>) -> LocalStore {
        LocalStore {
            root: root.into(),
            bucket: bucket.into(),
        }
    }

    /// The directory holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding the object `key`, for serving it directly (it may not exist).
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_local_key(key)?;
        Ok(self.root.join(key))
    }

    fn sidecar_path(&self, key: &str) -> PathBuf {
        self.root.join(META_DIR).join(format!("{key}.json"))
    }

    /// Runs blocking file-system work off the async worker threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(LocalStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || work(store)).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only happens while the runtime shuts down.
            Err(err) => Err(StoreError::Io {
                path: self.root.clone(),
                source: io::Error::other(err),
            }),
        }
    }

    fn write(
        &self,
        key: &str,
        source: Source,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        validate_local_key(key)?;
        validate_metadata("PutObject", key, &opts.metadata)?;
        let dest = self.root.join(key);
        let dir = dest
            .parent()
            .expect("a validated key has a file name under the root");
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;

        let temp = TempFile::create_in(dir)?;
        let (size, etag) = {
            let mut out = HashingWriter::new(temp.file());
            match &source {
                Source::Bytes(bytes) => out.write_all(bytes).map_err(|e| io_err(temp.path(), e))?,
                Source::File(path) => {
                    let mut input = File::open(path).map_err(|e| io_err(path, e))?;
                    copy(&mut input, path, &mut out, temp.path())?;
                }
            }
            out.finish()
        };
        temp.file().sync_all().map_err(|e| io_err(temp.path(), e))?;
        let meta = temp.file().metadata().map_err(|e| io_err(temp.path(), e))?;
        let sidecar = Sidecar {
            size,
            mtime_ns: mtime_ns(&meta).unwrap_or_default(),
            etag: etag.clone(),
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
            metadata: opts.metadata.clone(),
        };
        let sidecar_temp = self.write_sidecar_temp(key, &sidecar)?;

        // Data first, then metadata: in between, readers see the new data with a sidecar that
        // no longer describes it, which they detect (`Sidecar::describes`).
        temp.persist(&dest)?;
        sidecar_temp.persist(&self.sidecar_path(key))?;
        debug!(bucket = %self.bucket, %key, size, "Object stored.");
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag,
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
            metadata: opts.metadata.clone(),
        })
    }

    fn write_sidecar_temp(&self, key: &str, sidecar: &Sidecar) -> Result<TempFile, StoreError> {
        let path = self.sidecar_path(key);
        let dir = path
            .parent()
            .expect("a sidecar lives under the metadata folder");
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let temp = TempFile::create_in(dir)?;
        let json = serde_json::to_vec(sidecar).expect("a sidecar always serialises");
        temp.file()
            .write_all(&json)
            .map_err(|e| io_err(temp.path(), e))?;
        temp.file().sync_all().map_err(|e| io_err(temp.path(), e))?;
        Ok(temp)
    }

    /// The sidecar of `key` if it exists and still describes the data file.
    fn read_sidecar(&self, key: &str, data: &fs::Metadata) -> Option<Sidecar> {
        let path = self.sidecar_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                warn!(path = %path.display(), error = %err, "Object metadata unreadable; computing the eTag from the data.");
                return None;
            }
        };
        match serde_json::from_slice::<Sidecar>(&bytes) {
            Ok(sidecar) if sidecar.describes(data) => Some(sidecar),
            Ok(_) => {
                debug!(%key, "Object metadata describes an older version; computing the eTag from the data.");
                None
            }
            Err(err) => {
                warn!(path = %path.display(), error = %err, "Object metadata corrupt; computing the eTag from the data.");
                None
            }
        }
    }

    /// Metadata of an existing data file: from its sidecar, or computed when the sidecar is
    /// missing or stale (a file put there by other means, or a write caught half-way).
    fn describe(
        &self,
        key: &str,
        path: &Path,
        data: &fs::Metadata,
    ) -> Result<ObjectInfo, StoreError> {
        if let Some(sidecar) = self.read_sidecar(key, data) {
            return Ok(ObjectInfo {
                key: key.to_owned(),
                size: sidecar.size,
                etag: sidecar.etag,
                content_type: sidecar.content_type,
                cache_control: sidecar.cache_control,
                metadata: sidecar.metadata,
            });
        }
        let mut file = File::open(path).map_err(|e| io_err(path, e))?;
        let mut out = HashingWriter::new(io::sink());
        copy(&mut file, path, &mut out, path)?;
        let (size, etag) = out.finish();
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag,
            content_type: None,
            cache_control: None,
            metadata: BTreeMap::new(),
        })
    }

    /// Opens the data file of `key`, `None` when there is no such object.
    fn open_object(&self, key: &str) -> Result<Option<(File, fs::Metadata)>, StoreError> {
        validate_local_key(key)?;
        let path = self.root.join(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if is_missing(&err) => return Ok(None),
            Err(err) => return Err(io_err(&path, err)),
        };
        let meta = file.metadata().map_err(|e| io_err(&path, e))?;
        // A folder is not an object: S3 answers 404 for `a` when only `a/b` exists.
        Ok(meta.is_file().then_some((file, meta)))
    }

    fn get_to_file_blocking(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError> {
        let path = self.root.join(key);
        let Some((mut file, meta)) = self.open_object(key)? else {
            return Err(self.not_found(key));
        };
        // Read the sidecar before copying: both describe the file already opened, so a
        // concurrent overwrite (a rename) cannot mix two versions.
        let sidecar = self.read_sidecar(key, &meta);
        let dir = parent_dir(dest);
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let temp = TempFile::create_in(dir)?;
        let (size, etag) = {
            let mut out = HashingWriter::new(temp.file());
            copy(&mut file, &path, &mut out, temp.path())?;
            out.finish()
        };
        temp.file().sync_all().map_err(|e| io_err(temp.path(), e))?;
        temp.persist(dest)?;
        let (content_type, cache_control, metadata) = match sidecar {
            Some(sidecar) => {
                if sidecar.etag != etag {
                    warn!(bucket = %self.bucket, %key, recorded = %sidecar.etag, actual = %etag, "Object content does not match its recorded eTag; the file was changed in place.");
                }
                (
                    sidecar.content_type,
                    sidecar.cache_control,
                    sidecar.metadata,
                )
            }
            None => (None, None, BTreeMap::new()),
        };
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag,
            content_type,
            cache_control,
            metadata,
        })
    }

    fn head_blocking(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let Some((_file, meta)) = self.open_object(key)? else {
            return Ok(None);
        };
        self.describe(key, &self.root.join(key), &meta).map(Some)
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        validate_local_key(key)?;
        for path in [self.root.join(key), self.sidecar_path(key)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Deleting what does not exist succeeds, as on S3; a folder is not an object.
                Err(err) if is_missing(&err) || err.kind() == io::ErrorKind::IsADirectory => {}
                Err(err) => return Err(io_err(&path, err)),
            }
        }
        Ok(())
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        if prefix.starts_with('/') || prefix.contains('\\') || prefix.contains('\0') {
            return Err(StoreError::InvalidKey {
                key: prefix.to_owned(),
                reason: "a list prefix must be relative and contain no backslash or NUL",
            });
        }
        // Only the folder named by the prefix up to its last '/' can hold matches.
        let folder = prefix.rfind('/').map_or("", |at| &prefix[..=at]);
        if !folder.is_empty() && validate_local_key(folder.trim_end_matches('/')).is_err() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        self.walk(&self.root.join(folder), folder, prefix, &mut found)?;
        let mut objects = Vec::with_capacity(found.len());
        for (key, path) in found {
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                // Deleted while listing.
                Err(err) if is_missing(&err) => continue,
                Err(err) => return Err(io_err(&path, err)),
            };
            let mut info = self.describe(&key, &path, &meta)?;
            info.content_type = None;
            info.cache_control = None;
            info.metadata.clear();
            objects.push(info);
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Collects `(key, path)` of the files under `dir` (whose keys start with `dir_key`) that
    /// match `prefix`, skipping metadata, temporary files and names that are not valid keys.
    fn walk(
        &self,
        dir: &Path,
        dir_key: &str,
        prefix: &str,
        found: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if is_missing(&err) => return Ok(()),
            Err(err) => return Err(io_err(dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                warn!(path = %path.display(), "File name is not UTF-8; not listed as an object.");
                continue;
            };
            if name.starts_with(TEMP_PREFIX) || (dir_key.is_empty() && name == META_DIR) {
                continue;
            }
            let key = format!("{dir_key}{name}");
            let file_type = entry.file_type().map_err(|e| io_err(&path, e))?;
            // A linked file is an object (head and get follow the link too); a linked folder
            // is not descended into, so a link cycle cannot make the walk endless.
            let is_file = file_type.is_file() || (file_type.is_symlink() && path.is_file());
            if file_type.is_dir() {
                let sub_key = format!("{key}/");
                if sub_key.starts_with(prefix) || prefix.starts_with(&sub_key) {
                    self.walk(&path, &sub_key, prefix, found)?;
                }
            } else if is_file && key.starts_with(prefix) {
                if validate_local_key(&key).is_ok() {
                    found.push((key, path));
                } else {
                    debug!(path = %path.display(), "File name is not a valid key; not listed as an object.");
                }
            }
        }
        Ok(())
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        let (key, path, opts) = (key.to_owned(), path.to_owned(), opts.clone());
        self.blocking(move |store| store.write(&key, Source::File(path), &opts))
            .await
    }

    async fn put_bytes(
        &self,
        key: &str,
        body: bytes::Bytes,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        let (key, opts) = (key.to_owned(), opts.clone());
        self.blocking(move |store| store.write(&key, Source::Bytes(body), &opts))
            .await
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<ObjectInfo, StoreError> {
        let (key, dest) = (key.to_owned(), dest.to_owned());
        self.blocking(move |store| store.get_to_file_blocking(&key, &dest))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |store| store.head_blocking(&key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |store| store.delete_blocking(&key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |store| store.list_blocking(&prefix))
            .await
    }
}

/// The rules of every store plus the names this layout reserves.
fn validate_local_key(key: &str) -> Result<(), StoreError> {
    validate_key(key)?;
    let reason = if key.split('/').next() == Some(META_DIR) {
        Some("the first segment '.meta' is reserved for object metadata in a local store")
    } else if key
        .split('/')
        .any(|segment| segment.starts_with(TEMP_PREFIX))
    {
        Some("segments starting with '.tmp-' are reserved for files being written in a local store")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A file being written, removed on drop unless persisted.
pub(super) struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    pub(super) fn create_in(dir: &Path) -> Result<TempFile, StoreError> {
        let path = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let file = File::create_new(&path).map_err(|e| io_err(&path, e))?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Renames the (already synced) file to `dest` and syncs the folder, so the new name
    /// survives a power cut.
    pub(super) fn persist(mut self, dest: &Path) -> Result<(), StoreError> {
        fs::rename(&self.path, dest).map_err(|e| io_err(dest, e))?;
        self.persisted = true;
        let dir = parent_dir(dest);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted
            && let Err(err) = fs::remove_file(&self.path)
        {
            warn!(path = %self.path.display(), error = %err, "Temporary file not removed.");
        }
    }
}

/// Passes bytes through while counting them and computing their MD5 (the single-part eTag).
struct HashingWriter<W> {
    inner: W,
    md5: Md5,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            md5: Md5::new(),
            len: 0,
        }
    }

    /// Byte count and the eTag S3 gives a single-part object: quoted lower-case hex MD5.
    fn finish(self) -> (u64, String) {
        (self.len, format!("\"{:x}\"", self.md5.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.md5.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies in large chunks, naming the file that failed.
fn copy(
    input: &mut impl Read,
    input_path: &Path,
    output: &mut impl Write,
    output_path: &Path,
) -> Result<(), StoreError> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_err(input_path, err)),
        };
        output
            .write_all(&buffer[..read])
            .map_err(|e| io_err(output_path, e))?;
    }
}

fn mtime_ns(meta: &fs::Metadata) -> Option<u64> {
    let since_epoch = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

/// True for errors meaning "no such file": missing, or a path segment that is a file.
fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

pub(super) fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("bucket"), "ingress");
        (dir, store)
    }

    #[tokio::test]
    async fn object_is_a_plain_file_under_the_root() {
        let (_dir, store) = store();
        store
            .put_bytes(
                "a/b.ts",
                bytes::Bytes::from_static(b"ts"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(fs::read(store.root().join("a/b.ts")).unwrap(), b"ts");
        assert_eq!(
            store.path_of("a/b.ts").unwrap(),
            store.root().join("a/b.ts")
        );
    }

    #[tokio::test]
    async fn reserved_names_are_rejected() {
        let (_dir, store) = store();
        for key in [".meta/x", "a/.tmp-x"] {
            let err = store
                .put_bytes(key, bytes::Bytes::new(), &PutOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidKey { .. }), "{key}: {err}");
        }
    }

    #[tokio::test]
    async fn listing_skips_metadata_and_temporary_files() {
        let (_dir, store) = store();
        store
            .put_bytes(
                "a.ts",
                bytes::Bytes::from_static(b"a"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        fs::write(store.root().join(".tmp-leftover"), b"partial").unwrap();
        let keys: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a.ts"]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn listing_does_not_follow_a_folder_link_cycle() {
        let (_dir, store) = store();
        store
            .put_bytes(
                "a/x.ts",
                bytes::Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        std::os::unix::fs::symlink(store.root(), store.root().join("a/loop")).unwrap();
        let keys: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/x.ts"]);
    }

    #[tokio::test]
    async fn file_put_there_by_hand_gets_its_etag_computed() {
        let (_dir, store) = store();
        fs::create_dir_all(store.root()).unwrap();
        fs::write(store.root().join("hand.txt"), b"hello").unwrap();
        let info = store
            .head("hand.txt")
            .await
            .unwrap()
            .expect("file is an object");
        assert_eq!(info.etag, "\"5d41402abc4b2a76b9719d911017c592\"");
        assert_eq!(info.size, 5);
    }

    #[tokio::test]
    async fn stale_metadata_is_not_trusted() {
        let (_dir, store) = store();
        let opts = PutOptions {
            content_type: Some("video/mp2t".into()),
            metadata: BTreeMap::from([("stream".to_owned(), "cam-1".to_owned())]),
            ..PutOptions::default()
        };
        store
            .put_bytes("x.ts", bytes::Bytes::from_static(b"old"), &opts)
            .await
            .unwrap();
        // Replace the data behind the store's back, as a crash between the two renames would.
        fs::write(store.root().join("x.ts"), b"newer").unwrap();
        let info = store.head("x.ts").await.unwrap().unwrap();
        assert_eq!(info.size, 5);
        assert_eq!(info.etag, format!("\"{:x}\"", Md5::digest(b"newer")));
        assert_eq!(info.content_type, None);
        assert!(info.metadata.is_empty(), "{:?}", info.metadata);
    }

    #[tokio::test]
    async fn sidecar_written_before_metadata_was_kept_still_describes_the_object() {
        let (_dir, store) = store();
        let opts = PutOptions {
            content_type: Some("video/mp2t".into()),
            ..PutOptions::default()
        };
        store
            .put_bytes("x.ts", bytes::Bytes::from_static(b"ts"), &opts)
            .await
            .unwrap();
        // Rewrite the sidecar as an older version wrote it: without the metadata field.
        let sidecar_path = store.sidecar_path("x.ts");
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&sidecar_path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("metadata").unwrap();
        fs::write(&sidecar_path, serde_json::to_vec(&json).unwrap()).unwrap();

        let info = store.head("x.ts").await.unwrap().unwrap();
        assert_eq!(info.content_type.as_deref(), Some("video/mp2t"));
        assert!(info.metadata.is_empty(), "{:?}", info.metadata);
    }

    #[tokio::test]
    async fn folder_is_not_an_object() {
        let (_dir, store) = store();
        store
            .put_bytes(
                "dir/x",
                bytes::Bytes::from_static(b"x"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(store.head("dir").await.unwrap(), None);
        store.delete("dir").await.unwrap();
        assert!(store.head("dir/x").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn failed_put_leaves_no_temporary_file() {
        let (dir, store) = store();
        let missing = dir.path().join("no-such-file.mp4");
        let err = store
            .put_file("x.mp4", &missing, &PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { path, .. } if *path == missing),
            "{err}"
        );
        let leftovers: Vec<_> = fs::read_dir(store.root()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
