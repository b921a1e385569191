//! The node collectors' parsers over any text: the textfile parser (whose
//! input any local user with write access to the directory controls) and
//! the procfs/sysfs/os-release parsers. No panic; what the textfile parser
//! accepts renders to an exposition that parses back to the same samples.
#![no_main]

use agent::node::{
    diskstats::UdevInfo,
    expo::Exposition,
    filesystem::parse_mounts,
    meminfo, netstat, os, sockstat,
    stat::ProcStat,
    textfile,
};
use libfuzzer_sys::fuzz_target;

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = ProcStat::parse(&text);
    let _ = meminfo::parse(&text);
    let _ = netstat::parse_pairs(&text, &mut |_, _, v| {
        let _ = v();
    });
    let _ = netstat::parse_snmp6(&text, &mut |_, _, v| {
        let _ = v();
    });
    let mut s = sockstat::Sockstat::default();
    let _ = sockstat::parse(&text, 4096.0, &mut s);
    let _ = os::parse(&text);
    let _ = os::version_number(&text);
    let _ = parse_mounts(&text);
    let _ = UdevInfo::parse(&text);

    let Ok(families) = textfile::parse(&text) else {
        return;
    };
    let mut e = Exposition::new();
    for f in &families {
        e.family(&f.name, f.help.as_deref().unwrap_or(""), f.kind);
        for s in &f.samples {
            let labels: Vec<(&str, &str)> =
                s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            e.sample_named(&s.name, &labels, s.value);
        }
    }
    let again = textfile::parse(e.as_str()).expect("our own exposition parses");
    assert_eq!(families.len(), again.len());
    for (a, b) in families.iter().zip(&again) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.kind, b.kind);
        assert_eq!(a.samples.len(), b.samples.len());
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.labels, y.labels);
            assert!(same(x.value, y.value), "{} vs {}", x.value, y.value);
        }
    }
});
