//! `time` collector: the system clock, the time zone and the clock
//! sources of `/sys/devices/system/clocksource`.

use std::{
    ffi::CStr,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    Collector, NodeError, NodePaths, Reader,
    expo::{Exposition, Kind},
};

pub struct Time {
    dir: PathBuf,
    now: f64,
    zone: (String, f64),
    /// (device number, available, current).
    sources: Vec<(String, Vec<String>, String)>,
    /// The clocksource devices, listed once (they are fixed at boot).
    devices: Option<Vec<String>>,
}

impl Time {
    pub fn new(p: &NodePaths) -> Self {
        Self {
            dir: p.sys("devices/system/clocksource"),
            now: 0.0,
            zone: (String::new(), 0.0),
            sources: Vec::new(),
            devices: None,
        }
    }
}

/// The local time zone's abbreviation and offset from UTC in seconds.
fn local_zone(unix: i64) -> (String, f64) {
    let t: libc::time_t = unix;
    // SAFETY: all-zero is a valid tm.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() || tm.tm_zone.is_null() {
        return ("UTC".into(), 0.0);
    }
    // SAFETY: tm_zone points at a NUL-terminated static string.
    let name = unsafe { CStr::from_ptr(tm.tm_zone) }
        .to_string_lossy()
        .into_owned();
    (name, tm.tm_gmtoff as f64)
}

impl Collector for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn update(&mut self, reader: &mut Reader) -> Result<(), NodeError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.now = now.as_nanos() as f64 / 1e9;
        self.zone = local_zone(now.as_secs() as i64);
        self.sources.clear();
        if self.devices.is_none() {
            // No clocksource directory (some containers): only the clock.
            let mut devices: Vec<String> = std::fs::read_dir(&self.dir)
                .map(|dir| {
                    dir.filter_map(|e| e.ok())
                        .filter_map(|e| {
                            let name = e.file_name();
                            name.to_str()?.strip_prefix("clocksource").map(String::from)
                        })
                        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                        .collect()
                })
                .unwrap_or_default();
            devices.sort();
            self.devices = Some(devices);
        }
        let devices = self.devices.clone().unwrap_or_default();
        for n in devices {
            let base = self.dir.join(format!("clocksource{n}"));
            let available = reader
                .read(&base.join("available_clocksource"))?
                .split_ascii_whitespace()
                .map(String::from)
                .collect();
            let current = reader
                .read(&base.join("current_clocksource"))?
                .trim()
                .to_string();
            self.sources.push((n, available, current));
        }
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        if !self.sources.is_empty() {
            out.family(
                "node_time_clocksource_available_info",
                "Available clocksources read from '/sys/devices/system/clocksource'.",
                Kind::Gauge,
            );
            for (device, available, _) in &self.sources {
                let mut sorted: Vec<&String> = available.iter().collect();
                sorted.sort();
                for source in sorted {
                    out.sample(&[("clocksource", source), ("device", device)], 1.0);
                }
            }
            out.family(
                "node_time_clocksource_current_info",
                "Current clocksource read from '/sys/devices/system/clocksource'.",
                Kind::Gauge,
            );
            for (device, _, current) in &self.sources {
                out.sample(&[("clocksource", current), ("device", device)], 1.0);
            }
        }
        out.family(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            Kind::Gauge,
        );
        out.value(self.now);
        out.family(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
            Kind::Gauge,
        );
        out.sample(&[("time_zone", &self.zone.0)], self.zone.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::{fixture_paths, render};

    #[test]
    fn fixture() {
        let out = render(&mut Time::new(&fixture_paths()));
        assert!(
            out.contains(
                "node_time_clocksource_current_info{clocksource=\"tsc\",device=\"0\"} 1\n"
            ),
            "{out}"
        );
        assert!(out.contains(
            "node_time_clocksource_available_info{clocksource=\"kvm-clock\",device=\"0\"} 1\n"
        ));
        assert!(out.contains("node_time_zone_offset_seconds{time_zone=\""));
    }
}
