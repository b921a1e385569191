//! Selection: which processes and connections are traced.
//!
//! The user lists what to `include` and what to `exclude` (ports,
//! executable globs, cgroup globs, container ids, Kubernetes namespaces and
//! pod labels). A connection is traced when it matches every non-empty
//! include list (any entry of each) and no exclude entry: exclusions win.
//!
//! Ports are decided by the kernel itself, per connection, before any
//! record ([`crate::bpf::select::KernelSelection`]). Everything else is a
//! property of the process, decided here once per process — for every
//! process at start, then on each new process's first description — and an
//! excluded process is written into the kernel's `PROC_EXCLUDED` set, so
//! its syscalls stop at the top of the programs.

pub mod gate;
pub mod glob;

use std::collections::HashMap;

use crate::{
    config::{SelectionConfig, Selectors},
    kube::PodMeta,
    resource::ProcessInfo,
};

/// The decision about one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Selected,
    Excluded,
    /// A rule needs Kubernetes metadata that is not known yet (pod not yet
    /// seen by the watch): its connections are not traced for now, and the
    /// process is decided again at its next connection.
    Pending,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Selected => "selected",
            Verdict::Excluded => "excluded",
            Verdict::Pending => "pending",
        }
    }
}

/// What selection looks at in a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessFacts<'a> {
    pub executable_name: &'a str,
    pub executable_path: Option<&'a str>,
    pub cgroup_path: Option<&'a str>,
    pub container_id: Option<&'a str>,
    /// The process's pod, when known.
    pub pod: Option<&'a PodMeta>,
    /// Whether the pod watch has listed the node's pods at least once
    /// (informational: an unknown container is undecided either way).
    pub pods_synced: bool,
}

impl<'a> ProcessFacts<'a> {
    pub fn of(info: &'a ProcessInfo, pod: Option<&'a PodMeta>, pods_synced: bool) -> Self {
        Self {
            executable_name: &info.executable_name,
            executable_path: info.executable_path.as_deref(),
            cgroup_path: info.cgroup_path.as_deref(),
            container_id: info.container_id.as_deref(),
            pod,
            pods_synced,
        }
    }
}

/// How one category of rules relates to a process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    /// Needs pod metadata not known yet.
    Unknown,
}

/// The process rules, compiled, and the verdicts made so far.
#[derive(Debug)]
pub struct Selection {
    cfg: SelectionConfig,
    needs_pods: bool,
    verdicts: HashMap<u32, Verdict>,
    max_verdicts: usize,
}

impl Selection {
    /// `None` when no rule is about processes (ports are the kernel's).
    pub fn new(cfg: &SelectionConfig, max_processes: usize) -> Option<Self> {
        cfg.by_process().then(|| Self {
            cfg: cfg.clone(),
            needs_pods: cfg.needs_kubernetes(),
            verdicts: HashMap::new(),
            max_verdicts: max_processes.max(1024) * 4,
        })
    }

    /// Decides a process from its facts (no caching).
    pub fn decide(&self, f: &ProcessFacts<'_>) -> Verdict {
        let exclude = &self.cfg.exclude;
        let excluded = [
            executables(exclude, f),
            cgroups(exclude, f),
            containers(exclude, f),
            namespaces(exclude, f),
            labels(exclude, f),
        ];
        if excluded.contains(&Match::Yes) {
            return Verdict::Excluded;
        }
        let include = &self.cfg.include;
        let mut pending = excluded.contains(&Match::Unknown);
        for (empty, m) in [
            (include.executables.is_empty(), executables(include, f)),
            (include.cgroups.is_empty(), cgroups(include, f)),
            (include.containers.is_empty(), containers(include, f)),
            (include.namespaces.is_empty(), namespaces(include, f)),
            (include.pod_labels.is_empty(), labels(include, f)),
        ] {
            if empty {
                continue;
            }
            match m {
                Match::No => return Verdict::Excluded,
                Match::Unknown => pending = true,
                Match::Yes => {}
            }
        }
        if pending {
            Verdict::Pending
        } else {
            Verdict::Selected
        }
    }

    /// The cached verdict of `tgid`.
    pub fn cached(&self, tgid: u32) -> Option<Verdict> {
        self.verdicts.get(&tgid).copied()
    }

