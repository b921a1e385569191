//! Labels of the RED series: attribute keys with their Prometheus names,
//! values, and the string interner behind the typed series keys.

use std::{borrow::Cow, fmt, sync::Arc};

use foldhash::HashMap;

/// An attribute key and its Prometheus label name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub otel: &'static str,
    pub prom: &'static str,
}

macro_rules! keys {
    ($($id:ident = $otel:literal, $prom:literal;)*) => {
        impl Key {
            $(pub const $id: Key = Key { otel: $otel, prom: $prom };)*
        }
    };
}

keys! {
    HTTP_METHOD = "http.request.method", "http_request_method";
    HTTP_STATUS = "http.response.status_code", "http_response_status_code";
    HTTP_ROUTE = "http.route", "http_route";
    URL_SCHEME = "url.scheme", "url_scheme";
    NET_PROTOCOL_NAME = "network.protocol.name", "network_protocol_name";
    NET_PROTOCOL_VERSION = "network.protocol.version", "network_protocol_version";
    SERVER_ADDRESS = "server.address", "server_address";
    SERVER_PORT = "server.port", "server_port";
    ERROR_TYPE = "error.type", "error_type";
    RPC_SYSTEM = "rpc.system.name", "rpc_system_name";
    RPC_METHOD = "rpc.method", "rpc_method";
    RPC_STATUS = "rpc.response.status_code", "rpc_response_status_code";
    DB_SYSTEM = "db.system.name", "db_system_name";
    DB_NAMESPACE = "db.namespace", "db_namespace";
    DB_OPERATION = "db.operation.name", "db_operation_name";
    DB_SUMMARY = "db.query.summary", "db_query_summary";
    DB_STATUS = "db.response.status_code", "db_response_status_code";
    OVERFLOW = "otel.metric.overflow", "otel_metric_overflow";
    CLIENT = "client", "client";
    SERVER = "server", "server";
    CONNECTION_TYPE = "connection_type", "connection_type";
}

#[derive(Clone, Debug, PartialEq)]
pub enum LabelValue {
    Str(Arc<str>),
    Static(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelValue::Str(s) => f.write_str(s),
            LabelValue::Static(s) => f.write_str(s),
            LabelValue::Int(i) => write!(f, "{i}"),
            LabelValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub key: Key,
    pub value: LabelValue,
}

impl Label {
    pub fn fixed(key: Key, v: &'static str) -> Self {
        Self {
            key,
            value: LabelValue::Static(Cow::Borrowed(v)),
        }
    }
    pub fn cow(key: Key, v: Cow<'static, str>) -> Self {
        Self {
            key,
            value: LabelValue::Static(v),
        }
    }
    pub fn arc(key: Key, v: Arc<str>) -> Self {
        Self {
            key,
            value: LabelValue::Str(v),
        }
    }
    pub fn int(key: Key, v: i64) -> Self {
        Self {
            key,
            value: LabelValue::Int(v),
        }
    }
    pub fn bool(key: Key, v: bool) -> Self {
        Self {
            key,
            value: LabelValue::Bool(v),
        }
    }
}

/// Id of "no value" in series keys.
pub const NONE: u32 = 0;

/// Strings of the series keys, by id (0 is [`NONE`]). Bounded: past
/// `max` strings, [`Interner::intern`] fails and the caller uses an
/// overflow series.
pub struct Interner {
    ids: HashMap<Arc<str>, u32>,
    max: usize,
}

impl Interner {
    pub fn new(max: usize) -> Self {
        Self {
            ids: HashMap::default(),
            max,
        }
    }

    /// The id of a known string (no allocation).
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The id of `s`, added if new (`None` when full).
    pub fn intern(&mut self, s: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(s) {
            return Some(*id);
        }
        if self.ids.len() >= self.max {
            return None;
        }
        let id = self.ids.len() as u32 + 1;
        self.ids.insert(Arc::from(s), id);
        Some(id)
    }
}

/// 64-bit FNV-1a.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
