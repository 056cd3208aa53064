//! A cap on the connections one listener holds, and who gives way at the cap.
//!
//! At the cap a new connection is still taken, and the connection that has gone longest without
//! an answer (counting from its accept) is closed. Refusing newcomers instead would let anyone who
//! holds `cap` idle or half-sent connections lock out a load balancer's health check, which opens
//! a fresh connection and is answered within a millisecond: with eviction, a flood would have to
//! open `cap` connections within that millisecond to push the check out. Those evicted first are
//! the ones that sent nothing or never finished a request; a keep-alive poller that is answered
//! every second stays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// The open connections of one listener (or of one serving thread of it).
pub struct Slots {
    cap: usize,
    epoch: Instant,
    open: Mutex<Open>,
    shed: AtomicU64,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    entries: Vec<Entry>,
}

struct Entry {
    id: u64,
    last_answer: Arc<AtomicU64>,
    /// Tells the connection to close.
    evict: oneshot::Sender<()>,
}

/// One admitted connection; gives its place back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    last_answer: Arc<AtomicU64>,
    evicted: oneshot::Receiver<()>,
}

/// Marks a connection as answered just now (cheap to clone into a request handler).
#[derive(Clone)]
pub struct Answered {
    epoch: Instant,
    last_answer: Arc<AtomicU64>,
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            epoch: Instant::now(),
            open: Mutex::new(Open::default()),
            shed: AtomicU64::new(0),
        })
    }

    /// Takes a new connection, closing the stalest one when at the cap.
    pub fn admit(self: &Arc<Self>) -> Slot {
        let now = Arc::new(AtomicU64::new(self.micros()));
        let (evict, evicted) = oneshot::channel();
        let mut open = self.lock();
        if open.entries.len() >= self.cap
            && let Some(stalest) =
                (0..open.entries.len()).min_by_key(|&i| open.entries[i].last_answer.load(Ordering::Relaxed))
        {
            let _ = open.entries.swap_remove(stalest).evict.send(());
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        let id = open.next_id;
        open.next_id += 1;
        open.entries.push(Entry {
            id,
            last_answer: now.clone(),
            evict,
        });
        Slot {
            slots: self.clone(),
            id,
            last_answer: now,
            evicted,
        }
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.lock().entries.len()
    }

    /// Connections closed so far to make room for new ones.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    pub fn answered(&self) -> Answered {
        Answered {
            epoch: self.slots.epoch,
            last_answer: self.last_answer.clone(),
        }
    }

    /// Resolves when the connection was evicted to make room for a new one.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Answered {
    pub fn now(&self) {
        self.last_answer
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(i) = open.entries.iter().position(|e| e.id == self.id) {
            open.entries.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn is_evicted(slot: &mut Slot) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(slot.evicted()).poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn at_the_cap_the_longest_unanswered_gives_way() {
        let slots = Slots::new(3);
        let mut idle = slots.admit();
        let mut polled = slots.admit();
        let mut third = slots.admit();
        // `polled` is answered after `third` was taken: `idle` is now the stalest.
        std::thread::sleep(std::time::Duration::from_millis(2));
        polled.answered().now();
        third.answered().now();
        let mut newcomer = slots.admit();
        assert!(is_evicted(&mut idle));
        assert!(!is_evicted(&mut polled));
        assert!(!is_evicted(&mut third));
        assert!(!is_evicted(&mut newcomer));
        assert_eq!((slots.open(), slots.shed()), (3, 1));
        drop(idle);
        assert_eq!(slots.open(), 3, "an evicted slot is already out");
        drop(newcomer);
        assert_eq!(slots.open(), 2);
    }
}
