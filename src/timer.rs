//! A sleep that ends when it should. tokio's timer counts whole milliseconds and its reactor
//! parks with a timeout in milliseconds, rounded up, so a 50 ms sleep ends 50 to 52 ms later; a
//! restart after its backoff delay was late by that much. A timerfd wakes the reactor at its
//! nanosecond instead. Where one cannot be had (no descriptor left), tokio's sleep stands in.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// Waits `after`, to within the scheduler's latency. Must be awaited inside a tokio runtime.
pub async fn sleep(after: Duration) {
    if after.is_zero() {
        return tokio::task::yield_now().await;
    }
    // A failure may come after part of the wait: tokio's sleep only finishes it.
    let deadline = Instant::now() + after;
    if precise(after).await.is_err() {
        tokio::time::sleep_until(deadline).await;
    }
}

async fn precise(after: Duration) -> nix::Result<()> {
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    // A zero expiration disarms a timerfd: `after` is above zero here.
    timer.set(
        Expiration::OneShot(TimeSpec::from_duration(after)),
        TimerSetTimeFlags::empty(),
    )?;
    let timer = OwnedFd::from(timer);
    // SAFETY: the AsyncFd owns the descriptor, which stays open until it is dropped.
    let timer = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }
        .map_err(|e| io_errno(e.into()))?;
    loop {
        let mut ready = timer.readable().await.map_err(io_errno)?;
        // Readable means expired; a spurious wake finds the count unset and waits again.
        let mut count = [0u8; 8];
        match nix::unistd::read(timer.get_ref(), &mut count) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

fn io_errno(e: std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn it_waits_at_least_as_long_as_asked() {
        for ms in [0, 1, 7, 20] {
            let asked = Duration::from_millis(ms);
            let started = Instant::now();
            sleep(asked).await;
            assert!(
                started.elapsed() >= asked,
                "{ms} ms asked, {:?} waited",
                started.elapsed()
            );
        }
    }
}
