//! What a process's environment says about its resource:
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.

use super::fs::truncate_at_char_boundary;
use super::keys;

/// At most this many extra attributes are taken from
/// `OTEL_RESOURCE_ATTRIBUTES`; later new keys are ignored.
pub const MAX_EXTRA_ATTRIBUTES: usize = 32;
/// Longer keys are ignored.
pub const MAX_KEY_LEN: usize = 128;
/// Longer values (and service names) are cut to this many bytes.
pub const MAX_VALUE_LEN: usize = 256;

const SERVICE_NAME_VAR: &[u8] = b"OTEL_SERVICE_NAME=";
const RESOURCE_ATTRIBUTES_VAR: &[u8] = b"OTEL_RESOURCE_ATTRIBUTES=";

/// The OpenTelemetry settings found in one process's environment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SERVICE_NAME`, trimmed, when not empty.
    pub service_name: Option<String>,
    /// `service.name` from `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_service_name: Option<String>,
    /// The other `OTEL_RESOURCE_ATTRIBUTES` entries, values percent-decoded,
    /// in order of first appearance (a repeated key keeps its last value).
    /// Malformed entries, empty values and keys the agent detects itself
    /// ([`keys::is_reserved`]) are left out; see the `MAX_*` bounds.
    pub attributes: Vec<(String, String)>,
}

impl OtelEnv {
    /// Reads the variables from the bytes of `/proc/<pid>/environ`
    /// (`NAME=value` entries separated by NUL). When `truncated`, the last
    /// entry is incomplete and ignored. Like `getenv`, the first definition
    /// of a variable wins; non-UTF-8 bytes are replaced.
    pub fn from_environ(environ: &[u8], truncated: bool) -> Self {
        let mut entries: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        if truncated {
            entries.pop();
        }
        let find = |prefix: &[u8]| {
            entries
                .iter()
                .find_map(|entry| entry.strip_prefix(prefix))
                .map(|value| String::from_utf8_lossy(value).into_owned())
        };
        Self::from_vars(
            find(SERVICE_NAME_VAR).as_deref(),
            find(RESOURCE_ATTRIBUTES_VAR).as_deref(),
        )
    }

    /// Interprets the values of `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn from_vars(service_name: Option<&str>, resource_attributes: Option<&str>) -> Self {
        let mut env = Self {
            service_name: service_name.and_then(bounded_value),
            ..Self::default()
        };
        for (key, value) in resource_attributes
            .into_iter()
            .flat_map(|list| list.split(','))
            .filter_map(parse_entry)
        {
            if key == keys::SERVICE_NAME {
                env.resource_service_name = Some(value);
            } else if !keys::is_reserved(&key) {
                env.insert_attribute(key, value);
            }
        }
        env
    }

    /// Adds or replaces an extra attribute, within [`MAX_EXTRA_ATTRIBUTES`].
    fn insert_attribute(&mut self, key: String, value: String) {
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else if self.attributes.len() < MAX_EXTRA_ATTRIBUTES {
            self.attributes.push((key, value));
        }
    }
}

/// One `key=value` entry of `OTEL_RESOURCE_ATTRIBUTES`; `None` when
/// malformed (no `=`, bad key, bad percent-encoding) or the value is empty.
fn parse_entry(entry: &str) -> Option<(String, String)> {
    let (key, value) = entry.split_once('=')?;
    let key = key.trim();
    if !is_valid_key(key) {
        return None;
    }
    let value = bounded_value(&percent_decode(value.trim())?)?;
    Some((key.to_owned(), value))
}

/// A key: printable ASCII without the list's separators, at most
/// [`MAX_KEY_LEN`] bytes.
fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b';' | b'=' | b'"' | b'\\'))
}

/// The trimmed value cut to [`MAX_VALUE_LEN`]; `None` when empty.
fn bounded_value(value: &str) -> Option<String> {
    let mut value = value.trim().to_owned();
    truncate_at_char_boundary(&mut value, MAX_VALUE_LEN);
    (!value.is_empty()).then_some(value)
}

