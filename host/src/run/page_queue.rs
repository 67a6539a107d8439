//! The pages between the fetching and the mapping instance, bounded by their bytes.
//!
//! Parts of a few MiB queue several deep, so that fetching the next API page
//! overlaps mapping the parts of the last one; a plugin's large page waits alone,
//! as it would at a rendezvous. Memory stays bounded either way.

use crate::bindings::types::Page;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// How many bytes of pages may wait for the mapping (at least one page always may).
pub(crate) const QUEUED_BYTES: usize = 16 << 20;

pub(crate) struct PageQueue {
    state: Mutex<State>,
    changed: Condvar,
    limit: usize,
}

#[derive(Default)]
struct State {
    pages: VecDeque<Page>,
    bytes: usize,
    /// The fetcher has no more pages (or failed).
    finished: bool,
    /// The mapper stopped (on an error): pages are no longer wanted.
    abandoned: bool,
}

/// The mapper stopped taking pages.
#[derive(Debug, PartialEq)]
pub(crate) struct Abandoned;

impl PageQueue {
    pub(crate) fn new(limit: usize) -> Self {
        PageQueue { state: Mutex::default(), changed: Condvar::new(), limit }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a page, waiting while the queue is full.
    pub(crate) fn push(&self, page: Page) -> Result<(), Abandoned> {
        let size = page.body.len();
        let mut state = self.lock();
        while !state.abandoned && !state.pages.is_empty() && state.bytes + size > self.limit {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.abandoned {
            return Err(Abandoned);
        }
        state.bytes += size;
        state.pages.push_back(page);
        self.changed.notify_all();
        Ok(())
    }

    /// The next page, waiting for one; `None` once the fetcher finished and every
    /// page was taken.
    pub(crate) fn pop(&self) -> Option<Page> {
        let mut state = self.lock();
        loop {
            if let Some(page) = state.pages.pop_front() {
                state.bytes -= page.body.len();
                self.changed.notify_all();
                return Some(page);
            }
            if state.finished {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The fetcher is done: `pop` returns what is left, then `None`.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    /// The mapper is done early: pending and future pushes fail, queued pages go.
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        state.abandoned = true;
        state.pages.clear();
        state.bytes = 0;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn page(sequence: u32, bytes: usize) -> Page {
        Page { kind: "k".into(), sequence, body: vec![0; bytes] }
    }

    #[test]
    fn pages_come_out_in_order_and_the_queue_holds_back_past_its_bytes() {
        let queue = PageQueue::new(10);
        std::thread::scope(|scope| {
            let pushing = scope.spawn(|| {
                for (i, size) in [4, 4, 4, 30, 1].into_iter().enumerate() {
                    queue.push(page(i as u32, size)).unwrap();
                }
                queue.finish();
            });
            std::thread::sleep(Duration::from_millis(50));
            {
                let state = queue.lock();
                assert_eq!(state.pages.len(), 2, "a third page of 4 bytes would pass the limit of 10");
                assert_eq!(state.bytes, 8);
            }
            let mut seen = Vec::new();
            while let Some(p) = queue.pop() {
                seen.push((p.sequence, p.body.len()));
            }
            pushing.join().unwrap();
            assert_eq!(seen, [(0, 4), (1, 4), (2, 4), (3, 30), (4, 1)], "a page over the limit passes alone");
        });
    }

    #[test]
    fn an_abandoned_queue_refuses_pages_and_frees_a_waiting_fetcher() {
        let queue = PageQueue::new(4);
        std::thread::scope(|scope| {
            let pushing = scope.spawn(|| {
                queue.push(page(0, 4)).unwrap();
                queue.push(page(1, 4))
            });
            std::thread::sleep(Duration::from_millis(50));
            queue.abandon();
            assert_eq!(pushing.join().unwrap(), Err(Abandoned));
            assert_eq!(queue.push(page(2, 1)), Err(Abandoned));
        });
    }
}
