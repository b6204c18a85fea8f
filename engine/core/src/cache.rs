//! Compiled modules on disk, so a process does not recompile what an earlier one compiled.
//!
//! The same cache as Python's `runtime.DiskCache`, with the same folder and
//! environment variables; the entries themselves differ (one file with a
//! trailer here, a `.sum` file beside it there) and never share a name.
//!
//! # Trust
//!
//! Loading an entry maps it and runs its machine code: wasmtime trusts what it
//! deserializes. The cache folder must therefore be the user's own (it is
//! created `0700`); the checks below catch a truncated or damaged file, not a
//! file someone wrote to attack the process.

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Set to a folder to move the cache, or to `off` to disable it.
pub const CACHE_ENV: &str = "HELIOSDB_WASM_CACHE";
/// The cache's size cap in MiB; least recently used entries go first.
pub const CACHE_MAX_ENV: &str = "HELIOSDB_WASM_CACHE_MAX_MB";
/// The size cap when [`CACHE_MAX_ENV`] is unset: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Bumped when the entry layout changes, so old entries are never read.
const FORMAT: &[u8] = b"heliosdb-wasm-cache/1";
const SUFFIX: &str = ".cwasm";
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file this old was left by a writer that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// Payload length (u64 LE), CRC-32 of the payload (u32 LE), magic.
///
/// It follows wasmtime's ELF image, which wasmtime reads by its section
/// headers and so ignores (documented nowhere: `second_load_is_a_hit` fails
/// if a wasmtime upgrade stops tolerating it). A header would not do: the
/// image must start the mapped file.
const TRAILER_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"HWC1";

/// Why [`ModuleCache::load_or_compile`] returned no module.
///
/// A cache that cannot be read or written is never one of them: it only
/// costs a compile.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The key is not 64 hex digits; it names a file, so it is checked.
    #[error("module key {0:?} is not a SHA-256 in hex")]
    InvalidKey(String),
    /// wasmtime refused the module (the binding reports it as `abi-error`).
    #[error("invalid WebAssembly: {0:#}")]
    Compile(wasmtime::Error),
}

/// What the cache did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Loads served from disk.
    pub hits: u64,
    /// Loads that compiled (no entry, or a rejected one).
    pub misses: u64,
    /// Entries deleted to stay under the size cap.
    pub evictions: u64,
    /// Entries found truncated or damaged (or refused by wasmtime), deleted.
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    rejected: AtomicU64,
}

/// The compiled-module cache in one folder, shared by every thread and process.
///
/// An entry is `module-<sha256>-<fingerprint>.cwasm`: wasmtime's serialized
/// module followed by a 16-byte trailer (payload size, CRC-32, magic). The
/// payload stays a plain wasmtime artifact, so wasmtime maps the file instead
/// of the process reading and copying it. The fingerprint digests the engine's
/// [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash):
/// target, ISA flags, tunables (fuel, epochs, stack), wasm features and the
/// wasmtime version, so an entry from other settings has another name and is
/// never loaded (wasmtime would also refuse it; that is a second line).
///
/// Entries are written to a temporary file in the folder, synced and renamed
/// into place, never rewritten: a crash or a concurrent writer leaves either
/// no entry or a complete one, and a mapped file never changes under a
/// running module. Two processes missing together at worst both compile.
pub struct ModuleCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
    counters: Counters,
}

impl ModuleCache {
    /// The cache in `dir` (created if missing), holding at most `max_bytes`.
    ///
    /// `None`, or a folder that cannot be created, gives a disabled cache:
    /// every load compiles.
    pub fn open(dir: Option<PathBuf>, max_bytes: u64) -> Self {
        let dir = dir.filter(|dir| create_private_dir(dir).is_ok());
        Self {
            dir,
            max_bytes,
            counters: Counters::default(),
        }
    }

