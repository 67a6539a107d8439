//! Where the runs' KDI files are kept: a file store (a directory under the state
//! directory by default; S3 and S3-compatible servers, Azure Blob Storage or Google
//! Cloud Storage for many machines), through Apache Arrow's `object_store`. The
//! database keeps each file's name, size, checksum and location ([`Kept`]), not its
//! bytes.
//!
//! Files are kept gzipped (KDI compresses about seven times): a client that accepts
//! gzip gets the object's bytes as they are; another gets them decompressed as they
//! are sent. Both ways a file streams, a chunk at a time: a worker never holds a
//! whole file in memory, and neither does `serve`.

use super::store::Db;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use flate2::write::GzEncoder;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetResult, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// How much of a file is read and compressed at a time.
const CHUNK: usize = 256 << 10;
/// The size of each part of a multipart upload (S3 wants at least 5 MiB a part); a
/// file smaller than this, gzipped, goes up in one request.
const PART: usize = 8 << 20;
/// Parts in flight at once: memory is at most this many parts and one being filled.
const PARTS_IN_FLIGHT: usize = 2;

/// The file store `serve` and `worker` were given.
#[derive(Clone)]
pub(crate) struct FileStore {
    store: Arc<dyn ObjectStore>,
    /// The store's address, ending in `/`: `file:///var/lib/.../files/`,
    /// `s3://bucket/prefix/`. Locations are this and a key.
    base: String,
    /// The key prefix inside a bucket (empty for a directory, where the prefix is
    /// the directory itself).
    prefix: String,
    /// A directory on this machine (the default), not a shared store.
    local: bool,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// A file as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    /// The file's name in its run (`kdi-0001.json`).
    pub(crate) name: String,
    /// Where it is: the store's address and the object's key.
    pub(crate) location: String,
    /// Its size as a client reads it.
    pub(crate) bytes: i64,
    /// Its size as kept (gzipped).
    pub(crate) stored_bytes: i64,
    /// SHA-256 of its content (not of the gzip), in hex.
    pub(crate) sha256: String,
}

/// What the store has at a location.
pub(crate) enum Found {
    Object(GetResult),
    /// Nothing: deleted (by retention, or by the store's own lifecycle rules).
    Missing,
}

