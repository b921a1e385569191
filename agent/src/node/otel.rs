//! OpenTelemetry data points with semantic-convention names, built straight
//! as OTLP protobuf messages (opentelemetry-proto): the SDK's metric
//! pipeline carries one resource per provider, while one export holds the
//! host's metrics and those of every traced process, each on its own
//! resource.

use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
    },
};

/// How a metric aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instrument {
    /// Monotonic cumulative sum (a counter).
    Counter,
    /// Non-monotonic cumulative sum (an up-down counter).
    UpDownCounter,
    Gauge,
}

/// A metric's identity: name, unit, description and instrument.
#[derive(Debug)]
pub struct MetricDesc {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub instrument: Instrument,
}

/// A number: OTLP keeps integers and doubles apart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Double(f64),
}

/// Data points of one collection, grouped by metric.
#[derive(Debug, Default)]
pub struct OtelBatch {
    metrics: Vec<(&'static MetricDesc, Vec<NumberDataPoint>)>,
    index: HashMap<&'static str, usize>,
    /// Start of the cumulative counters (boot time for the host's).
    pub start_unix_ns: u64,
    /// When the values were read.
    pub time_unix_ns: u64,
}

impl OtelBatch {
    pub fn new(start_unix_ns: u64, time_unix_ns: u64) -> Self {
        Self {
            start_unix_ns,
            time_unix_ns,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Number of data points.
    pub fn points(&self) -> usize {
        self.metrics.iter().map(|(_, p)| p.len()).sum()
    }

    /// Adds one data point.
    pub fn point(&mut self, desc: &'static MetricDesc, attributes: Vec<KeyValue>, value: Num) {
        let start = match desc.instrument {
            Instrument::Gauge => 0,
            _ => self.start_unix_ns,
        };
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: self.time_unix_ns,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(match value {
                Num::Int(i) => number_data_point::Value::AsInt(i),
                Num::Double(d) => number_data_point::Value::AsDouble(d),
            }),
        };
        let i = *self.index.entry(desc.name).or_insert_with(|| {
            self.metrics.push((desc, Vec::new()));
            self.metrics.len() - 1
        });
        self.metrics[i].1.push(point);
    }

    /// A double point.
    pub fn double(&mut self, desc: &'static MetricDesc, attributes: Vec<KeyValue>, v: f64) {
        self.point(desc, attributes, Num::Double(v));
    }

    /// An integer point (values beyond `i64` saturate).
    pub fn int(&mut self, desc: &'static MetricDesc, attributes: Vec<KeyValue>, v: u64) {
        self.point(
            desc,
            attributes,
            Num::Int(i64::try_from(v).unwrap_or(i64::MAX)),
        );
    }

    /// The OTLP metrics.
    pub fn into_metrics(self) -> Vec<Metric> {
        self.metrics
            .into_iter()
            .map(|(desc, data_points)| Metric {
                name: desc.name.to_string(),
                description: desc.description.to_string(),
                unit: desc.unit.to_string(),
                metadata: Vec::new(),
                data: Some(match desc.instrument {
                    Instrument::Gauge => metric::Data::Gauge(Gauge { data_points }),
                    Instrument::Counter | Instrument::UpDownCounter => metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: desc.instrument == Instrument::Counter,
                    }),
                }),
            })
            .collect()
    }
}

/// A string attribute.
pub fn kv(key: &'static str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// An integer attribute.
pub fn kv_int(key: &'static str, value: i64) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// The OTLP form of an SDK attribute (resources are built with the SDK's
/// types for the spans).
pub fn from_sdk(key: &opentelemetry::Key, value: &opentelemetry::Value) -> KeyValue {
    use opentelemetry::Value as V;
    let v = match value {
        V::Bool(b) => any_value::Value::BoolValue(*b),
        V::I64(i) => any_value::Value::IntValue(*i),
        V::F64(f) => any_value::Value::DoubleValue(*f),
        V::String(s) => any_value::Value::StringValue(s.as_str().to_string()),
        other => any_value::Value::StringValue(other.as_str().into_owned()),
    };
    KeyValue {
        key_strindex: 0,
        key: key.as_str().to_string(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

/// Declares a `static` [`MetricDesc`].
macro_rules! metric_desc {
    ($id:ident, $name:literal, $unit:literal, $instrument:ident, $description:literal) => {
        pub static $id: $crate::node::otel::MetricDesc = $crate::node::otel::MetricDesc {
            name: $name,
            unit: $unit,
            description: $description,
            instrument: $crate::node::otel::Instrument::$instrument,
        };
    };
}
pub(crate) use metric_desc;

#[cfg(test)]
mod tests {
    use super::*;

    metric_desc!(TEST_SUM, "test.sum", "By", Counter, "A test sum.");
    metric_desc!(TEST_GAUGE, "test.gauge", "1", Gauge, "A test gauge.");

    #[test]
    fn groups_points_by_metric() {
        let mut b = OtelBatch::new(10, 20);
        b.int(&TEST_SUM, vec![kv("a", "x")], 1);
        b.double(&TEST_GAUGE, vec![], 0.5);
        b.int(&TEST_SUM, vec![kv("a", "y")], u64::MAX);
        assert_eq!(b.points(), 3);
        let m = b.into_metrics();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "test.sum");
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!("sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 2);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(
            sum.data_points[1].value,
            Some(number_data_point::Value::AsInt(i64::MAX))
        );
        let Some(metric::Data::Gauge(g)) = &m[1].data else {
            panic!("gauge")
        };
        assert_eq!(g.data_points[0].start_time_unix_nano, 0);
    }
}