    /// Remembers a (final) verdict; pending ones are not remembered.
    pub fn remember(&mut self, tgid: u32, verdict: Verdict) {
        if verdict == Verdict::Pending {
            self.verdicts.remove(&tgid);
            return;
        }
        if self.verdicts.len() >= self.max_verdicts && !self.verdicts.contains_key(&tgid) {
            // Exits normally keep this small; if they were missed, start
            // over (processes are decided again on their next connection).
            self.verdicts.clear();
        }
        self.verdicts.insert(tgid, verdict);
    }

    pub fn forget(&mut self, tgid: u32) {
        self.verdicts.remove(&tgid);
    }

    /// Whether a rule needs pod metadata.
    pub fn needs_pods(&self) -> bool {
        self.needs_pods
    }
}

fn any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob::matches(p, text))
}

fn yes(b: bool) -> Match {
    if b { Match::Yes } else { Match::No }
}

fn executables(s: &Selectors, f: &ProcessFacts<'_>) -> Match {
    yes(s.executables.iter().any(|p| {
        if p.contains('/') {
            f.executable_path.is_some_and(|path| glob::matches(p, path))
        } else {
            glob::matches(p, f.executable_name)
        }
    }))
}

fn cgroups(s: &Selectors, f: &ProcessFacts<'_>) -> Match {
    yes(f.cgroup_path.is_some_and(|c| any(&s.cgroups, c)))
}

fn containers(s: &Selectors, f: &ProcessFacts<'_>) -> Match {
    yes(f.container_id.is_some_and(|id| {
        s.containers.iter().any(|c| {
            let c = c.strip_prefix("containerd://").unwrap_or(c);
            id.starts_with(c)
        })
    }))
}

/// Pod rules: a process outside any container has no pod (no match); one
/// in a container no known pod lists is undecided (the watch has not
/// listed the node's pods yet, or the kubelet has not reported the
/// container's id yet) and decided again at its next connection.
fn pod_rule(f: &ProcessFacts<'_>, rule: impl Fn(&PodMeta) -> bool) -> Match {
    match (f.pod, f.container_id) {
        (Some(pod), _) => yes(rule(pod)),
        (None, None) => Match::No,
        (None, Some(_)) => Match::Unknown,
    }
}

fn namespaces(s: &Selectors, f: &ProcessFacts<'_>) -> Match {
    if s.namespaces.is_empty() {
        return Match::No;
    }
    pod_rule(f, |pod| any(&s.namespaces, &pod.namespace))
}