impl FileStore {
    /// The store `url` names, `None` for the default: the `files` directory in
    /// `state_dir`. `endpoint`: an S3-compatible server's address (MinIO, Ceph, ...).
    /// Credentials and region come from the store's usual environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; `AZURE_STORAGE_*`;
    /// `GOOGLE_SERVICE_ACCOUNT`), never from the URL.
    pub(crate) fn open(url: Option<&str>, endpoint: Option<&str>, state_dir: &Path) -> Result<FileStore> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let store = match url {
            None => Self::directory(&state_dir.join("files")),
            Some(url) if !url.contains("://") => Self::directory(Path::new(url)),
            Some(url) => match url.strip_prefix("file://") {
                Some(path) => Self::directory(Path::new(path)),
                None => Self::object_store(url, endpoint),
            },
        }?;
        if endpoint.is_some() && !store.base.starts_with("s3://") {
            bail!("--files-endpoint is for S3-compatible stores; --files is {}", store.base);
        }
        Ok(store)
    }

    fn directory(dir: &Path) -> Result<FileStore> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the files directory {}", dir.display()))?;
        let dir = dir.canonicalize().with_context(|| format!("cannot open the files directory {}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("cannot open the files directory {}", dir.display()))?
            // A run's folder goes with its last file.
            .with_automatic_cleanup(true);
        Ok(FileStore {
            store: Arc::new(store),
            base: format!("file://{}/", dir.display().to_string().trim_end_matches('/')),
            prefix: String::new(),
            local: true,
        })
    }

    fn object_store(url: &str, endpoint: Option<&str>) -> Result<FileStore> {
        let parsed = url::Url::parse(url).with_context(|| format!("--files {url} is not a URL"))?;
        let bucket = parsed.host_str().unwrap_or_default();
        if bucket.is_empty() {
            bail!("--files {url} names no bucket (s3://BUCKET/PREFIX)");
        }
        let failed = |e: object_store::Error| anyhow!("cannot open the file store {url}: {e}");
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                if let Some(endpoint) = endpoint {
                    // A compatible server on a private network may speak plain HTTP: the
                    // operator chose it by writing http://.
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                Arc::new(builder.build().map_err(failed)?)
            }
            "gs" => Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).build().map_err(failed)?),
            "az" | "azure" | "abfs" | "abfss" => {
                Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).build().map_err(failed)?)
            }
            other => bail!(
                "--files {url}: no store speaks `{other}`; give a directory, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
            ),
        };
        let prefix = parsed.path().trim_matches('/').to_owned();
        let base = match prefix.as_str() {
            "" => format!("{}://{bucket}/", parsed.scheme()),
            prefix => format!("{}://{bucket}/{prefix}/", parsed.scheme()),
        };
        Ok(FileStore { store, base, prefix, local: false })
    }

    /// The store's address (no credentials), for messages.
    pub(crate) fn address(&self) -> &str {
        &self.base
    }

    /// A directory on this machine: other machines' `serve` cannot read what a
    /// worker here keeps.
    pub(crate) fn is_local(&self) -> bool {
        self.local
    }

    /// Where a run's file is kept: `runs/RUN/ATTEMPT/NAME.gz` under the store's
    /// address. The attempt keeps apart what a worker that lost the run put and what
    /// the worker that took it over put (files moved from the database: attempt 0).
    pub(crate) fn key(run_id: &str, attempt: i64, name: &str) -> String {
        format!("runs/{run_id}/{attempt}/{name}.gz")
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        let full = if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) };
        ObjectPath::parse(&full).with_context(|| format!("`{key}` cannot be a key in the file store"))
    }

    /// The key of a location of this store; an error names a location elsewhere
    /// (kept by a worker given another `--files`).
    fn key_of<'a>(&self, location: &'a str) -> Result<&'a str> {
        location.strip_prefix(&self.base).ok_or_else(|| {
            anyhow!(
                "the file is kept at {location}, outside this service's file store {}: give `serve` and every worker the same --files",
                self.base
            )
        })
    }

    /// Streams `content` into the store under `key`, gzipped, a chunk at a time:
    /// one request for a small file, a multipart upload of 8 MiB parts for a large
    /// one. What failed midway is aborted, so no half-written object is left.
    pub(crate) async fn put(&self, name: &str, key: &str, mut content: impl Read) -> Result<Kept> {
        let path = self.path(key)?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), path, PART).with_max_concurrency(PARTS_IN_FLIGHT);
        let failed = |e: anyhow::Error| e.context(format!("cannot write {key} to the file store {}", self.base));
        let mut hasher = Sha256::new();
        let mut encoder = GzEncoder::new(Vec::with_capacity(CHUNK), flate2::Compression::fast());
        let mut chunk = vec![0u8; CHUNK];
        let (mut bytes, mut stored) = (0usize, 0usize);
        let written: Result<()> = async {
            loop {
                let n = match content.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(anyhow!(e).context("cannot read the file")),
                };
                hasher.update(&chunk[..n]);
                bytes += n;
                encoder.write_all(&chunk[..n])?;
                let out = std::mem::take(encoder.get_mut());
                if !out.is_empty() {
                    stored += out.len();
                    writer.put(Bytes::from(out)).await?;
                }
            }
            let out = encoder.finish()?;
            stored += out.len();
            writer.put(Bytes::from(out)).await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            writer.abort().await.ok();
            return Err(failed(e));
        }
        writer.shutdown().await.map_err(|e| failed(e.into()))?;
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Kept {
            name: name.to_owned(),
            location: format!("{}{key}", self.base),
            bytes: bytes as i64,
            stored_bytes: stored as i64,
            sha256,
        })
    }

    /// The object at `location`, to stream.
    pub(crate) async fn get(&self, location: &str) -> Result<Found> {
        let path = self.path(self.key_of(location)?)?;
        match self.store.get(&path).await {
            Ok(object) => Ok(Found::Object(object)),
            Err(object_store::Error::NotFound { .. }) => Ok(Found::Missing),
            Err(e) => Err(anyhow!("cannot read {location} from the file store: {e}")),
        }
    }

    /// Deletes the object at `location`; one already gone is not an error.
    pub(crate) async fn delete(&self, location: &str) -> Result<()> {
        let path = self.path(self.key_of(location)?)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow!("cannot delete {location} from the file store: {e}")),
        }
    }
}

