//! OTLP/protobuf encoding of a batch of [`SpanRecord`]s straight from the
//! agent's records: one `ExportTraceServiceRequest` with one
//! `ResourceSpans` per process, no intermediate `SpanData` or
//! `opentelemetry_proto` structs (which cost a `String` per attribute and a
//! regrouping pass per export). Field numbers follow
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`;
//! the unit tests decode the output with the `opentelemetry-proto` types
//! and compare it byte for byte with prost's own encoding.
//!
//! Every length-delimited field needs its length before its bytes: each is
//! written in one pass, its length put in front afterwards ([`write_msg`]).

use std::{borrow::Borrow, collections::HashMap};

use opentelemetry::{Array, KeyValue, Value};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::span::{SpanKind, SpanRecord, SpanStatus};

// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS: u32 = 1;
// ResourceSpans
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
// Resource
const RESOURCE_ATTRIBUTES: u32 = 1;
// ScopeSpans
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
// InstrumentationScope
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
// Span
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;
// Status
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
// KeyValue
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
// AnyValue
const ANY_STRING: u32 = 1;
const ANY_BOOL: u32 = 2;
const ANY_INT: u32 = 3;
const ANY_DOUBLE: u32 = 4;
const ANY_ARRAY: u32 = 5;
// ArrayValue
const ARRAY_VALUES: u32 = 1;

/// `Span.SpanKind` values.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the is-remote bit below is meaningful / the parent is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// Typical encoded size of one span (an HTTP or database span with its
/// attributes is 300–700 bytes), to guess a group's length bytes.
const SPAN_BYTES_GUESS: usize = 500;

/// The instrumentation scope every span is reported under.
pub struct Scope {
    pub name: &'static str,
    pub version: &'static str,
}

/// Encoded `Resource` messages by resource key, so a process's attributes
/// are encoded once, not once per export. Bounded: cleared when full.
pub struct ResourceBytes {
    by_key: HashMap<u64, Vec<u8>>,
    max: usize,
}

impl ResourceBytes {
    pub fn new(max: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            max: max.max(1),
        }
    }

    fn get(&mut self, key: u64, attributes: impl FnOnce() -> Vec<KeyValue>) -> &[u8] {
        if self.by_key.len() >= self.max && !self.by_key.contains_key(&key) {
            self.by_key.clear();
        }
        self.by_key.entry(key).or_insert_with(|| {
            let attrs = attributes();
            let mut out = Vec::new();
            for kv in &attrs {
                write_msg(&mut out, RESOURCE_ATTRIBUTES, 1, |b| write_kv(b, kv));
            }
            out
        })
    }
}

/// Encodes `spans` as one `ExportTraceServiceRequest` into `out` (cleared
/// first). Spans of one process share a `ResourceSpans`, in order of first
/// appearance.
pub fn encode_request<S: Borrow<SpanRecord>>(
    spans: &[S],
    scope: &Scope,
    resources: &mut ResourceBytes,
    out: &mut Vec<u8>,
) {
    out.clear();
    // Group by resource, keeping the batch order within a group.
    let mut order: Vec<u64> = Vec::new();
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().map(Borrow::borrow).enumerate() {
        groups
            .entry(s.resource.key)
            .or_insert_with(|| {
                order.push(s.resource.key);
                Vec::new()
            })
            .push(i);
    }
    for key in order {
        let members = &groups[&key];
        let first: &SpanRecord = spans[members[0]].borrow();
        let resource = resources.get(key, || {
            first
                .resource
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect()
        });
        // Room for the two group lengths as the group's size will likely
        // need them, so the group's bytes are rarely moved once written
        // (a wrong guess costs one move, never a wrong length).
        let reserve = encoded_len_varint((members.len() * SPAN_BYTES_GUESS) as u64);
        write_msg(out, REQUEST_RESOURCE_SPANS, reserve, |out| {
            write_bytes(out, RESOURCE_SPANS_RESOURCE, resource);
            write_msg(out, RESOURCE_SPANS_SCOPE_SPANS, reserve, |out| {
                write_msg(out, SCOPE_SPANS_SCOPE, 1, |b| {
                    write_opt_str(b, SCOPE_NAME, scope.name);
                    write_opt_str(b, SCOPE_VERSION, scope.version);
                });
                for &i in members {
                    // Spans are a few hundred bytes: 2-byte lengths.
                    write_msg(out, SCOPE_SPANS_SPANS, 2, |b| {
                        write_span(b, spans[i].borrow())
                    });
                }
            });
        });
    }
}

fn kind_value(kind: SpanKind) -> u64 {
    match kind {
        SpanKind::Server => KIND_SERVER,
        SpanKind::Client => KIND_CLIENT,
    }
}

fn flags(s: &SpanRecord) -> u32 {
    let mut f = u32::from(s.trace_flags) | FLAG_HAS_IS_REMOTE;
    if s.parent_is_remote {
        f |= FLAG_IS_REMOTE;
    }
    f
}

fn has_parent(s: &SpanRecord) -> bool {
    s.parent_span_id != [0; 8]
}

fn write_span(b: &mut Vec<u8>, s: &SpanRecord) {
    write_bytes(b, SPAN_TRACE_ID, &s.trace_id);
    write_bytes(b, SPAN_SPAN_ID, &s.span_id);
    if let Some(ts) = s.trace_state.as_deref() {
        write_opt_str(b, SPAN_TRACE_STATE, ts);
    }
    if has_parent(s) {
        write_bytes(b, SPAN_PARENT_SPAN_ID, &s.parent_span_id);
    }
    write_opt_str(b, SPAN_NAME, &s.name);
    encode_key(SPAN_KIND, WireType::Varint, b);
    encode_varint(kind_value(s.kind), b);
    encode_key(SPAN_START, WireType::SixtyFourBit, b);
    b.extend_from_slice(&s.start_unix_ns.to_le_bytes());
    encode_key(SPAN_END, WireType::SixtyFourBit, b);
    b.extend_from_slice(&s.end_unix_ns.max(s.start_unix_ns).to_le_bytes());
    for kv in &s.attributes {
        write_msg(b, SPAN_ATTRIBUTES, 1, |b| write_kv(b, kv));
    }
    write_msg(b, SPAN_STATUS, 1, |b| {
        if let SpanStatus::Error { description } = &s.status {
            write_opt_str(b, STATUS_MESSAGE, description);
            encode_key(STATUS_CODE, WireType::Varint, b);
            encode_varint(STATUS_ERROR, b);
        }
    });
    encode_key(SPAN_FLAGS, WireType::ThirtyTwoBit, b);
    b.extend_from_slice(&flags(s).to_le_bytes());
}

fn write_kv(b: &mut Vec<u8>, kv: &KeyValue) {
    write_opt_str(b, KV_KEY, kv.key.as_str());
    write_msg(b, KV_VALUE, 1, |b| write_any(b, &kv.value));
}

fn write_any(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(x) => {
            encode_key(ANY_BOOL, WireType::Varint, b);
            encode_varint(u64::from(*x), b);
        }
        Value::I64(i) => {
            encode_key(ANY_INT, WireType::Varint, b);
            encode_varint(*i as u64, b);
        }
        Value::F64(f) => {
            encode_key(ANY_DOUBLE, WireType::SixtyFourBit, b);
            b.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => write_str(b, ANY_STRING, s.as_str()),
        Value::Array(a) => write_msg(b, ANY_ARRAY, 1, |b| write_array(b, a)),
        // Future value kinds: exported as their text.
        other => write_str(b, ANY_STRING, &other.to_string()),
    }
}

/// The elements of an array as `AnyValue`s (small; arrays are rare).
fn array_values(a: &Array) -> Vec<Value> {
    match a {
        Array::Bool(v) => v.iter().map(|x| Value::Bool(*x)).collect(),
        Array::I64(v) => v.iter().map(|x| Value::I64(*x)).collect(),
        Array::F64(v) => v.iter().map(|x| Value::F64(*x)).collect(),
        Array::String(v) => v.iter().map(|x| Value::String(x.clone())).collect(),
        other => vec![Value::String(other.to_string().into())],
    }
}

fn write_array(b: &mut Vec<u8>, a: &Array) {
    for v in array_values(a) {
        write_msg(b, ARRAY_VALUES, 1, |b| write_any(b, &v));
    }
}

fn write_opt_str(b: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        write_str(b, tag, s);
    }
}

/// Writes a length-delimited field in one pass: the body first, after
/// `reserve` bytes left for its length, then the length (a minimal varint,
/// as prost writes it) in front, moving the body when the length needs
/// more or fewer bytes than reserved. Computing every message's length
/// before writing it (the usual way) walked each attribute twice.
fn write_msg(b: &mut Vec<u8>, tag: u32, reserve: usize, write: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, b);
    let at = b.len();
    b.resize(at + reserve, 0);
    write(b);
    let len = b.len() - at - reserve;
    let need = encoded_len_varint(len as u64);
    if need != reserve {
        if need > reserve {
            b.resize(b.len() + (need - reserve), 0);
        }
        b.copy_within(at + reserve..at + reserve + len, at + need);
        b.truncate(at + need + len);
    }
    let mut v = len as u64;
    for byte in &mut b[at..at + need] {
        *byte = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
    }
    b[at + need - 1] &= 0x7f;
}

fn write_str(b: &mut Vec<u8>, tag: u32, s: &str) {
    write_bytes(b, tag, s.as_bytes());
}

fn write_bytes(b: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, b);
    encode_varint(bytes.len() as u64, b);
    b.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{
            AnyValue, ArrayValue, InstrumentationScope, KeyValue as PKeyValue, any_value,
        },
        resource::v1::Resource as PResource,
        trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan, Status as PStatus},
    };
    use prost::Message as _;

    use super::*;
    use crate::{resource::ProcessResource, span::model::Correlation};

    fn resource(name: &str) -> Arc<ProcessResource> {
        Arc::new(ProcessResource::for_tests(vec![
            KeyValue::new("service.name", name.to_string()),
            KeyValue::new("process.pid", 42_i64),
        ]))
    }

    fn span(res: &Arc<ProcessResource>, kind: SpanKind, status: SpanStatus) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [3; 8],
            parent_span_id: if kind == SpanKind::Server {
                [5; 8]
            } else {
                [0; 8]
            },
            parent_is_remote: kind == SpanKind::Server,
            trace_flags: 1,
            trace_state: (kind == SpanKind::Server).then(|| "k=v".to_string()),
            kind,
            name: "GET".into(),
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_001_000_000,
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("negative", -5_i64),
                KeyValue::new("ratio", 0.5_f64),
                KeyValue::new("flag", true),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec!["a".into(), "b".into()])),
                ),
                KeyValue::new("unicode", "é€𝄞".to_string()),
            ],
            status,
            resource: Arc::clone(res),
            correlation: Correlation {
                netns: 0,
                local: ("127.0.0.1".parse().unwrap(), 80),
                remote: ("127.0.0.1".parse().unwrap(), 5000),
                seq: 0,
                seq_is_stream_id: false,
                tid: 1,
                start_ns: 0,
                end_ns: 1_000_000,
            },
            facts: Default::default(),
        }
    }

    fn any(v: &Value) -> AnyValue {
        let value = match v {
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::I64(i) => any_value::Value::IntValue(*i),
            Value::F64(f) => any_value::Value::DoubleValue(*f),
            Value::String(s) => any_value::Value::StringValue(s.as_str().to_string()),
            Value::Array(a) => any_value::Value::ArrayValue(ArrayValue {
                values: array_values(a).iter().map(any).collect(),
            }),
            _ => unreachable!(),
        };
        AnyValue { value: Some(value) }
    }

    fn pkv(kv: &KeyValue) -> PKeyValue {
        PKeyValue {
            key: kv.key.as_str().to_string(),
            value: Some(any(&kv.value)),
            ..Default::default()
        }
    }

    /// The same request built with the opentelemetry-proto types.
    fn expected(spans: &[SpanRecord], scope: &Scope) -> ExportTraceServiceRequest {
        let mut out: Vec<ResourceSpans> = Vec::new();
        let mut keys: Vec<u64> = Vec::new();
        for s in spans {
            let i = match keys.iter().position(|k| *k == s.resource.key) {
                Some(i) => i,
                None => {
                    keys.push(s.resource.key);
                    out.push(ResourceSpans {
                        resource: Some(PResource {
                            attributes: s
                                .resource
                                .resource
                                .iter()
                                .map(|(k, v)| pkv(&KeyValue::new(k.clone(), v.clone())))
                                .collect(),
                            dropped_attributes_count: 0,
                            entity_refs: vec![],
                        }),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: scope.name.into(),
                                version: scope.version.into(),
                                attributes: vec![],
                                dropped_attributes_count: 0,
                            }),
                            spans: vec![],
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    });
                    out.len() - 1
                }
            };
            out[i].scope_spans[0].spans.push(PSpan {
                trace_id: s.trace_id.to_vec(),
                span_id: s.span_id.to_vec(),
                trace_state: s.trace_state.clone().unwrap_or_default(),
                parent_span_id: if has_parent(s) {
                    s.parent_span_id.to_vec()
                } else {
                    vec![]
                },
                flags: flags(s),
                name: s.name.to_string(),
                kind: kind_value(s.kind) as i32,
                start_time_unix_nano: s.start_unix_ns,
                end_time_unix_nano: s.end_unix_ns,
                attributes: s.attributes.iter().map(pkv).collect(),
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
                status: Some(match &s.status {
                    SpanStatus::Unset => PStatus::default(),
                    SpanStatus::Error { description } => PStatus {
                        message: description.clone(),
                        code: STATUS_ERROR as i32,
                    },
                }),
            });
        }
        ExportTraceServiceRequest {
            resource_spans: out,
        }
    }

    #[test]
    fn matches_the_opentelemetry_proto_encoding() {
        let (a, b) = (resource("alpha"), resource("beta"));
        let spans = vec![
            span(&a, SpanKind::Server, SpanStatus::Unset),
            span(
                &b,
                SpanKind::Client,
                SpanStatus::Error {
                    description: "boom".into(),
                },
            ),
            span(
                &a,
                SpanKind::Client,
                SpanStatus::Error {
                    description: String::new(),
                },
            ),
        ];
        let scope = Scope {
            name: "agent",
            version: "1.2.3",
        };
        let mut resources = ResourceBytes::new(16);
        let mut out = Vec::new();
        encode_request(&spans, &scope, &mut resources, &mut out);
        let want = expected(&spans, &scope);
        let decoded = ExportTraceServiceRequest::decode(out.as_slice()).expect("valid protobuf");
        assert_eq!(decoded, want);
        assert_eq!(
            out,
            want.encode_to_vec(),
            "byte-identical to prost's encoding"
        );
        // Cached resources give the same bytes the second time.
        let mut again = Vec::new();
        encode_request(&spans, &scope, &mut resources, &mut again);
        assert_eq!(again, out);
    }

    /// Lengths written after the body: each size class of varint, for
    /// reserves too large (a span of < 128 bytes), right (a 300-byte
    /// attribute needs 2 bytes where 1 was left) and too small (a 20 kB
    /// span, a batch of a few hundred kB).
    #[test]
    fn every_length_size_matches_prost() {
        let a = resource("alpha");
        let mut tiny = span(&a, SpanKind::Client, SpanStatus::Unset);
        tiny.attributes.clear();
        tiny.name = "".into();
        let mut long_attr = span(&a, SpanKind::Server, SpanStatus::Unset);
        long_attr
            .attributes
            .push(KeyValue::new("url.full", "x".repeat(300)));
        let mut huge = span(&a, SpanKind::Client, SpanStatus::Unset);
        huge.attributes
            .push(KeyValue::new("db.query.text", "y".repeat(20_000)));
        let mut spans = vec![tiny, long_attr, huge];
        for _ in 0..4 {
            let more = spans.clone();
            spans.extend(more);
        }
        let scope = Scope {
            name: "agent",
            version: "1",
        };
        for batch in [&spans[..1], &spans[..2], &spans[..3], &spans[..]] {
            let mut out = Vec::new();
            encode_request(batch, &scope, &mut ResourceBytes::new(4), &mut out);
            assert_eq!(out, expected(batch, &scope).encode_to_vec());
        }
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        let mut out = vec![1, 2, 3];
        encode_request(
            &[] as &[SpanRecord],
            &Scope {
                name: "a",
                version: "",
            },
            &mut ResourceBytes::new(1),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn resource_cache_is_bounded() {
        let mut resources = ResourceBytes::new(2);
        let scope = Scope {
            name: "a",
            version: "b",
        };
        let mut out = Vec::new();
        for name in ["a", "b", "c", "d"] {
            let r = resource(name);
            encode_request(
                &[span(&r, SpanKind::Client, SpanStatus::Unset)],
                &scope,
                &mut resources,
                &mut out,
            );
            assert!(resources.by_key.len() <= 2);
        }
    }
}
