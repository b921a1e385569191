use agent::{bpf, capture};

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut cap = bpf::Capture::load(&bpf::LoadOptions {
        capture_bytes: 4096,
        ring_bytes: 16 << 20,
        max_connections: 65536,
        wakeup_bytes: 0,
    })?;
    println!("attached {}", cap.attached);
    let ring = cap.take_ring()?;
    let counters = cap.take_counters()?;
    let mut rr = capture::ring::RingReader::new(ring, Duration::from_millis(10))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(10));
    while tokio::time::Instant::now() < deadline {
        rr.ready().await?;
        rr.drain(|b| match capture::Record::decode(b) {
            Ok(capture::Record::Data(d)) => println!("DATA {:?} {:?} tgid={} fd={} sk={:x} total={} cap={} flags={} {:?}", d.direction, d.syscall, d.tgid, d.fd, d.sk, d.total_len, d.payload.len(), d.flags, String::from_utf8_lossy(&d.payload[..d.payload.len().min(60)])),
            Ok(r) => println!("{r:?}"),
            Err(e) => println!("ERR {e}"),
        });
    }
    for (c, v) in counters.read() { println!("{} = {}", c.name(), v); }
    Ok(())
}