/// Deletes the files past their retention, objects first (a file whose object could
/// not be deleted stays listed, and is tried again next time); how many went.
pub(crate) async fn expire(db: &Db, files: &FileStore, now: i64) -> Result<usize> {
    const BATCH: i64 = 500;
    let mut deleted = 0;
    loop {
        let expired = db.expired_files(now, BATCH).await?;
        let mut this_batch = 0;
        for (run_id, name, location) in &expired {
            if let Some(location) = location {
                if let Err(e) = files.delete(location).await {
                    tracing::warn!(run = %run_id, "a file past its retention stays: {e:#}");
                    continue;
                }
            }
            db.delete_file(run_id, name).await?;
            this_batch += 1;
        }
        deleted += this_batch;
        if (expired.len() as i64) < BATCH || this_batch == 0 {
            return Ok(deleted);
        }
    }
}

/// Moves the files kept in the database (written before the file store) into
/// `files`, one at a time, each in its own step: an interrupted migration goes on
/// where it stopped when run again, and a file is listed in one place at any time.
/// `progress` hears of each file moved. How many moved.
pub(crate) async fn migrate(db: &Db, files: &FileStore, mut progress: impl FnMut(&str, &Kept)) -> Result<usize> {
    let mut moved = 0;
    loop {
        let batch = db.files_in_database(100).await?;
        if batch.is_empty() {
            return Ok(moved);
        }
        for (run_id, name) in batch {
            let Some(place) = db.file_place(&run_id, &name).await? else { continue };
            let Some(packed) = place.content else { continue };
            // Put as the worker puts a new file (gzipped again, checksummed on the way).
            let content = flate2::read::GzDecoder::new(std::io::Cursor::new(packed));
            let kept = files
                .put(&name, &FileStore::key(&run_id, 0, &name), content)
                .await
                .with_context(|| format!("run {run_id}'s file {name} was not moved"))?;
            if kept.bytes != place.bytes {
                files.delete(&kept.location).await.ok();
                bail!(
                    "run {run_id}'s file {name} is damaged in the database: {} bytes, {} recorded",
                    kept.bytes,
                    place.bytes
                );
            }
            if db.file_moved(&run_id, &kept).await? {
                progress(&run_id, &kept);
                moved += 1;
            }
        }
    }
}

