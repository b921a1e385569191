//! `uname` collector: `uname(2)`, as one info metric.

use std::ffi::CStr;

use super::{
    Collector, NodeError, Reader,
    expo::{Exposition, Kind},
};

pub struct Uname;

/// The six fields, in label order.
fn uname() -> Option<[String; 6]> {
    // SAFETY: utsname is plain old data; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let s = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field, which lives in `u`.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Some([
        s(&u.domainname),
        s(&u.machine),
        s(&u.nodename),
        s(&u.release),
        s(&u.sysname),
        s(&u.version),
    ])
}

impl Collector for Uname {
    fn name(&self) -> &'static str {
        "uname"
    }

    fn update(&mut self, _reader: &mut Reader) -> Result<(), NodeError> {
        Ok(())
    }

    fn prometheus(&self, out: &mut Exposition) {
        let Some([domainname, machine, nodename, release, sysname, version]) = uname() else {
            return;
        };
        out.family(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            Kind::Gauge,
        );
        out.sample(
            &[
                ("domainname", &domainname),
                ("machine", &machine),
                ("nodename", &nodename),
                ("release", &release),
                ("sysname", &sysname),
                ("version", &version),
            ],
            1.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::render;

    #[test]
    fn live() {
        let out = render(&mut Uname);
        assert!(out.contains("node_uname_info{domainname=\""), "{out}");
        assert!(out.contains("sysname=\"Linux\""));
    }
}
