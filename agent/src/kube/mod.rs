//! Kubernetes pod metadata for the processes of containers.
//!
//! A process's container id (from its cgroup, `resource/container.rs`) is
//! looked up in [`PodStore`], the node's pods, which one task keeps current
//! with a list and a watch of `/api/v1/pods?fieldSelector=spec.nodeName=…`
//! (`watch.rs`). Lookups happen when a process is described, never per
//! span; the store is bounded (`kubernetes.max_pods`).
//!
//! The HTTP client is the agent's reqwest (already used for OTLP/HTTP):
//! one list and one watch of one resource need no more than GET, a bearer
//! token and a CA, while the `kube` crate would bring a second TLS and
//! client stack, the generated API types of every resource and their
//! compile time.
//!
//! Attributes (OpenTelemetry `k8s.*` conventions): `k8s.pod.name`,
//! `k8s.pod.uid`, `k8s.namespace.name`, `k8s.container.name`,
//! `k8s.node.name`, and from the controller reference
//! `k8s.replicaset.name`, `k8s.deployment.name` (the ReplicaSet's name
//! without its pod-template-hash), `k8s.daemonset.name`,
//! `k8s.statefulset.name`, `k8s.job.name`, `k8s.cronjob.name` (the Job's
//! name without its schedule suffix).

pub mod api;
mod pod;
mod store;
pub mod watch;

use opentelemetry::KeyValue;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use pod::{PodMeta, Workload};
pub use store::{ContainerPod, PodStore};

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Config(String),
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("API server answered {code}: {message}")]
    Status { code: u16, message: String },
    #[error("undecodable answer: {0}")]
    Decode(String),
    #[error("resource version expired (410 Gone)")]
    Gone,
}

impl KubeError {
    fn reason(&self) -> &'static str {
        match self {
            KubeError::Config(_) => "config",
            KubeError::Http(_) => "http",
            KubeError::Status {
                code: 401 | 403, ..
            } => "unauthorized",
            KubeError::Status { .. } => "status",
            KubeError::Decode(_) => "decode",
            KubeError::Gone => "gone",
        }
    }
}

/// The pod watch's own metrics.
#[derive(Clone)]
pub struct KubeMetrics {
    pub events: IntCounterVec,
    pub errors: IntCounterVec,
    pub relists: IntCounter,
    pub pods: IntGauge,
}

impl KubeMetrics {
    pub fn register(registry: &Registry) -> Self {
        let events = IntCounterVec::new(
            Opts::new(
                "agent_kubernetes_watch_events_total",
                "Pod watch events received, by type.",
            ),
            &["type"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "agent_kubernetes_api_errors_total",
                "Failed pod list or watch requests, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let relists = IntCounter::new(
            "agent_kubernetes_relists_total",
            "Pod lists repeated because the watch's version expired (410 Gone).",
        )
        .expect("valid metric");
        let pods = IntGauge::new(
            "agent_kubernetes_pods",
            "Pods of this node known to the agent.",
        )
        .expect("valid metric");
        for c in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(relists.clone()),
            Box::new(pods.clone()),
        ] {
            let _ = registry.register(c);
        }
        Self {
            events,
            errors,
            relists,
            pods,
        }
    }
}

/// The `k8s.*` resource attributes of a container of a pod.
pub fn attributes(cp: &ContainerPod) -> Vec<KeyValue> {
    let pod = &cp.pod;
    let mut out = vec![
        KeyValue::new("k8s.pod.name", pod.name.clone()),
        KeyValue::new("k8s.pod.uid", pod.uid.clone()),
        KeyValue::new("k8s.namespace.name", pod.namespace.clone()),
        KeyValue::new("k8s.container.name", cp.container.clone()),
    ];
    if !pod.node_name.is_empty() {
        out.push(KeyValue::new("k8s.node.name", pod.node_name.clone()));
    }
    let w = &pod.workload;
    for (key, value) in [
        ("k8s.replicaset.name", &w.replicaset),
        ("k8s.deployment.name", &w.deployment),
        ("k8s.daemonset.name", &w.daemonset),
        ("k8s.statefulset.name", &w.statefulset),
        ("k8s.job.name", &w.job),
        ("k8s.cronjob.name", &w.cronjob),
    ] {
        if let Some(v) = value {
            out.push(KeyValue::new(key, v.clone()));
        }
    }
    out
}