/// Decodes `%XX` escapes (as in W3C baggage values; `+` stays a plus).
/// Invalid UTF-8 after decoding is replaced; `None` when an escape is not
/// two hex digits.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            decoded.push((hex_digit(hex[0])? << 4) | hex_digit(hex[1])?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(env: &OtelEnv) -> Vec<(&str, &str)> {
        env.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc%3d").as_deref(), Some("a b,c="));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("1+1").as_deref(), Some("1+1"));
        assert_eq!(percent_decode("%ff").as_deref(), Some("\u{fffd}"));
        assert_eq!(percent_decode("50%"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn resource_attributes_list() {
        let env = OtelEnv::from_vars(
            None,
            Some(
                " service.name = cart%20api ,service.version=1.2.3,\
                 deployment.environment.name=prod,k8s.pod.name=cart-7d9f",
            ),
        );
        assert_eq!(env.service_name, None);
        assert_eq!(env.resource_service_name.as_deref(), Some("cart api"));
        assert_eq!(
            pairs(&env),
            [
                ("service.version", "1.2.3"),
                ("deployment.environment.name", "prod"),
                ("k8s.pod.name", "cart-7d9f"),
            ]
        );
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let env = OtelEnv::from_vars(
            None,
            Some("novalue,=orphan,bad key=1,a=%zz,b=,c=ok,,d=x=y,e=\"q\""),
        );
        assert_eq!(pairs(&env), [("c", "ok"), ("d", "x=y"), ("e", "\"q\"")]);
    }

    #[test]
    fn reserved_keys_are_dropped() {
        let env = OtelEnv::from_vars(
            None,
            Some(
                "process.pid=1,host.name=evil,os.type=windows,container.id=x,\
                 telemetry.sdk.language=go,service.namespace=shop",
            ),
        );
        assert_eq!(pairs(&env), [("service.namespace", "shop")]);
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let env = OtelEnv::from_vars(None, Some("a=1,b=2,a=3,service.name=x,service.name=y"));
        assert_eq!(pairs(&env), [("a", "3"), ("b", "2")]);
        assert_eq!(env.resource_service_name.as_deref(), Some("y"));
    }

    #[test]
    fn bounds() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let env = OtelEnv::from_vars(None, Some(&many.join(",")));
        assert_eq!(env.attributes.len(), MAX_EXTRA_ATTRIBUTES);

        let long_key = "k".repeat(MAX_KEY_LEN + 1);
        let long_value = "é".repeat(MAX_VALUE_LEN);
        let env = OtelEnv::from_vars(
            Some(&"s".repeat(1000)),
            Some(&format!("{long_key}=1,v={long_value}")),
        );
        assert_eq!(env.service_name.unwrap().len(), MAX_VALUE_LEN);
        assert_eq!(env.attributes.len(), 1);
        assert!(env.attributes[0].1.len() <= MAX_VALUE_LEN);
    }

    #[test]
    fn environ_bytes() {
        let environ = b"PATH=/bin\0OTEL_SERVICE_NAME=  checkout \0\
                        OTEL_SERVICE_NAME=second\0OTEL_RESOURCE_ATTRIBUTES=a=1\0\xffJUNK=\xfe\0";
        let env = OtelEnv::from_environ(environ, false);
        assert_eq!(env.service_name.as_deref(), Some("checkout"));
        assert_eq!(pairs(&env), [("a", "1")]);
    }

    #[test]
    fn blank_service_name_is_ignored() {
        let env = OtelEnv::from_environ(b"OTEL_SERVICE_NAME=  \0", false);
        assert_eq!(env.service_name, None);
    }

    #[test]
    fn truncated_environ_drops_the_partial_entry() {
        let env = OtelEnv::from_environ(b"A=1\0OTEL_SERVICE_NAME=chec", true);
        assert_eq!(env.service_name, None);
        let env = OtelEnv::from_environ(b"A=1\0OTEL_SERVICE_NAME=check\0", true);
        assert_eq!(env.service_name.as_deref(), Some("check"));
    }
}
