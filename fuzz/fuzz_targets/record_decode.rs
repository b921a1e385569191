//! Ring-buffer record decoding: any bytes the kernel side could hand over
//! (or a corrupted ring) decode to a record or an error, never a panic, and
//! a decoded payload always lies within the input.
#![no_main]

use agent::capture::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Record::decode(data) {
        Ok(Record::Data(d)) => {
            let start = data.as_ptr() as usize;
            let p = d.payload.as_ptr() as usize;
            assert!(p >= start && p + d.payload.len() <= start + data.len());
            let _ = d.uncaptured();
        }
        Ok(Record::ProcInfo(p)) => {
            assert!(p.cmdline.len() + p.environ.len() <= data.len());
        }
        Ok(_) | Err(_) => {}
    }
});
