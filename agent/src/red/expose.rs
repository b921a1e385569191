//! The RED series and the service graph as Prometheus text (`/metrics`,
//! through the node metrics' writer) and as OTLP metrics (cumulative
//! histograms, one resource per process, through the node metrics' OTLP
//! export).

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    metrics::v1::{
        AggregationTemporality, Histogram as PbHistogram, HistogramDataPoint, Metric as PbMetric,
        NumberDataPoint, Sum, metric, number_data_point,
    },
};

use super::{
    Metric, RedShared,
    graph::EdgeEntry,
    histogram::{Bounds, Histogram, Snapshot},
    labels::{Key, Label, LabelValue},
};
use crate::{
    node::{
        expo::{Exposition, Kind, write_float},
        otel::{kv, kv_int},
        scrape::ExtraFamilies,
    },
    resource::ProcessResource,
};

/// `le` values of a histogram's buckets.
fn le_values(bounds: &Bounds) -> Vec<String> {
    let mut v: Vec<String> = bounds
        .seconds
        .iter()
        .map(|b| {
            let mut s = String::new();
            write_float(&mut s, *b);
            s
        })
        .collect();
    v.push("+Inf".to_string());
    v
}

/// Writes `_bucket`, `_sum` and `_count` of one histogram.
fn write_histogram(
    out: &mut Exposition,
    name: &str,
    labels: &[(&str, String)],
    les: &[String],
    snap: &Snapshot,
) {
    let bucket = format!("{name}_bucket");
    let mut with_le: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    with_le.push(("le", ""));
    let mut cumulative = 0;
    for (le, n) in les.iter().zip(&snap.buckets) {
        cumulative += n;
        if let Some(last) = with_le.last_mut() {
            *last = ("le", le.as_str());
        }
        out.sample_named(&bucket, &with_le, cumulative as f64);
    }
    with_le.pop();
    out.sample_named(&format!("{name}_sum"), &with_le, snap.sum_seconds);
    out.sample_named(&format!("{name}_count"), &with_le, snap.count as f64);
}

fn prom_value(v: &LabelValue) -> String {
    v.to_string()
}

impl ExtraFamilies for RedShared {
    fn prometheus(&self, out: &mut Exposition) {
        self.with_series(|series| {
            for m in Metric::ALL {
                let les = le_values(self.bounds(m));
                let mut first = true;
                for s in series.iter().filter(|s| s.metric == m) {
                    if first {
                        out.family(m.prom_name(), m.description(), Kind::Histogram);
                        first = false;
                    }
                    let mut labels: Vec<(&str, String)> = s
                        .process
                        .prom_labels
                        .iter()
                        .map(|(k, v)| (*k, v.clone()))
                        .collect();
                    labels.extend(s.labels.iter().map(|l| (l.key.prom, prom_value(&l.value))));
                    write_histogram(out, m.prom_name(), &labels, &les, &s.hist.snapshot());
                }
            }
        });
        self.graph_prometheus(out);
        out.family(
            "agent_red_measurements_total",
            "Spans measured in the RED duration histograms (before sampling), by metric.",
            Kind::Counter,
        );
        for m in Metric::ALL {
            out.sample(
                &[("metric", m.short())],
                self.stats.measured[m as usize].get() as f64,
            );
        }
        out.family(
            "agent_red_series_overflow_total",
            "Measurements recorded in an overflow series (otel_metric_overflow=\"true\") \
             because the metric had its maximum of series, by metric.",
            Kind::Counter,
        );
        for m in Metric::ALL {
            out.sample(
                &[("metric", m.short())],
                self.stats.series_overflow[m as usize].get() as f64,
            );
        }
        out.family(
            "agent_http_route_overflow_total",
            "HTTP server requests reported with http.route=\"/{overflow}\" because their \
             service had its maximum of route templates.",
            Kind::Counter,
        );
        out.value(self.stats.route_overflow.get() as f64);
        out.family(
            "agent_service_graph_overflow_total",
            "Service graph measurements recorded in the overflow edge (too many edges).",
            Kind::Counter,
        );
        out.value(self.graph.overflowed.get() as f64);
    }
}

fn edge_labels(e: &EdgeEntry) -> Vec<(&'static str, String)> {
    if e.overflow {
        return vec![(Key::OVERFLOW.prom, "true".to_string())];
    }
    let mut l = vec![
        ("client", e.client.to_string()),
        ("server", e.server.to_string()),
    ];
    if let Some(t) = e.connection_type {
        l.push(("connection_type", t.to_string()));
    }
    l
}

impl RedShared {
    fn graph_prometheus(&self, out: &mut Exposition) {
        let edges = self.graph.edges.lock().unwrap_or_else(|p| p.into_inner());
        if edges.is_empty() {
            return;
        }
        let labelled: Vec<(Vec<(&str, String)>, &EdgeEntry)> =
            edges.iter().map(|e| (edge_labels(e), e)).collect();
        out.family(
            "traces_service_graph_request_total",
            "Requests between two services (service graph).",
            Kind::Counter,
        );
        for (l, e) in &labelled {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.sample(&l, e.edge.total.get() as f64);
        }
        out.family(
            "traces_service_graph_request_failed_total",
            "Failed requests between two services (service graph).",
            Kind::Counter,
        );
        for (l, e) in &labelled {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.sample(&l, e.edge.failed.get() as f64);
        }
        let les = le_values(&self.graph.bounds);
        for (name, help, pick) in [
            (
                "traces_service_graph_request_server_seconds",
                "Duration of requests between two services, as the server saw them.",
                (|e: &EdgeEntry| &e.edge.server_seconds) as fn(&EdgeEntry) -> &Histogram,
            ),
            (
                "traces_service_graph_request_client_seconds",
                "Duration of requests between two services, as the client saw them.",
                |e: &EdgeEntry| &e.edge.client_seconds,
            ),
        ] {
            out.family(name, help, Kind::Histogram);
            for (l, e) in &labelled {
                write_histogram(out, name, l, &les, &pick(e).snapshot());
            }
        }
    }

