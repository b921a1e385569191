//! The node's pods, by container id: written by the watch task, read by
//! the pipeline when it describes a process (never per span).

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use super::PodMeta;

/// A pod and the name of one of its containers.
#[derive(Debug, Clone)]
pub struct ContainerPod {
    pub pod: Arc<PodMeta>,
    pub container: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// By pod uid.
    pods: HashMap<String, Arc<PodMeta>>,
    /// Container id → (pod uid, container name).
    containers: HashMap<String, (String, String)>,
}

/// Bounded set of pods (`max_pods`; further pods are counted and not
/// kept).
#[derive(Debug)]
pub struct PodStore {
    inner: RwLock<Inner>,
    max_pods: usize,
    /// Bumped on every change, so cached process resources without a pod
    /// know when to look again.
    generation: AtomicU64,
    synced: AtomicBool,
    /// Pods not kept because the store was full.
    pub overflow: AtomicU64,
}

impl PodStore {
    pub fn new(max_pods: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner::default()),
            max_pods: max_pods.max(1),
            generation: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            overflow: AtomicU64::new(0),
        })
    }

    /// The pod running container `id` (a full id, or the 64-digit id the
    /// cgroup shows for a longer-prefixed runtime id).
    pub fn by_container(&self, id: &str) -> Option<ContainerPod> {
        let inner = self.inner.read().ok()?;
        let (uid, name) = inner.containers.get(id)?;
        Some(ContainerPod {
            pod: inner.pods.get(uid)?.clone(),
            container: name.clone(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the node's pods were listed at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.pods.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces everything with a fresh list.
    pub fn replace_all(&self, pods: Vec<PodMeta>) {
        if let Ok(mut inner) = self.inner.write() {
            *inner = Inner::default();
            for pod in pods {
                insert(&mut inner, pod, self.max_pods, &self.overflow);
            }
        }
        self.synced.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// An added or modified pod.
    pub fn upsert(&self, pod: PodMeta) {
        if let Ok(mut inner) = self.inner.write() {
            remove(&mut inner, &pod.uid);
            insert(&mut inner, pod, self.max_pods, &self.overflow);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn delete(&self, uid: &str) {
        if let Ok(mut inner) = self.inner.write() {
            remove(&mut inner, uid);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

fn insert(inner: &mut Inner, pod: PodMeta, max: usize, overflow: &AtomicU64) {
    if inner.pods.len() >= max {
        overflow.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for (id, name) in &pod.containers {
        inner
            .containers
            .insert(id.clone(), (pod.uid.clone(), name.clone()));
    }
    inner.pods.insert(pod.uid.clone(), Arc::new(pod));
}

fn remove(inner: &mut Inner, uid: &str) {
    if let Some(old) = inner.pods.remove(uid) {
        for (id, _) in &old.containers {
            inner.containers.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, containers: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            name: format!("pod-{uid}"),
            uid: uid.into(),
            containers: containers
                .iter()
                .map(|(i, n)| ((*i).to_string(), (*n).to_string()))
                .collect(),
            ..PodMeta::default()
        }
    }

    #[test]
    fn add_modify_delete_bounded() {
        let s = PodStore::new(2);
        assert!(!s.synced());
        s.replace_all(vec![pod("a", &[("c1", "web")])]);
        assert!(s.synced());
        assert_eq!(s.by_container("c1").unwrap().container, "web");
        let g = s.generation();
        s.upsert(pod("a", &[("c2", "web")]));
        assert!(s.generation() > g);
        assert!(s.by_container("c1").is_none(), "restarted container");
        assert_eq!(s.by_container("c2").unwrap().pod.name, "pod-a");
        s.upsert(pod("b", &[]));
        s.upsert(pod("c", &[("c3", "x")]));
        assert_eq!(s.len(), 2);
        assert_eq!(s.overflow.load(Ordering::Relaxed), 1);
        s.delete("a");
        assert!(s.by_container("c2").is_none());
        assert_eq!(s.len(), 1);
    }
}
