//! Async ring-buffer reader.
//!
//! The kernel wakes us only once per `wakeup_records` records of a CPU
//! (batched wakeups), so we also poll on a timer: a lone request is still
//! seen within `poll_interval` while traffic flows. A poll that finds the
//! ring empty doubles the wait before the next one, up to
//! [`IDLE_POLL_MAX`], and any record brings it back to `poll_interval`: an
//! idle host costs a few wake-ups a second instead of fifty, and the first
//! request after a quiet spell is read within [`IDLE_POLL_MAX`] (well under
//! the exporter's batching interval).

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, time::Instant};

/// The longest wait between polls of an idle ring (or `poll_interval`,
/// when that is longer).
pub const IDLE_POLL_MAX: Duration = Duration::from_millis(250);

/// When the next poll is due: `poll_interval` after records, doubling
/// while the polls find nothing.
#[derive(Clone, Copy, Debug)]
pub struct PollBackoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl PollBackoff {
    pub fn new(poll_interval: Duration) -> Self {
        Self {
            min: poll_interval,
            max: IDLE_POLL_MAX.max(poll_interval),
            current: poll_interval,
        }
    }

    /// The wait before the next poll, after one that read `records`.
    pub fn after(&mut self, records: usize) -> Duration {
        self.current = if records > 0 {
            self.min
        } else {
            (self.current * 2).min(self.max)
        };
        self.current
    }
}

pub struct RingReader {
    fd: AsyncFd<RingBuf<MapData>>,
    backoff: PollBackoff,
    /// When [`RingReader::ready`] returns without a kernel wake-up.
    next_poll: Instant,
    /// The last [`RingReader::drain`] stopped at [`DRAIN_BATCH`].
    turn_was_full: bool,
}

/// Records handled per [`RingReader::drain`] call before yielding, so one
/// busy ring cannot starve the runtime.
pub const DRAIN_BATCH: usize = 8192;

impl RingReader {
    pub fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its map fd, which stays open and the same
        // for as long as the RingBuf lives inside the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            fd,
            backoff: PollBackoff::new(poll_interval),
            next_poll: Instant::now() + poll_interval,
            turn_was_full: false,
        })
    }

    /// Waits until records may be available (wake-up or poll timer). The
    /// deadline is kept across cancelled calls (the caller's `select!`).
    pub async fn ready(&mut self) -> std::io::Result<()> {
        tokio::select! {
            guard = self.fd.readable_mut() => {
                guard?.clear_ready();
            }
            _ = tokio::time::sleep_until(self.next_poll) => {}
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
        // A call after a full batch continues the same turn.
        let read = if self.turn_was_full { n.max(1) } else { n };
        self.turn_was_full = n == DRAIN_BATCH;
        self.next_poll = Instant::now() + self.backoff.after(read);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_while_empty_and_returns_on_records() {
        let ms = Duration::from_millis;
        let mut b = PollBackoff::new(ms(20));
        let waits: Vec<_> = (0..6).map(|_| b.after(0)).collect();
        assert_eq!(waits, [ms(40), ms(80), ms(160), ms(250), ms(250), ms(250)]);
        assert_eq!(b.after(3), ms(20), "records: back to the poll interval");
        assert_eq!(b.after(0), ms(40));
    }

    #[test]
    fn a_long_poll_interval_is_kept() {
        let ms = Duration::from_millis;
        let mut b = PollBackoff::new(ms(600));
        assert_eq!(b.after(0), ms(600));
        assert_eq!(b.after(1), ms(600));
    }
}