    /// The cache the environment asks for: [`CACHE_ENV`] and [`CACHE_MAX_ENV`],
    /// by default `$XDG_CACHE_HOME/heliosdb-wasm` or `~/.cache/heliosdb-wasm`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let dir = match var(CACHE_ENV).filter(|v| !v.is_empty()) {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(PathBuf::from(v)),
            None => var("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    var("HOME")
                        .or_else(|| var("USERPROFILE"))
                        .filter(|v| !v.is_empty())
                        .map(|home| Path::new(&home).join(".cache"))
                })
                .map(|base| base.join("heliosdb-wasm")),
        };
        let max_bytes = var(CACHE_MAX_ENV)
            .and_then(|mb| mb.trim().parse::<u64>().ok())
            .filter(|&mb| mb > 0)
            .map_or(DEFAULT_MAX_BYTES, |mb| mb.saturating_mul(1 << 20));
        Self::open(dir, max_bytes)
    }

    /// The cache's folder, `None` when it is disabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The size cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    /// The module whose bytes are `wasm` and whose SHA-256 is `sha256_hex`,
    /// from the cache if it holds a sound entry for `engine`'s settings,
    /// otherwise compiled and stored.
    ///
    /// The key is trusted to be the SHA-256 of `wasm` (the registry's hash);
    /// it is not recomputed.
    ///
    /// # Errors
    ///
    /// [`CacheError::InvalidKey`] if `sha256_hex` is not 64 hex digits (even
    /// with the cache disabled, so a bad key is found in every setup), and
    /// [`CacheError::Compile`] if wasmtime refuses `wasm`.
    pub fn load_or_compile<A: Artifact>(
        &self,
        engine: &Engine,
        sha256_hex: &str,
        wasm: &[u8],
    ) -> Result<A, CacheError> {
        match self.lookup(engine, sha256_hex)? {
            Some(module) => Ok(module),
            None => self.compile_and_store(engine, sha256_hex, wasm),
        }
    }

    /// The cached module for `sha256_hex`, if the cache holds a sound entry
    /// for `engine`'s settings: the first half of
    /// [`load_or_compile`](Self::load_or_compile), for callers that only
    /// fetch the module's bytes on a miss (the registry's blob of a large
    /// module costs milliseconds to read). A damaged entry is deleted.
    ///
    /// # Errors
    ///
    /// [`CacheError::InvalidKey`] if `sha256_hex` is not 64 hex digits.
    pub fn lookup<A: Artifact>(
        &self,
        engine: &Engine,
        sha256_hex: &str,
    ) -> Result<Option<A>, CacheError> {
        let key = check_key(sha256_hex)?;
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let path = entry_path::<A>(dir, &key, engine);
        match load(engine, &path) {
            Load::Hit(module) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(module));
            }
            Load::Missing => {}
            Load::Rejected => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                // A writer may have renamed a sound entry into place since
                // the check; deleting it only costs another compile.
                let _ = fs::remove_file(&path);
            }
        }
        Ok(None)
    }

    /// Compiles `wasm` and stores it under `sha256_hex` (a miss): the second
    /// half of [`load_or_compile`](Self::load_or_compile).
    ///
    /// # Errors
    ///
    /// As [`load_or_compile`](Self::load_or_compile).
    pub fn compile_and_store<A: Artifact>(
        &self,
        engine: &Engine,
        sha256_hex: &str,
        wasm: &[u8],
    ) -> Result<A, CacheError> {
        let key = check_key(sha256_hex)?;
        let Some(dir) = &self.dir else {
            return A::compile(engine, wasm).map_err(CacheError::Compile); // a disabled cache counts nothing
        };
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let module = A::compile(engine, wasm).map_err(CacheError::Compile)?;
        let path = entry_path::<A>(dir, &key, engine);
        if let Ok(payload) = module.serialize() {
            if write_entry(dir, &path, &payload).is_ok() {
                self.trim(dir, &path);
            }
        }
        Ok(module)
    }

    /// Deletes the least recently used entries until the folder is under the
    /// cap, never `keep` (the entry just written), and stale temporary files.
    fn trim(&self, dir: &Path, keep: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut found: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if !meta.is_file() {
                continue;
            }
            if name.ends_with(SUFFIX) {
                found.push((mtime, meta.len(), entry.path()));
            } else if name.starts_with(TEMP_PREFIX)
                && now.duration_since(mtime).is_ok_and(|age| age > STALE_TEMP)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let mut total: u64 = found.iter().map(|(_, len, _)| len).sum();
        found.sort();
        for (_, len, path) in found {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            // Another process may have evicted it first: only count our own.
            if fs::remove_file(&path).is_ok() {
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                // Python's entries keep their checksum beside them.
                let _ = fs::remove_file(path.with_extension("sum"));
            }
            total = total.saturating_sub(len);
        }
    }
}