fn labels(s: &Selectors, f: &ProcessFacts<'_>) -> Match {
    if s.pod_labels.is_empty() {
        return Match::No;
    }
    pod_rule(f, |pod| {
        s.pod_labels.iter().any(|rule| match rule.split_once('=') {
            Some((k, v)) => pod
                .labels
                .get(k.trim())
                .is_some_and(|have| glob::matches(v.trim(), have)),
            None => pod.labels.contains_key(rule.trim()),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PortRange;

    const ID: &str = "3f4b6c1e2d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";

    fn sel(include: Selectors, exclude: Selectors) -> Selection {
        Selection::new(&SelectionConfig { include, exclude }, 16).expect("process rules")
    }

    fn facts<'a>(name: &'a str, path: &'a str, cgroup: &'a str) -> ProcessFacts<'a> {
        ProcessFacts {
            executable_name: name,
            executable_path: Some(path),
            cgroup_path: Some(cgroup),
            container_id: None,
            pod: None,
            pods_synced: true,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn ports_only_is_not_a_process_selection() {
        let cfg = SelectionConfig {
            include: Selectors {
                ports: vec![PortRange { from: 80, to: 80 }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(Selection::new(&cfg, 16).is_none());
    }

    #[test]
    fn include_and_exclude_executables() {
        let s = sel(
            Selectors {
                executables: strings(&["nginx", "/usr/bin/python3*"]),
                ..Default::default()
            },
            Selectors {
                executables: strings(&["*debug*"]),
                ..Default::default()
            },
        );
        let v = |n, p| s.decide(&facts(n, p, "/"));
        assert_eq!(v("nginx", "/usr/sbin/nginx"), Verdict::Selected);
        assert_eq!(v("python3.11", "/usr/bin/python3.11"), Verdict::Selected);
        assert_eq!(v("python3.11", "/opt/py/bin/python3.11"), Verdict::Excluded);
        assert_eq!(v("curl", "/usr/bin/curl"), Verdict::Excluded);
        assert_eq!(
            v("nginx-debug", "/usr/sbin/nginx-debug"),
            Verdict::Excluded,
            "not included"
        );
        let s = sel(
            Selectors::default(),
            Selectors {
                executables: strings(&["nginx"]),
                ..Default::default()
            },
        );
        assert_eq!(s.decide(&facts("nginx", "/x", "/")), Verdict::Excluded);
        assert_eq!(s.decide(&facts("curl", "/x", "/")), Verdict::Selected);
    }

    #[test]
    fn categories_combine_with_and_exclusions_win() {
        let s = sel(
            Selectors {
                executables: strings(&["python*"]),
                cgroups: strings(&["/system.slice/*"]),
                ..Default::default()
            },
            Selectors {
                cgroups: strings(&["*/noisy.service"]),
                ..Default::default()
            },
        );
        let v = |n, c| s.decide(&facts(n, "/usr/bin/x", c));
        assert_eq!(v("python3", "/system.slice/app.service"), Verdict::Selected);
        assert_eq!(
            v("python3", "/user.slice/session-1.scope"),
            Verdict::Excluded
        );
        assert_eq!(v("nginx", "/system.slice/app.service"), Verdict::Excluded);
        assert_eq!(
            v("python3", "/system.slice/noisy.service"),
            Verdict::Excluded
        );
    }

    #[test]
    fn containers_and_pods() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "checkout".to_string());
        let pod = PodMeta {
            name: "checkout-7d9f-abcde".into(),
            namespace: "shop".into(),
            labels,
            ..PodMeta::default()
        };
        let s = sel(
            Selectors {
                namespaces: strings(&["shop", "pay-*"]),
                pod_labels: strings(&["app=check*"]),
                ..Default::default()
            },
            Selectors {
                containers: strings(&["deadbeefdead"]),
                ..Default::default()
            },
        );
        let mut f = facts("java", "/usr/bin/java", "/kubepods/x");
        f.container_id = Some(ID);
        f.pod = Some(&pod);
        assert_eq!(s.decide(&f), Verdict::Selected);
        f.pod = None;
        f.pods_synced = false;
        assert_eq!(s.decide(&f), Verdict::Pending, "pod not known yet");
        f.pods_synced = true;
        assert_eq!(
            s.decide(&f),
            Verdict::Pending,
            "a container no pod lists (yet)"
        );
        f.container_id = None;
        f.pods_synced = false;
        assert_eq!(s.decide(&f), Verdict::Excluded, "not in a container");

        let s = sel(
            Selectors::default(),
            Selectors {
                containers: strings(&[&ID[..12]]),
                ..Default::default()
            },
        );
        let mut f = facts("java", "/usr/bin/java", "/kubepods/x");
        f.container_id = Some(ID);
        assert_eq!(s.decide(&f), Verdict::Excluded, "id prefix");
        f.container_id = None;
        assert_eq!(s.decide(&f), Verdict::Selected);

        let s = sel(
            Selectors::default(),
            Selectors {
                pod_labels: strings(&["tier"]),
                ..Default::default()
            },
        );
        let mut tiered = pod.clone();
        tiered.labels.insert("tier".into(), "web".into());
        let mut f = facts("java", "/usr/bin/java", "/kubepods/x");
        f.container_id = Some(ID);
        f.pod = Some(&tiered);
        assert_eq!(s.decide(&f), Verdict::Excluded, "label present");
        f.pod = Some(&pod);
        assert_eq!(s.decide(&f), Verdict::Selected);
    }

    #[test]
    fn verdict_cache_is_bounded() {
        let mut s = sel(
            Selectors {
                executables: strings(&["x"]),
                ..Default::default()
            },
            Selectors::default(),
        );
        for pid in 0..100_000 {
            s.remember(pid, Verdict::Selected);
        }
        assert!(s.verdicts.len() <= s.max_verdicts);
        s.remember(7, Verdict::Pending);
        assert_eq!(s.cached(7), None);
    }
}
