//! Checks of connected traces: spans grouped by trace id, exact parent
//! chains, and the RED histograms over OTLP.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{KeyValue, any_value},
    metrics::v1::metric,
};

use crate::otlp::{ReceivedSpan, SpanKind};

/// Spans by trace id.
pub fn by_trace(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut m: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for s in spans {
        m.entry(s.trace_id.clone()).or_default().push(s.clone());
    }
    m
}

/// One hop of an expected chain: the span's kind and process.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub kind: SpanKind,
    /// Pids the span may come from (nginx workers: several).
    pub pids: &'a [u32],
    pub what: &'a str,
}

/// Checks that `trace` is exactly the chain `hops` (root first): one span
/// per hop, each the child of the previous one, the first a root (or the
/// child of `root_parent`). Returns the problems.
pub fn check_chain(trace: &[ReceivedSpan], hops: &[Hop<'_>], root_parent: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let desc = || {
        trace
            .iter()
            .map(|s| {
                format!(
                    "    {:?} {} pid {:?} span {} parent {:?}",
                    s.kind,
                    s.name,
                    s.pid(),
                    s.span_id,
                    s.parent_span_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if trace.len() != hops.len() {
        problems.push(format!(
            "trace has {} spans, want {} ({:?}):\n{}",
            trace.len(),
            hops.len(),
            hops.iter().map(|h| h.what).collect::<Vec<_>>(),
            desc()
        ));
        return problems;
    }
    let mut parent = root_parent.to_string();
    for hop in hops {
        let found: Vec<&ReceivedSpan> = trace
            .iter()
            .filter(|s| s.kind == hop.kind && s.pid().is_some_and(|p| hop.pids.contains(&p)))
            .collect();
        let [s] = found.as_slice() else {
            problems.push(format!(
                "{} spans for {} (want 1):\n{}",
                found.len(),
                hop.what,
                desc()
            ));
            return problems;
        };
        if s.parent_span_id != parent {
            problems.push(format!(
                "{}: parent {:?}, want {:?}:\n{}",
                hop.what,
                s.parent_span_id,
                parent,
                desc()
            ));
        }
        parent = s.span_id.clone();
    }
    problems
}

/// Sum of the Prometheus series `name` of the processes `pids` (by their
/// `service_instance_id`, `<host>:<pid>`) that carry every label of
/// `labels`.
pub fn prom_sum_for(text: &str, name: &str, pids: &[u32], labels: &[(&str, &str)]) -> f64 {
    let host = crate::procs::hostname();
    let instances: Vec<String> = pids.iter().map(|p| format!("{host}:{p}")).collect();
    crate::prom::parse(text)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            s.labels
                .get("service_instance_id")
                .is_some_and(|i| instances.contains(i))
        })
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The count of the OTLP histogram `name` over the data points whose
/// resource has `process.pid` in `pids` and whose attributes include
/// `labels` (string values), in the LAST metrics request that has any
/// such point (the values are cumulative).
pub fn otlp_histogram_count(
    requests: &[ExportMetricsServiceRequest],
    name: &str,
    pids: &[u32],
    labels: &[(&str, &str)],
) -> Option<u64> {
    for req in requests.iter().rev() {
        let mut total = None;
        for rm in &req.resource_metrics {
            let pid = rm
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "process.pid"))
                .and_then(|v| match v {
                    any_value::Value::IntValue(i) => u32::try_from(*i).ok(),
                    _ => None,
                });
            if !pid.is_some_and(|p| pids.contains(&p)) {
                continue;
            }
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if m.name != name {
                    continue;
                }
                let Some(metric::Data::Histogram(h)) = &m.data else {
                    continue;
                };
                for p in &h.data_points {
                    let ok = labels.iter().all(|(k, v)| {
                        matches!(attr(&p.attributes, k), Some(any_value::Value::StringValue(s)) if s == v)
                    });
                    if ok {
                        *total.get_or_insert(0) += p.count;
                    }
                }
            }
        }
        if total.is_some() {
            return total;
        }
    }
    None
}
