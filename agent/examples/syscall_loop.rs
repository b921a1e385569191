//! The syscalls the capture hooks, in a tight loop, for `cargo xtask bench
//! hooks`: `syscall_loop N PAYLOAD` writes 64 bytes on one end of a
//! loopback TCP connection and reads them on the other, N times, then calls
//! `getppid` (hooked by nothing) N times. Prints the nanoseconds per
//! write+read pair and per `getppid`. PAYLOAD: `garbage` (no supported
//! protocol), `tls` (a TLS application-data record header) or `http` (a
//! request line).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(n) = args.next().and_then(|s| s.parse::<u32>().ok()) else {
        eprintln!("usage: syscall_loop N garbage|tls|http");
        return ExitCode::from(2);
    };
    let mut msg = [0x07u8; 64];
    match args.next().as_deref() {
        Some("garbage") => {}
        Some("tls") => msg[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 59]),
        Some("http") => msg[..16].copy_from_slice(b"GET / HTTP/1.1\r\n"),
        _ => {
            eprintln!("usage: syscall_loop N garbage|tls|http");
            return ExitCode::from(2);
        }
    }
    match run(n, &msg) {
        Ok((pair, getppid)) => {
            println!("{pair:.1} {getppid:.1}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("syscall_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(n: u32, msg: &[u8; 64]) -> std::io::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut a = TcpStream::connect(listener.local_addr()?)?;
    let (mut b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let t = Instant::now();
    for _ in 0..n {
        a.write_all(msg)?;
        b.read_exact(&mut buf)?;
    }
    let pair = t.elapsed().as_nanos() as f64 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    let getppid = t.elapsed().as_nanos() as f64 / f64::from(n);
    Ok((pair, getppid))
}