/// The file-name part that changes with every setting compiled code depends on.
pub fn fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(FORMAT);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds a `Hash` into SHA-256, whose output, unlike std's hashers, is stable.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

fn check_key(key: &str) -> Result<String, CacheError> {
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(key.to_ascii_lowercase())
    } else {
        Err(CacheError::InvalidKey(key.to_owned()))
    }
}

/// What the cache holds: compiled core modules and components, each kind
/// under its own file-name prefix.
pub trait Artifact: Sized {
    /// The file-name prefix of its entries.
    const KIND: &'static str;

    /// Compiles `wasm`.
    ///
    /// # Errors
    ///
    /// What wasmtime says is wrong with it.
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;

    /// The bytes of an entry.
    ///
    /// # Errors
    ///
    /// If wasmtime cannot serialize it.
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;

    /// Maps a verified entry.
    ///
    /// # Safety
    ///
    /// `file` (opened from `path`) must hold what [`serialize`](Self::serialize)
    /// wrote with this wasmtime and engine settings.
    unsafe fn open(engine: &Engine, file: File, path: &Path) -> wasmtime::Result<Self>;
}

impl Artifact for Module {
    const KIND: &'static str = "module";

    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::from_binary(engine, wasm)
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }

    unsafe fn open(engine: &Engine, file: File, _path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: the caller's contract.
        unsafe { Module::deserialize_open_file(engine, file) }
    }
}

impl Artifact for Component {
    const KIND: &'static str = "component";

    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::from_binary(engine, wasm)
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }

    unsafe fn open(engine: &Engine, file: File, path: &Path) -> wasmtime::Result<Self> {
        // wasmtime maps a component from its path only: a rename between
        // the check and the mapping can only put another sound entry of
        // the same key in place (entries are written whole and renamed).
        drop(file);
        // SAFETY: the caller's contract, for whatever entry is at `path`.
        unsafe { Component::deserialize_file(engine, path) }
    }
}

fn entry_path<A: Artifact>(dir: &Path, key: &str, engine: &Engine) -> PathBuf {
    dir.join(format!("{}-{key}-{}{SUFFIX}", A::KIND, fingerprint(engine)))
}

enum Load<A> {
    Hit(A),
    Missing,
    Rejected,
}

fn load<A: Artifact>(engine: &Engine, path: &Path) -> Load<A> {
    // A file that cannot be opened is a miss; the write that follows
    // replaces it if it can.
    let Ok(mut file) = File::open(path) else {
        return Load::Missing;
    };
    if verify(&mut file).is_err() {
        return Load::Rejected;
    }
    // The mtime is the LRU order. Needs ownership of the file, which the
    // user has; if it fails the entry just ages.
    let _ = file.set_modified(SystemTime::now());
    // SAFETY: the file is the one just verified, through the same handle, so
    // a rename in between cannot swap it. Entries are only ever replaced by
    // rename, never written in place, so the mapped contents stay as checked
    // for the module's life. The payload was written by `Module::serialize`
    // of this wasmtime (the fingerprint is in the name, and wasmtime checks
    // its own version and settings section again) into a folder that is the
    // user's own; see the module documentation for that trust.
    match unsafe { A::open(engine, file, path) } {
        Ok(module) => Load::Hit(module),
        Err(_) => Load::Rejected,
    }
}

