//! Async ring-buffer reader.
//!
//! The kernel wakes us only once per `wakeup_records` records of a CPU (batched
//! wakeups), so we also poll on a short timer: a lone request is still seen
//! within `poll_interval`.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

pub struct RingReader {
    fd: AsyncFd<RingBuf<MapData>>,
    poll: tokio::time::Interval,
}

/// Records handled per [`RingReader::drain`] call before yielding, so one
/// busy ring cannot starve the runtime.
pub const DRAIN_BATCH: usize = 8192;

impl RingReader {
    pub fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> std::io::Result<Self> {
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // SAFETY: the RingBuf owns its map fd, which stays open and the same
        // for as long as the RingBuf lives inside the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { fd, poll })
    }

    /// Waits until records may be available (wakeup or poll tick).
    pub async fn ready(&mut self) -> std::io::Result<()> {
        tokio::select! {
            guard = self.fd.readable_mut() => {
                guard?.clear_ready();
            }
            _ = self.poll.tick() => {}
        }
        Ok(())
    }

    /// Hands up to [`DRAIN_BATCH`] records to `f`; returns how many. A
    /// return of `DRAIN_BATCH` means more may be waiting.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.fd.get_mut();
        let mut n = 0;
        while n < DRAIN_BATCH {
            let Some(item) = ring.next() else { break };
            f(&item);
            n += 1;
        }
        n
    }
}
