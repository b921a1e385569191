//! pid → resource, loaded on first use, bounded, least-recently-used.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::process::read_start_time;
use super::{HostInfo, HostPaths, ProcessInfo, ProcessSnapshot, ResourceError, keys};

/// Default number of processes a [`ResourceCache`] holds.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A process with its exportable resource.
#[derive(Debug)]
pub struct ProcessResource {
    /// What was read about the process.
    pub info: ProcessInfo,
    /// Process, host and agent attributes, ready for export.
    pub resource: Resource,
    /// Hash of the resource's attributes: equal resources have equal keys,
    /// across runs too. Group spans by it.
    pub key: u64,
}

impl ProcessResource {
    /// Builds the resource of `info` on `host`.
    pub fn new(info: ProcessInfo, host: &HostInfo) -> Self {
        let mut attributes = info.attributes();
        attributes.extend(host.attributes());
        attributes.push(KeyValue::new(
            keys::TELEMETRY_DISTRO_NAME,
            keys::DISTRO_NAME,
        ));
        attributes.push(KeyValue::new(
            keys::TELEMETRY_DISTRO_VERSION,
            keys::DISTRO_VERSION,
        ));
        let resource = Resource::builder_empty()
            .with_attributes(attributes)
            .build();
        let key = resource_key(&resource);
        Self {
            info,
            resource,
            key,
        }
    }
}

#[cfg(test)]
impl ProcessResource {
    /// A resource with exactly `attributes`.
    pub fn for_tests(attributes: Vec<KeyValue>) -> Self {
        let resource = Resource::builder_empty()
            .with_attributes(attributes)
            .build();
        let key = resource_key(&resource);
        Self {
            info: ProcessInfo::fallback(42, "test"),
            resource,
            key,
        }
    }
}

/// Hash of the attributes sorted by key (a resource iterates in hash map
/// order), each key and value followed by 0xff, a byte UTF-8 never uses.
fn resource_key(resource: &Resource) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    let mut attributes: Vec<(&str, String)> = resource
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str().into_owned()))
        .collect();
    attributes.sort_unstable();
    attributes
        .iter()
        .flat_map(|(key, value)| [key.as_bytes(), &[0xff], value.as_bytes(), &[0xff]])
        .fold(FNV_OFFSET_BASIS, fnv1a)
}

/// Continues a 64-bit FNV-1a hash over `bytes`.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// Counters of a [`ResourceCache`], since its creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to load the process.
    pub misses: u64,
    /// Loads that failed (a fallback resource was used, or a refresh failed).
    pub load_failures: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries reloaded by [`ResourceCache::refresh`] (pid reused).
    pub reloads: u64,
}

/// What [`ResourceCache::refresh`] found.
#[derive(Debug)]
pub enum Refresh {
    /// The pid is not cached: nothing to do.
    NotCached,
    /// Same process as cached.
    Unchanged,
    /// The pid now belongs to another process, whose resource replaced the
    /// cached one.
    Reloaded(Arc<ProcessResource>),
    /// The process is gone; the entry stays until [`ResourceCache::remove`].
    Gone,
    /// The process could not be checked or reloaded; the entry stays.
    Failed(ResourceError),
}

#[derive(Debug)]
struct Entry {
    resource: Arc<ProcessResource>,
    last_used: u64,
}

/// Resources of the observed processes, by host pid.
///
/// Lookups are O(1); when full, inserting scans the entries for the least
/// recently used one (O(capacity), only on a miss).
#[derive(Debug)]
pub struct ResourceCache {
    paths: HostPaths,
    host: HostInfo,
    capacity: usize,
    entries: HashMap<u32, Entry>,
    /// Incremented on every use, to order entries by recency.
    clock: u64,
    stats: CacheStats,
}

impl ResourceCache {
    /// A cache reading processes under `paths.proc`, with the host detected
    /// from `paths.root`, holding at most `capacity` (at least 1) processes.
    pub fn new(paths: HostPaths, capacity: usize) -> Self {
        let host = HostInfo::detect(&paths.root);
        Self::with_host(paths, host, capacity)
    }