    /// The duration histograms per process, as OTLP metrics (cumulative).
    pub fn otlp(&self, now_unix_ns: u64) -> Vec<(Arc<ProcessResource>, Vec<PbMetric>)> {
        self.with_series(|series| {
            let mut out: Vec<(Arc<ProcessResource>, Vec<PbMetric>)> = Vec::new();
            let mut index: std::collections::HashMap<u64, usize> = Default::default();
            for s in series {
                let key = s.process.resource.key;
                let i = *index.entry(key).or_insert_with(|| {
                    out.push((Arc::clone(&s.process.resource), Vec::new()));
                    out.len() - 1
                });
                let metrics = &mut out[i].1;
                let m = match metrics
                    .iter_mut()
                    .position(|m| m.name == s.metric.otel_name())
                {
                    Some(j) => &mut metrics[j],
                    None => {
                        metrics.push(histogram_metric(
                            s.metric.otel_name(),
                            s.metric.description(),
                        ));
                        metrics.last_mut().expect("pushed")
                    }
                };
                let attributes = s.labels.iter().map(otlp_attr).collect();
                push_point(m, attributes, &s.hist, self.bounds(s.metric), now_unix_ns);
            }
            out
        })
    }

    /// The service graph as OTLP metrics (the host's resource).
    pub fn graph_otlp(&self, now_unix_ns: u64) -> Vec<PbMetric> {
        let edges = self.graph.edges.lock().unwrap_or_else(|p| p.into_inner());
        if edges.is_empty() {
            return Vec::new();
        }
        let attrs = |e: &EdgeEntry| -> Vec<KeyValue> {
            if e.overflow {
                return vec![KeyValue {
                    key: Key::OVERFLOW.otel.to_string(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(
                                true,
                            ),
                        ),
                    }),
                    key_strindex: 0,
                }];
            }
            let mut v = vec![
                kv("client", e.client.to_string()),
                kv("server", e.server.to_string()),
            ];
            if let Some(t) = e.connection_type {
                v.push(kv("connection_type", t));
            }
            v
        };
        let start = edges
            .iter()
            .map(|e| e.edge.client_seconds.start_unix_ns)
            .min()
            .unwrap_or(now_unix_ns);
        let sum = |name: &str, description: &str, value: &dyn Fn(&EdgeEntry) -> u64| PbMetric {
            name: name.to_string(),
            description: description.to_string(),
            unit: "1".to_string(),
            metadata: Vec::new(),
            data: Some(metric::Data::Sum(Sum {
                data_points: edges
                    .iter()
                    .map(|e| NumberDataPoint {
                        attributes: attrs(e),
                        start_time_unix_nano: start,
                        time_unix_nano: now_unix_ns,
                        exemplars: Vec::new(),
                        flags: 0,
                        value: Some(number_data_point::Value::AsInt(
                            i64::try_from(value(e)).unwrap_or(i64::MAX),
                        )),
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
        };
        let mut out = vec![
            sum(
                "traces_service_graph_request_total",
                "Requests between two services (service graph).",
                &|e| e.edge.total.get(),
            ),
            sum(
                "traces_service_graph_request_failed_total",
                "Failed requests between two services (service graph).",
                &|e| e.edge.failed.get(),
            ),
        ];
        for (name, pick) in [
            (
                "traces_service_graph_request_server_seconds",
                (|e: &EdgeEntry| &e.edge.server_seconds) as fn(&EdgeEntry) -> &Histogram,
            ),
            (
                "traces_service_graph_request_client_seconds",
                |e: &EdgeEntry| &e.edge.client_seconds,
            ),
        ] {
            let mut m = histogram_metric(name, "Duration of requests between two services.");
            for e in edges.iter() {
                push_point(&mut m, attrs(e), pick(e), &self.graph.bounds, now_unix_ns);
            }
            out.push(m);
        }
        out
    }
}

fn otlp_attr(l: &Label) -> KeyValue {
    match &l.value {
        LabelValue::Int(i) => kv_int(l.key.otel, *i),
        LabelValue::Bool(b) => KeyValue {
            key: l.key.otel.to_string(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(*b),
                ),
            }),
            key_strindex: 0,
        },
        v => kv(l.key.otel, v.to_string()),
    }
}

fn histogram_metric(name: &str, description: &str) -> PbMetric {
    PbMetric {
        name: name.to_string(),
        description: description.to_string(),
        unit: "s".to_string(),
        metadata: Vec::new(),
        data: Some(metric::Data::Histogram(PbHistogram {
            data_points: Vec::new(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
    }
}

fn push_point(
    m: &mut PbMetric,
    attributes: Vec<KeyValue>,
    hist: &Histogram,
    bounds: &Bounds,
    now_unix_ns: u64,
) {
    let snap = hist.snapshot();
    if let Some(metric::Data::Histogram(h)) = &mut m.data {
        h.data_points.push(HistogramDataPoint {
            attributes,
            start_time_unix_nano: hist.start_unix_ns,
            time_unix_nano: now_unix_ns,
            count: snap.count,
            sum: Some(snap.sum_seconds),
            bucket_counts: snap.buckets,
            explicit_bounds: bounds.seconds.to_vec(),
            exemplars: Vec::new(),
            flags: 0,
            min: None,
            max: None,
        });
    }
}
