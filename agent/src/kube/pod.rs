//! The parts of a Kubernetes `Pod` (core/v1) the agent uses, decoded from
//! API server JSON, and the workload that owns it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Labels kept per pod (and bytes per label value): bounded memory even
/// for pods with huge label sets.
pub const MAX_LABELS: usize = 64;
const MAX_VALUE_BYTES: usize = 256;

/// What the agent knows about one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    /// The controller owning the pod, resolved to the workload.
    pub workload: Workload,
    /// (container id without the runtime prefix, container name), for every
    /// container that has started (init and ephemeral ones too).
    pub containers: Vec<(String, String)>,
}

/// The owners of a pod, as far as its own object tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub replicaset: Option<String>,
    pub deployment: Option<String>,
    pub daemonset: Option<String>,
    pub statefulset: Option<String>,
    pub job: Option<String>,
    pub cronjob: Option<String>,
}

impl Workload {
    /// The top-level workload's name (deployment, statefulset, daemonset,
    /// cronjob, job, replicaset).
    pub fn name(&self) -> Option<&str> {
        self.deployment
            .as_deref()
            .or(self.statefulset.as_deref())
            .or(self.daemonset.as_deref())
            .or(self.cronjob.as_deref())
            .or(self.job.as_deref())
            .or(self.replicaset.as_deref())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PodJson {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Debug, Deserialize)]
struct OwnerReference {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

impl PodJson {
    pub(super) fn into_meta(self) -> PodMeta {
        let mut labels = self.metadata.labels.unwrap_or_default();
        if labels.len() > MAX_LABELS {
            labels = labels.into_iter().take(MAX_LABELS).collect();
        }
        for v in labels.values_mut() {
            if v.len() > MAX_VALUE_BYTES {
                let mut cut = MAX_VALUE_BYTES;
                while !v.is_char_boundary(cut) {
                    cut -= 1;
                }
                v.truncate(cut);
            }
        }
        let owner = self
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true));
        let workload = owner
            .map(|o| workload(&o.kind, &o.name, &labels))
            .unwrap_or_default();
        let mut containers = Vec::new();
        for list in [
            self.status.container_statuses,
            self.status.init_container_statuses,
            self.status.ephemeral_container_statuses,
        ]
        .into_iter()
        .flatten()
        {
            for c in list {
                if let Some(id) = c.container_id.as_deref().and_then(strip_runtime) {
                    containers.push((id.to_string(), c.name));
                }
            }
        }
        PodMeta {
            name: self.metadata.name,
            namespace: self.metadata.namespace,
            uid: self.metadata.uid,
            node_name: self.spec.node_name.unwrap_or_default(),
            labels,
            workload,
            containers,
        }
    }
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`.
fn strip_runtime(id: &str) -> Option<&str> {
    let id = id.rsplit_once("://").map_or(id, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

/// The workload of a pod from its controller reference. A ReplicaSet made
/// by a Deployment is named `<deployment>-<pod-template-hash>`; a Job made
/// by a CronJob `<cronjob>-<scheduled minutes since the epoch>`. The pod
/// object does not say more without reading the owners, which the agent
/// avoids (one pod watch, no other resources).
fn workload(kind: &str, name: &str, labels: &BTreeMap<String, String>) -> Workload {
    let mut w = Workload::default();
    match kind {
        "ReplicaSet" => {
            w.replicaset = Some(name.to_string());
            w.deployment = labels
                .get("pod-template-hash")
                .and_then(|hash| name.strip_suffix(hash.as_str()))
                .and_then(|prefix| prefix.strip_suffix('-'))
                .filter(|d| !d.is_empty())
                .map(str::to_string);
        }
        "DaemonSet" => w.daemonset = Some(name.to_string()),
        "StatefulSet" => w.statefulset = Some(name.to_string()),
        "Job" => {
            w.job = Some(name.to_string());
            w.cronjob = name
                .rsplit_once('-')
                .filter(|(prefix, suffix)| {
                    !prefix.is_empty()
                        && suffix.len() >= 8
                        && suffix.bytes().all(|b| b.is_ascii_digit())
                })
                .map(|(prefix, _)| prefix.to_string());
        }
        _ => {}
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn owners() {
        let w = workload(
            "ReplicaSet",
            "checkout-7d9f8b6c5d",
            &labels(&[("pod-template-hash", "7d9f8b6c5d")]),
        );
        assert_eq!(w.deployment.as_deref(), Some("checkout"));
        assert_eq!(w.replicaset.as_deref(), Some("checkout-7d9f8b6c5d"));
        assert_eq!(w.name(), Some("checkout"));
        let w = workload("ReplicaSet", "standalone", &labels(&[]));
        assert_eq!(w.deployment, None, "no hash label: a bare ReplicaSet");
        assert_eq!(w.name(), Some("standalone"));
        let w = workload("Job", "backup-28930140", &labels(&[]));
        assert_eq!(w.cronjob.as_deref(), Some("backup"));
        assert_eq!(w.job.as_deref(), Some("backup-28930140"));
        let w = workload("Job", "migrate-db", &labels(&[]));
        assert_eq!(w.cronjob, None);
        assert_eq!(
            workload("StatefulSet", "pg", &labels(&[]))
                .statefulset
                .as_deref(),
            Some("pg")
        );
        assert_eq!(
            workload("DaemonSet", "agent", &labels(&[])).name(),
            Some("agent")
        );
        assert_eq!(workload("Node", "n1", &labels(&[])), Workload::default());
    }

    #[test]
    fn runtime_prefixes() {
        assert_eq!(strip_runtime("containerd://abc"), Some("abc"));
        assert_eq!(strip_runtime("cri-o://abc"), Some("abc"));
        assert_eq!(strip_runtime("abc"), Some("abc"));
        assert_eq!(strip_runtime("docker://"), None);
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::PodJson;

    /// The list the integration test's API server answers.
    const LIST: &str = include_str!("../../../tests/fixtures/kubernetes/pods-list-pending.json");
    const STARTED: &str = include_str!("../../../tests/fixtures/kubernetes/watch-started.jsonl");

    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<PodJson>,
    }

    #[test]
    fn pod_list_and_watch_fixtures() {
        let list: List = serde_json::from_str(LIST).expect("pod list");
        let pods: Vec<_> = list.items.into_iter().map(PodJson::into_meta).collect();
        assert_eq!(pods.len(), 3);
        let checkout = &pods[0];
        assert_eq!(checkout.namespace, "shop");
        assert_eq!(checkout.node_name, "node-1");
        assert_eq!(checkout.workload.deployment.as_deref(), Some("checkout"));
        assert!(checkout.containers.is_empty(), "container not started yet");
        assert_eq!(pods[1].workload.daemonset.as_deref(), Some("kube-proxy"));
        assert_eq!(pods[1].containers[0].1, "kube-proxy");
        assert_eq!(pods[2].workload.cronjob.as_deref(), Some("backup"));

        let first = STARTED.lines().next().expect("an event");
        let ev: serde_json::Value = serde_json::from_str(first).expect("event");
        let pod: PodJson = serde_json::from_value(ev["object"].clone()).expect("pod");
        let meta = pod.into_meta();
        assert_eq!(
            meta.containers,
            vec![("@CONTAINER_ID@".to_string(), "checkout".to_string())]
        );
    }
}