    /// Like [`new`](Self::new), with an already detected host.
    pub fn with_host(paths: HostPaths, host: HostInfo, capacity: usize) -> Self {
        Self {
            paths,
            host,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// The host all resources describe.
    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// The resource of process `pid`, loaded on first use. If the process
    /// cannot be read (it is gone already, typically), a minimal resource
    /// built from `fallback_comm` (the comm eBPF reported) is cached instead.
    pub fn get_or_load(&mut self, pid: u32, fallback_comm: &str) -> Arc<ProcessResource> {
        if let Some(resource) = self.touch(pid) {
            self.stats.hits += 1;
            return resource;
        }
        self.stats.misses += 1;
        let info = self.load(pid).unwrap_or_else(|error| {
            tracing::debug!(pid, %error, "process unreadable, using its comm as resource");
            ProcessInfo::fallback(pid, fallback_comm)
        });
        self.insert(info)
    }

    /// Describes `pid` with `/proc` completed by the kernel's snapshot (or
    /// the snapshot alone when the process is already gone). Called when
    /// the kernel first announces a process; replaces a cached fallback.
    pub fn observe(&mut self, pid: u32, snapshot: &ProcessSnapshot) -> Arc<ProcessResource> {
        if let Some(entry) = self.entries.get(&pid)
            && !entry.resource.info.is_fallback()
        {
            return self.touch(pid).expect("cached");
        }
        self.stats.misses += 1;
        let info = match self.load(pid) {
            Ok(mut info) => {
                info.complete_from(snapshot);
                info
            }
            Err(_) => ProcessInfo::from_snapshot(pid, snapshot),
        };
        self.insert(info)
    }

    /// The cached resource of `pid`, if any, without loading it (marks it
    /// as used, but counts neither hit nor miss).
    pub fn get(&mut self, pid: u32) -> Option<Arc<ProcessResource>> {
        self.touch(pid)
    }

    /// Forgets process `pid` (call it when the process exits).
    pub fn remove(&mut self, pid: u32) -> Option<Arc<ProcessResource>> {
        self.entries.remove(&pid).map(|entry| entry.resource)
    }

    /// Checks that the cached process `pid` is still the one running under
    /// that pid (same start time) and reloads it if not. A cached fallback is
    /// reloaded when a process with that pid can be read.
    pub fn refresh(&mut self, pid: u32) -> Refresh {
        let Some(entry) = self.entries.get(&pid) else {
            return Refresh::NotCached;
        };
        let cached_start = entry.resource.info.start_time;
        match read_start_time(&self.paths, pid) {
            Ok(start) if Some(start) == cached_start => Refresh::Unchanged,
            Ok(_) => self.reload(pid),
            Err(ResourceError::ProcessGone { .. }) => Refresh::Gone,
            Err(error) => Refresh::Failed(error),
        }
    }

    /// Number of cached processes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no process is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Maximum number of cached processes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// All counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.stats.hits
    }

    /// Lookups that loaded the process.
    pub fn misses(&self) -> u64 {
        self.stats.misses
    }

    /// Loads that failed.
    pub fn load_failures(&self) -> u64 {
        self.stats.load_failures
    }

    /// Entries evicted to make room.
    pub fn evictions(&self) -> u64 {
        self.stats.evictions
    }

    /// Entries reloaded after pid reuse.
    pub fn reloads(&self) -> u64 {
        self.stats.reloads
    }

    /// The cached resource of `pid`, marked as just used.
    fn touch(&mut self, pid: u32) -> Option<Arc<ProcessResource>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&pid)?;
        entry.last_used = self.clock;
        Some(Arc::clone(&entry.resource))
    }

    /// Reads process `pid`, counting failures. A pid reused during the read
    /// is read again once: the newer process is the one to describe.
    fn load(&mut self, pid: u32) -> Result<ProcessInfo, ResourceError> {
        let result = match ProcessInfo::read(&self.paths, pid) {
            Err(ResourceError::PidReused { .. }) => ProcessInfo::read(&self.paths, pid),
            other => other,
        };
        if result.is_err() {
            self.stats.load_failures += 1;
        }
        result
    }

    fn reload(&mut self, pid: u32) -> Refresh {
        match self.load(pid) {
            Ok(info) => {
                self.stats.reloads += 1;
                Refresh::Reloaded(self.insert(info))
            }
            Err(ResourceError::ProcessGone { .. }) => Refresh::Gone,
            Err(error) => Refresh::Failed(error),
        }
    }

    /// Caches the resource of `info`, evicting the least recently used entry
    /// when full.
    fn insert(&mut self, info: ProcessInfo) -> Arc<ProcessResource> {
        let pid = info.pid;
        if !self.entries.contains_key(&pid) && self.entries.len() >= self.capacity {
            self.evict_least_recently_used();
        }
        let resource = Arc::new(ProcessResource::new(info, &self.host));
        self.clock += 1;
        let entry = Entry {
            resource: Arc::clone(&resource),
            last_used: self.clock,
        };
        self.entries.insert(pid, entry);
        resource
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(&pid, _)| pid);
        if let Some(pid) = oldest {
            self.entries.remove(&pid);
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{Key, Value};

    use super::*;
    use crate::resource::test_support::{TempTree, fixtures, stat_line};

    fn cache(capacity: usize) -> ResourceCache {
        let paths = fixtures();
        let host = HostInfo::detect(&paths.root);
        ResourceCache::with_host(paths, host, capacity)
    }

    fn string(resource: &Resource, key: &'static str) -> Option<String> {
        resource
            .get(&Key::from_static_str(key))
            .map(|value| value.as_str().into_owned())
    }

    #[test]
    fn resource_has_process_host_and_agent_attributes() {
        let mut cache = cache(16);
        let process = cache.get_or_load(2003, "ignored");
        let resource = &process.resource;
        assert_eq!(
            string(resource, "service.name").as_deref(),
            Some("frontend")
        );
        assert_eq!(
            resource.get(&Key::from_static_str("process.pid")),
            Some(Value::I64(2003))
        );
        assert_eq!(
            string(resource, "process.executable.name").as_deref(),
            Some("node")
        );
        assert_eq!(
            string(resource, "process.executable.path").as_deref(),
            Some("/usr/local/bin/node")
        );
        assert_eq!(
            string(resource, "process.command_line").as_deref(),
            Some("node /app/server.js")
        );
        assert_eq!(
            string(resource, "container.id").as_deref(),
            Some("5d8e1f3a7b9c2d4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e2f4a6b8c0d1e")
        );
        assert_eq!(
            string(resource, "service.namespace").as_deref(),
            Some("web")
        );
        assert_eq!(
            string(resource, "service.version").as_deref(),
            Some("3.2.0")
        );
        assert_eq!(
            string(resource, "deployment.environment.name").as_deref(),
            Some("production")
        );
        assert_eq!(
            string(resource, "k8s.pod.name").as_deref(),
            Some("frontend-6b7c9d-x2x9k")
        );
        assert_eq!(
            string(resource, "host.name").as_deref(),
            Some("node-7.example.internal")
        );
        assert_eq!(
            string(resource, "host.id").as_deref(),
            Some("4f6d2a9c1e8b4b7fa2c35d0e9b61f7a4")
        );
        assert_eq!(string(resource, "os.type").as_deref(), Some("linux"));
        assert!(string(resource, "host.arch").is_some());
        assert_eq!(
            string(resource, "telemetry.distro.name").as_deref(),
            Some("agent")
        );
        assert_eq!(string(resource, "process.owner"), None);
        assert_eq!(resource.schema_url(), None);
    }

    #[test]
    fn hits_and_misses() {
        let mut cache = cache(16);
        let first = cache.get_or_load(1000, "nginx");
        let second = cache.get_or_load(1000, "nginx");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                ..CacheStats::default()
            }
        );
        assert_eq!(cache.len(), 1);
        assert!(cache.get(1000).is_some());
        assert!(cache.get(1001).is_none());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn vanished_process_gets_a_fallback_resource() {
        let mut cache = cache(16);
        let process = cache.get_or_load(9999, "curl");
        assert!(process.info.is_fallback());
        let resource = &process.resource;
        assert_eq!(string(resource, "service.name").as_deref(), Some("curl"));
        assert_eq!(
            string(resource, "process.executable.name").as_deref(),
            Some("curl")
        );
        assert_eq!(
            resource.get(&Key::from_static_str("process.pid")),
            Some(Value::I64(9999))
        );
        assert!(string(resource, "host.name").is_some());
        assert_eq!(cache.load_failures(), 1);
        assert_eq!(cache.misses(), 1);
        // The fallback is cached: no second load.
        cache.get_or_load(9999, "curl");
        assert_eq!(cache.load_failures(), 1);
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let mut cache = cache(2);
        cache.get_or_load(1000, "a");
        cache.get_or_load(1001, "b");
        cache.get_or_load(1000, "a"); // 1001 is now the oldest
        cache.get_or_load(1002, "c");
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1000).is_some());
        assert!(cache.get(1001).is_none());
        assert!(cache.get(1002).is_some());
        assert_eq!(cache.evictions(), 1);
    }

    #[test]
    fn remove_forgets() {
        let mut cache = cache(4);
        cache.get_or_load(1000, "nginx");
        assert!(cache.remove(1000).is_some());
        assert!(cache.remove(1000).is_none());
        assert!(cache.is_empty());
        cache.get_or_load(1000, "nginx");
        assert_eq!(cache.misses(), 2);
    }

    #[test]
    fn keys_group_equal_resources() {
        let host = HostInfo::detect(&fixtures().root);
        let a = ProcessResource::new(ProcessInfo::fallback(1, "x"), &host);
        let b = ProcessResource::new(ProcessInfo::fallback(1, "x"), &host);
        let c = ProcessResource::new(ProcessInfo::fallback(2, "x"), &host);
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        let mut cache = cache(4);
        assert_ne!(
            cache.get_or_load(1000, "").key,
            cache.get_or_load(1001, "").key
        );
    }

    #[test]
    fn refresh_detects_pid_reuse() {
        let tree = TempTree::new();
        tree.process(500, "old", 1000);
        let mut cache = ResourceCache::new(tree.paths(), 8);
        assert!(matches!(cache.refresh(500), Refresh::NotCached));
        assert_eq!(cache.get_or_load(500, "old").info.service_name, "old");
        assert!(matches!(cache.refresh(500), Refresh::Unchanged));

        // Another process gets the pid.
        tree.write("proc/500/comm", "new\n");
        tree.write("proc/500/stat", stat_line(500, "new", 'S', 2000));
        match cache.refresh(500) {
            Refresh::Reloaded(process) => {
                assert_eq!(process.info.service_name, "new");
                assert_eq!(process.info.start_time, Some(2000));
            }
            other => panic!("expected a reload, got {other:?}"),
        }
        assert_eq!(cache.get_or_load(500, "").info.service_name, "new");
        assert_eq!(cache.reloads(), 1);
        assert_eq!(cache.len(), 1);

        // It exits: the entry stays until removed.
        std::fs::remove_dir_all(tree.root().join("proc/500")).unwrap();
        assert!(matches!(cache.refresh(500), Refresh::Gone));
        assert!(cache.get(500).is_some());
    }

    #[test]
    fn refresh_replaces_a_fallback_once_readable() {
        let tree = TempTree::new();
        let mut cache = ResourceCache::new(tree.paths(), 8);
        assert!(cache.get_or_load(600, "early").info.is_fallback());
        assert!(matches!(cache.refresh(600), Refresh::Gone));
        tree.process(600, "late", 5);
        match cache.refresh(600) {
            Refresh::Reloaded(process) => assert_eq!(process.info.service_name, "late"),
            other => panic!("expected a reload, got {other:?}"),
        }
    }

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a(0xcbf2_9ce4_8422_2325, b"foobar"),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ProcessResource>();
        assert_send_sync::<ResourceCache>();
    }

    #[test]
    fn capacity_is_at_least_one() {
        let cache = cache(0);
        assert_eq!(cache.capacity(), 1);
        assert_eq!(DEFAULT_CAPACITY, 4096);
    }

    #[test]
    fn live_current_process() {
        let mut cache = ResourceCache::new(HostPaths::default(), DEFAULT_CAPACITY);
        let pid = std::process::id();
        let process = cache.get_or_load(pid, "fallback");
        assert!(!process.info.is_fallback());
        assert_eq!(
            process.resource.get(&Key::from_static_str("process.pid")),
            Some(Value::I64(i64::from(pid)))
        );
        assert!(matches!(cache.refresh(pid), Refresh::Unchanged));
    }
}
