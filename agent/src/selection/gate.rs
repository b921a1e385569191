//! The pipeline's side of selection: decide a process when the kernel
//! describes it (or, failing that, at its first connection), remember the
//! verdict, and tell the kernel about excluded processes.

use prometheus::{IntCounterVec, Opts, Registry};

use super::{ProcessFacts, Selection, Verdict};
use crate::{
    bpf::select::ProcFilter,
    kube::PodStore,
    resource::{HostPaths, ProcessInfo, ProcessResource},
};

pub struct Gate {
    rules: Selection,
    filter: Option<ProcFilter>,
    decisions: IntCounterVec,
}

impl Gate {
    pub fn new(rules: Selection, filter: Option<ProcFilter>, registry: &Registry) -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(
                "agent_selection_decisions_total",
                "Processes decided by the selection, by verdict (selected, excluded, pending).",
            ),
            &["verdict"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(decisions.clone()));
        Self {
            rules,
            filter,
            decisions,
        }
    }

    /// Decides `tgid` afresh (a new process description).
    pub fn decide(
        &mut self,
        tgid: u32,
        resource: &ProcessResource,
        pods: Option<&PodStore>,
    ) -> Verdict {
        let pod = resource.pod.as_ref().map(|cp| cp.pod.as_ref());
        let synced = pods.is_none_or(PodStore::synced);
        let verdict = self
            .rules
            .decide(&ProcessFacts::of(&resource.info, pod, synced));
        self.apply(tgid, verdict);
        verdict
    }

    /// The remembered verdict of `tgid`, else a fresh one.
    pub fn verdict(
        &mut self,
        tgid: u32,
        resource: &ProcessResource,
        pods: Option<&PodStore>,
    ) -> Verdict {
        match self.rules.cached(tgid) {
            Some(v) => v,
            None => self.decide(tgid, resource, pods),
        }
    }

    /// Verdicts made before the programs ran (see [`initial`]).
    pub fn preload(&mut self, verdicts: &[(u32, Verdict)]) {
        for &(tgid, v) in verdicts {
            self.rules.remember(tgid, v);
        }
    }

    pub fn forget(&mut self, tgid: u32) {
        self.rules.forget(tgid);
    }

    fn apply(&mut self, tgid: u32, verdict: Verdict) {
        self.decisions.with_label_values(&[verdict.name()]).inc();
        self.rules.remember(tgid, verdict);
        if let Some(f) = self.filter.as_mut() {
            match verdict {
                Verdict::Excluded => f.exclude(tgid),
                Verdict::Selected => f.include(tgid),
                Verdict::Pending => {}
            }
        }
    }
}

/// Decides every process running now, before the programs are attached,
/// so excluded ones never cost a record. Pending ones (pod not known yet)
/// are left for their first connection.
pub fn initial(
    rules: &Selection,
    paths: &HostPaths,
    pods: Option<&PodStore>,
) -> Vec<(u32, Verdict)> {
    let Ok(dir) = std::fs::read_dir(&paths.proc) else {
        return Vec::new();
    };
    let own = std::process::id();
    let synced = pods.is_none_or(PodStore::synced);
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(info) = ProcessInfo::read(paths, pid) else {
            continue;
        };
        let cp = match (pods, info.container_id.as_deref()) {
            (Some(store), Some(id)) => store.by_container(id),
            _ => None,
        };
        let pod = cp.as_ref().map(|c| c.pod.as_ref());
        let v = rules.decide(&ProcessFacts::of(&info, pod, synced));
        if v != Verdict::Pending {
            out.push((pid, v));
        }
    }
    out
}
