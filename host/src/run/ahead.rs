//! A stage on a thread of its own, a few items ahead of whoever reads them: the
//! join and the KDI serializing run this way, so that after the last page the run's
//! remaining work shares the cores.

use anyhow::{Context, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// The items a thread produces, read in order; what the thread returns at its end
/// comes from [`Ahead::stop`].
pub(crate) struct Ahead<T, R> {
    items: Option<Receiver<Result<T>>>,
    thread: Option<JoinHandle<R>>,
}

impl<T: Send + 'static, R: Send + 'static> Ahead<T, R> {
    /// Starts `produce` on a thread named `name`, at most `capacity` items ahead.
    /// It hands each item to the function it is given, and stops when that returns
    /// false: the item was an error (the reader sees it last), or the reader is gone.
    pub(crate) fn spawn(
        name: &str,
        capacity: usize,
        produce: impl FnOnce(&mut dyn FnMut(Result<T>) -> bool) -> R + Send + 'static,
    ) -> Result<Self> {
        let (sender, items) = sync_channel::<Result<T>>(capacity);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                produce(&mut |item| {
                    let failed = item.is_err();
                    sender.send(item).is_ok() && !failed
                })
            })
            .with_context(|| format!("cannot start the {name} thread"))?;
        Ok(Ahead { items: Some(items), thread: Some(thread) })
    }

    /// The next item, or `None` after the last.
    pub(crate) fn next(&mut self) -> Result<Option<T>> {
        match self.items.as_ref().map(Receiver::recv) {
            Some(Ok(item)) => item.map(Some),
            _ => Ok(None),
        }
    }

    /// Ends the thread (a thread still producing finds the reader gone) and returns
    /// what it returned; a panic on it goes on here.
    pub(crate) fn stop(mut self) -> R {
        self.items = None;
        let thread = self.thread.take().expect("a thread until stopped");
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl<T, R> Drop for Ahead<T, R> {
    fn drop(&mut self) {
        // A reader that stops early (a failed run) ends the thread instead of leaving it.
        self.items = None;
        if let Some(thread) = self.thread.take() {
            if !std::thread::panicking() {
                if let Err(panic) = thread.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}