/// Checks the trailer: the size it records and the CRC-32 of the payload.
fn verify(file: &mut File) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let len = file.metadata()?.len();
    let trailer_len = TRAILER_LEN as u64;
    if len <= trailer_len {
        return Err(bad("too short"));
    }
    let payload_len = len - trailer_len;
    let mut trailer = [0u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(payload_len))?;
    file.read_exact(&mut trailer)?;
    let (size, rest) = trailer.split_at(8);
    let (crc, magic) = rest.split_at(4);
    if magic != MAGIC {
        return Err(bad("magic"));
    }
    if u64::from_le_bytes(size.try_into().expect("8 bytes")) != payload_len {
        return Err(bad("size"));
    }
    let expected = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut payload = Read::take(&mut *file, payload_len);
    loop {
        let n = payload.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.finalize() != expected {
        return Err(bad("checksum"));
    }
    Ok(())
}

fn trailer(payload: &[u8]) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..8].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out[12..].copy_from_slice(MAGIC);
    out
}

/// Writes `payload` and its trailer to a temporary file in `dir`, syncs it and
/// renames it to `path`, so `path` is only ever absent or complete.
fn write_entry(dir: &Path, path: &Path, payload: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(payload)?;
        file.write_all(&trailer(payload))?;
        // Synced before the rename: after a crash the name never points at
        // data the disk did not keep (the trailer would catch it, at the
        // cost of a compile).
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use wasmtime::{Config, Instance, OptLevel, Store};

    /// `(module (func (export "add") (param i32 i32) (result i32) ...))`:
    /// the lib compiles binaries only, and the tests have no WAT-to-binary step.
    const ADD: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type (i32 i32) -> i32
        0x03, 0x02, 0x01, 0x00, // one function of type 0
        0x07, 0x07, 0x01, 0x03, b'a', b'd', b'd', 0x00, 0x00, // export "add"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, // body
    ];

    fn key(wasm: &[u8]) -> String {
        Sha256::digest(wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A fresh folder under the system temp dir, deleted on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "heliosdb-core-cache-{name}-{}-{nanos}",
                std::process::id()
            ));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cache(dir: &TempDir) -> ModuleCache {
        ModuleCache::open(Some(dir.0.clone()), DEFAULT_MAX_BYTES)
    }

    /// Every file in the folder, sorted by name.
    fn files(dir: &TempDir) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn entry(dir: &TempDir, engine: &Engine, key: &str) -> PathBuf {
        dir.0
            .join(format!("module-{key}-{}{SUFFIX}", fingerprint(engine)))
    }

    fn assert_adds(engine: &Engine, module: &Module) {
        let mut store = Store::new(engine, ());
        // Only engines with fuel accept it; the others need none. The
        // deadline only matters to an engine with epoch interruption.
        let _ = store.set_fuel(1_000_000);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = Instance::new(&mut store, module, &[]).unwrap();
        let add = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "add")
            .unwrap();
        assert_eq!(add.call(&mut store, (2, 3)).unwrap(), 5);
    }

    fn stats(hits: u64, misses: u64, evictions: u64, rejected: u64) -> Stats {
        Stats {
            hits,
            misses,
            evictions,
            rejected,
        }
    }

    #[test]
    fn second_load_is_a_hit() {
        let dir = TempDir::new("hit");
        let cache = cache(&dir);
        let engine = Engine::default();
        let key = key(ADD);
        assert_adds(
            &engine,
            &cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap(),
        );
        assert_eq!(cache.stats(), stats(0, 1, 0, 0));
        let module = cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        assert_eq!(cache.stats(), stats(1, 1, 0, 0));
        assert_adds(&engine, &module);
        assert_eq!(files(&dir).len(), 1, "{:?}", files(&dir));

        // Another process (a new cache) hits without the wasm being valid.
        let other = ModuleCache::open(Some(dir.0.clone()), DEFAULT_MAX_BYTES);
        assert_adds(
            &engine,
            &other.load_or_compile::<Module>(&engine, &key, b"").unwrap(),
        );
        assert_eq!(other.stats().hits, 1);
    }

    /// Damages the entry with `damage`, then expects it rejected and rebuilt.
    fn rejected_and_rebuilt(name: &str, damage: impl FnOnce(&Path)) {
        let dir = TempDir::new(name);
        let cache = cache(&dir);
        let engine = Engine::default();
        let key = key(ADD);
        cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        let path = entry(&dir, &engine, &key);
        let sound = fs::read(&path).unwrap();
        damage(&path);
        assert_ne!(fs::read(&path).unwrap(), sound);

        let module = cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        assert_eq!(cache.stats(), stats(0, 2, 0, 1));
        assert_adds(&engine, &module);
        assert_eq!(fs::read(&path).unwrap(), sound, "rewritten sound");
        cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn truncated_entry_is_rejected() {
        rejected_and_rebuilt("truncated", |path| {
            let file = OpenOptions::new().write(true).open(path).unwrap();
            let len = file.metadata().unwrap().len();
            file.set_len(len - 100).unwrap();
        });
    }

    #[test]
    fn flipped_byte_is_rejected() {
        rejected_and_rebuilt("flipped", |path| {
            let mut bytes = fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            fs::write(path, bytes).unwrap();
        });
    }

    #[test]
    fn empty_entry_is_rejected() {
        rejected_and_rebuilt("empty", |path| fs::write(path, b"").unwrap());
    }

    fn engine_with(configure: impl FnOnce(&mut Config)) -> Engine {
        let mut config = Config::new();
        configure(&mut config);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn other_settings_have_other_entries() {
        let engines = [
            Engine::default(),
            engine_with(|c| {
                c.consume_fuel(true);
            }),
            engine_with(|c| {
                c.epoch_interruption(true);
            }),
            engine_with(|c| {
                c.cranelift_opt_level(OptLevel::None);
            }),
            engine_with(|c| {
                c.wasm_multi_memory(false);
            }),
        ];
        let dir = TempDir::new("settings");
        let cache = cache(&dir);
        let key = key(ADD);
        for (n, engine) in engines.iter().enumerate() {
            assert_adds(engine, &cache.load_or_compile(engine, &key, ADD).unwrap());
            assert_eq!(cache.stats().misses, n as u64 + 1, "engine {n} missed");
        }
        assert_eq!(cache.stats().hits, 0);
        assert_eq!(files(&dir).len(), engines.len());
        // Same settings, another Engine: the same entry.
        let again = engine_with(|c| {
            c.consume_fuel(true);
        });
        assert_adds(
            &again,
            &cache.load_or_compile::<Module>(&again, &key, ADD).unwrap(),
        );
        assert_eq!(cache.stats().hits, 1);
        // The wasm stack size is checked at run time, not compiled in
        // (Python's fingerprint includes it anyway): the entry is shared.
        let stack = engine_with(|c| {
            c.max_wasm_stack(256 * 1024);
        });
        assert_adds(
            &stack,
            &cache.load_or_compile::<Module>(&stack, &key, ADD).unwrap(),
        );
        assert_eq!(cache.stats().hits, 2);
    }

    #[test]
    fn entry_under_a_wrong_name_is_refused_by_wasmtime() {
        // The second line of defence: a sound file from other settings that
        // somehow has this engine's name is refused, deleted and rebuilt.
        let dir = TempDir::new("renamed");
        let cache = cache(&dir);
        let key = key(ADD);
        let plain = Engine::default();
        let fuel = engine_with(|c| {
            c.consume_fuel(true);
        });
        cache.load_or_compile::<Module>(&plain, &key, ADD).unwrap();
        fs::rename(entry(&dir, &plain, &key), entry(&dir, &fuel, &key)).unwrap();
        assert_adds(
            &fuel,
            &cache.load_or_compile::<Module>(&fuel, &key, ADD).unwrap(),
        );
        assert_eq!(cache.stats(), stats(0, 2, 0, 1));
    }

    #[test]
    fn size_cap_evicts_the_least_recently_used() {
        let dir = TempDir::new("lru");
        let engine = Engine::default();
        let [a, b, c] = ["a", "b", "c"].map(|c| c.repeat(64));
        cache(&dir)
            .load_or_compile::<Module>(&engine, &a, ADD)
            .unwrap();
        let size = fs::metadata(entry(&dir, &engine, &a)).unwrap().len();
        // Room for two entries, not three.
        let cache = ModuleCache::open(Some(dir.0.clone()), 2 * size + size / 2);
        cache.load_or_compile::<Module>(&engine, &b, ADD).unwrap();
        assert_eq!(cache.stats().evictions, 0);
        // a is older than b, then a is used: b becomes the least recent.
        let now = SystemTime::now();
        for (key, age) in [(&a, 200), (&b, 100)] {
            let file = File::open(entry(&dir, &engine, key)).unwrap();
            file.set_modified(now - Duration::from_secs(age)).unwrap();
        }
        cache.load_or_compile::<Module>(&engine, &a, ADD).unwrap();
        assert_eq!(cache.stats().hits, 1);
        cache.load_or_compile::<Module>(&engine, &c, ADD).unwrap();
        assert_eq!(cache.stats().evictions, 1);
        assert!(entry(&dir, &engine, &a).exists(), "recently used");
        assert!(!entry(&dir, &engine, &b).exists(), "least recently used");
        assert!(entry(&dir, &engine, &c).exists(), "just written");
    }

    #[test]
    fn entry_larger_than_the_cap_is_kept() {
        let dir = TempDir::new("tiny");
        let cache = ModuleCache::open(Some(dir.0.clone()), 1);
        let engine = Engine::default();
        let key = key(ADD);
        cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        assert_eq!(cache.stats(), stats(1, 1, 0, 0));
    }

    #[test]
    fn concurrent_loads_leave_one_sound_entry() {
        let dir = TempDir::new("concurrent");
        let cache = cache(&dir);
        let engine = Engine::default();
        let key = key(ADD);
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    barrier.wait();
                    let module = cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
                    assert_adds(&engine, &module);
                });
            }
        });
        assert_eq!(
            files(&dir),
            [entry(&dir, &engine, &key)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()]
        );
        let after = cache.stats();
        assert_eq!(after.hits + after.misses, 2);
        assert_eq!(after.rejected, 0);
        cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap();
        assert_eq!(cache.stats().hits, after.hits + 1);
    }

    #[test]
    fn off_disables_the_cache() {
        let cache = ModuleCache::from_lookup(|name| (name == CACHE_ENV).then(|| "OFF".into()));
        assert!(cache.dir().is_none());
        let engine = Engine::default();
        let key = key(ADD);
        for _ in 0..2 {
            assert_adds(
                &engine,
                &cache.load_or_compile::<Module>(&engine, &key, ADD).unwrap(),
            );
        }
        assert_eq!(cache.stats(), Stats::default());
    }

    #[test]
    fn environment_picks_folder_and_cap() {
        let dir = TempDir::new("env");
        let folder = dir.0.to_string_lossy().into_owned();
        let cache = ModuleCache::from_lookup(|name| match name {
            CACHE_ENV => Some(folder.clone()),
            CACHE_MAX_ENV => Some("3".into()),
            _ => None,
        });
        assert_eq!(cache.dir(), Some(dir.0.as_path()));
        assert_eq!(cache.max_bytes(), 3 << 20);

        let default = ModuleCache::from_lookup(|name| match name {
            "HOME" => Some(folder.clone()),
            CACHE_MAX_ENV => Some("lots".into()),
            _ => None,
        });
        assert_eq!(
            default.dir(),
            Some(dir.0.join(".cache").join("heliosdb-wasm").as_path())
        );
        assert_eq!(default.max_bytes(), DEFAULT_MAX_BYTES);
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = TempDir::new("bad");
        let cache = cache(&dir);
        let engine = Engine::default();
        for key in ["../../etc/passwd", "abc", &"g".repeat(64)] {
            assert!(matches!(
                cache.load_or_compile::<Module>(&engine, key, ADD),
                Err(CacheError::InvalidKey(_))
            ));
        }
        let err = cache
            .load_or_compile::<Module>(&engine, &key(b"nope"), b"nope")
            .unwrap_err();
        assert!(matches!(err, CacheError::Compile(_)));
        assert!(
            err.to_string().starts_with("invalid WebAssembly: "),
            "{err}"
        );
        assert!(files(&dir).is_empty());
    }
}
