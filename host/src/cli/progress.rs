//! A progress line on a terminal (nothing when stderr is not a terminal).

use connector_host::capability::output::ProgressObserver;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    /// An observer that updates this progress line.
    pub fn observer(&self) -> ProgressObserver {
        let bar = self.bar.clone();
        Box::new(move |p| {
            let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
            bar.set_message(format!("{}: {}{total}", p.stage, p.done));
        })
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