/// An object's bytes, gzipped as kept, decompressed as they are read: a blocking
/// reader (on a blocking thread) over the object's stream.
pub(crate) fn gunzip_blocking(object: GetResult) -> impl Read + Send + 'static {
    let stream = object.into_stream().map(|chunk| chunk.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(64 << 10, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_goes_in_gzipped_with_its_checksum_and_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(None, None, dir.path()).unwrap();
        // Larger than a part, so the multipart path is taken, and barely compressible
        // in places so the gzip is larger than a part too.
        let mut content = Vec::new();
        let mut x: u64 = 7;
        while content.len() < 3 * PART {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            content.extend_from_slice(format!("{{\"asset\":{x},\"n\":{}}}\n", content.len()).as_bytes());
        }
        let key = FileStore::key("run-1", 1, "kdi-0001.json");
        let kept = store.put("kdi-0001.json", &key, &content[..]).await.unwrap();
        assert_eq!(kept.bytes as usize, content.len());
        assert!(kept.location.starts_with("file://") && kept.location.ends_with("/runs/run-1/1/kdi-0001.json.gz"));
        let expected: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(kept.sha256, expected);
        let on_disk = std::fs::metadata(dir.path().join("files/runs/run-1/1/kdi-0001.json.gz")).unwrap();
        assert_eq!(on_disk.len() as i64, kept.stored_bytes);
        assert!(kept.stored_bytes < kept.bytes, "kept gzipped");

        let Found::Object(object) = store.get(&kept.location).await.unwrap() else { panic!("the object is there") };
        let back = tokio::task::spawn_blocking(move || {
            let mut back = Vec::new();
            gunzip_blocking(object).read_to_end(&mut back).unwrap();
            back
        })
        .await
        .unwrap();
        assert!(back == content, "the content comes back as it went in");

        store.delete(&kept.location).await.unwrap();
        assert!(matches!(store.get(&kept.location).await.unwrap(), Found::Missing));
        store.delete(&kept.location).await.unwrap();
        assert!(!dir.path().join("files/runs/run-1").exists(), "the run's folder goes with its last file");
    }

    #[test]
    fn a_location_outside_the_store_and_a_store_nobody_speaks_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(None, None, dir.path()).unwrap();
        let e = store.key_of("s3://bucket/runs/r/kdi.json.gz").unwrap_err().to_string();
        assert!(e.contains("outside this service's file store file://") && e.contains("same --files"), "{e}");
        let e = FileStore::open(Some("ftp://host/x"), None, dir.path()).unwrap_err().to_string();
        assert!(e.contains("no store speaks `ftp`"), "{e}");
        let e = FileStore::open(None, Some("http://127.0.0.1:9000"), dir.path()).unwrap_err().to_string();
        assert!(e.contains("--files-endpoint is for S3-compatible stores"), "{e}");
        let s3 = FileStore::open(Some("s3://bucket/some/prefix/"), Some("http://127.0.0.1:9"), dir.path()).unwrap();
        assert_eq!(s3.address(), "s3://bucket/some/prefix/");
        assert_eq!(s3.path("runs/r/k.gz").unwrap().as_ref(), "some/prefix/runs/r/k.gz");
    }

    /// A database with one connector and run, and `files` of that run kept gzipped
    /// in the database as versions before the file store kept them.
    async fn database_with_old_files(dir: &Path, files: &[(&str, &[u8])]) -> Db {
        let db = Db::connect(&format!("sqlite://{}", dir.join("t.db").display())).await.unwrap();
        db.migrate().await.unwrap();
        let Db::Sqlite(pool) = &db else { unreachable!() };
        sqlx::query(
            "INSERT INTO connectors (id, plugin_id, name, settings, secrets, enabled, trust, trusted_version, created_at, updated_at)
             VALUES ('c1', 'p', 'one', '{}', 's', 1, '{}', '1', 0, 0)",
        )
        .execute(pool)
        .await
        .unwrap();
        db.insert_run("r1", "c1", "manual").await.unwrap();
        for (name, content) in files {
            sqlx::query(
                "INSERT INTO run_files (run_id, name, bytes, content, expires_at) VALUES ('r1', $1, $2, $3, $4)",
            )
            .bind(name)
            .bind(content.len() as i64)
            .bind(crate::store::pack(content).unwrap())
            .bind(i64::MAX)
            .execute(pool)
            .await
            .unwrap();
        }
        db
    }

    async fn read_back(store: &FileStore, location: &str) -> Vec<u8> {
        let Found::Object(object) = store.get(location).await.unwrap() else { panic!("{location} is there") };
        tokio::task::spawn_blocking(move || {
            let mut back = Vec::new();
            gunzip_blocking(object).read_to_end(&mut back).unwrap();
            back
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_in_the_database_move_to_the_store_and_an_interrupted_move_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let contents: [(&str, &[u8]); 3] =
            [("kdi-0001.json", b"{\"assets\":[1]}"), ("kdi-0002.json", b"{\"assets\":[2]}"), ("kdi-0003.json", b"")];
        let db = database_with_old_files(dir.path(), &contents).await;
        let store = FileStore::open(Some(dir.path().join("elsewhere").to_str().unwrap()), None, dir.path()).unwrap();
        // An earlier migration stopped after putting the first file, before its row moved.
        store.put("kdi-0001.json", &FileStore::key("r1", 0, "kdi-0001.json"), contents[0].1).await.unwrap();

        let mut heard = Vec::new();
        let moved = migrate(&db, &store, |run, kept| heard.push(format!("{run}/{}", kept.name))).await.unwrap();
        assert_eq!(moved, 3);
        assert_eq!(heard, ["r1/kdi-0001.json", "r1/kdi-0002.json", "r1/kdi-0003.json"]);
        for (name, content) in contents {
            let place = db.file_place("r1", name).await.unwrap().unwrap();
            assert!(place.content.is_none(), "{name}'s bytes left the database");
            let location = place.location.expect("a location");
            assert!(location.starts_with(store.address()), "{location}");
            assert_eq!(read_back(&store, &location).await, content, "{name}");
            assert_eq!(place.bytes as usize, content.len());
        }
        let listed = db.files("r1").await.unwrap();
        let expected: String = Sha256::digest(contents[1].1).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(listed[1].sha256.as_deref(), Some(expected.as_str()));
        assert_eq!(migrate(&db, &store, |_, _| ()).await.unwrap(), 0, "nothing is left to move");
        let Db::Sqlite(pool) = &db else { unreachable!() };
        let pages = || async { sqlx::query_scalar::<_, i64>("PRAGMA freelist_count").fetch_one(pool).await.unwrap() };
        assert!(pages().await > 0, "the moved files left free pages");
        db.compact_after_move().await.unwrap();
        assert_eq!(pages().await, 0, "VACUUM gave them back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_deletes_the_objects_then_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = database_with_old_files(dir.path(), &[("old.json", b"{}")]).await;
        let store = FileStore::open(None, None, dir.path()).unwrap();
        let attempt = db.claim_run("r1", "w1").await.unwrap().unwrap();
        let kept =
            store.put("kdi-0001.json", &FileStore::key("r1", attempt, "kdi-0001.json"), &b"{}"[..]).await.unwrap();
        db.insert_files("r1", ("w1", attempt), std::slice::from_ref(&kept), 1_000).await.unwrap();
        // A file kept by a worker given another store cannot be deleted from here: it stays listed.
        let mut elsewhere = kept.clone();
        elsewhere.name = "kdi-0002.json".into();
        elsewhere.location = "s3://other-bucket/runs/r1/kdi-0002.json.gz".into();
        db.insert_files("r1", ("w1", attempt), &[elsewhere], 1_000).await.unwrap();

        assert_eq!(expire(&db, &store, 500).await.unwrap(), 0, "nothing is past its retention yet");
        assert_eq!(expire(&db, &store, 2_000).await.unwrap(), 1);
        assert!(matches!(store.get(&kept.location).await.unwrap(), Found::Missing), "the object is deleted");
        let left: Vec<String> = db.files("r1").await.unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(left, ["kdi-0002.json", "old.json"], "the unreachable one stays; the old one is not due");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_worker_holding_a_run_lists_its_files_and_a_takeover_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = database_with_old_files(dir.path(), &[]).await;
        let store = FileStore::open(None, None, dir.path()).unwrap();
        let put = |attempt: i64| {
            let store = store.clone();
            async move {
                store.put("kdi-0001.json", &FileStore::key("r1", attempt, "kdi-0001.json"), &b"{}"[..]).await.unwrap()
            }
        };
        let first = db.claim_run("r1", "w1").await.unwrap().unwrap();
        let early = put(first).await;
        assert_eq!(
            db.insert_files("r1", ("w1", first), std::slice::from_ref(&early), i64::MAX).await.unwrap(),
            Vec::<String>::new()
        );
        // w1 stops answering; w2 takes the run over and keeps its own files.
        let second = db.take_over_run("r1", "w2", "w1", first).await.unwrap().unwrap();
        let late = put(second).await;
        assert_ne!(early.location, late.location, "each attempt has its own keys");
        let replaced = db.insert_files("r1", ("w2", second), std::slice::from_ref(&late), i64::MAX).await.unwrap();
        assert_eq!(replaced, std::slice::from_ref(&early.location), "the lost attempt's object is named, to delete");
        // w1 comes back and tries to list what it wrote since: refused, nothing changes.
        let error = db.insert_files("r1", ("w1", first), std::slice::from_ref(&early), i64::MAX).await.unwrap_err();
        assert!(error.to_string().contains("worker w1 no longer holds run r1"), "{error}");
        assert_eq!(db.file_place("r1", "kdi-0001.json").await.unwrap().unwrap().location, Some(late.location));
    }
}
