//! A progress line on a terminal (nothing when stderr is not a terminal).

use connector_host::events::{Event, EventSink};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    /// An event sink that updates this progress line.
    pub(crate) fn events(&self) -> EventSink {
        let bar = self.bar.clone();
        Arc::new(move |event| show(&bar, event))
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// What an event reads like on a progress line.
fn show(bar: &ProgressBar, event: &Event) {
    match event {
        Event::Progress { stage, done, total } => {
            let total = total.map(|t| format!(" of {t}")).unwrap_or_default();
            bar.set_message(format!("{stage}: {done}{total}"));
        }
        Event::Writing => bar.set_message("writing KDI files"),
        Event::Delivering => bar.set_message("delivering to CVM"),
        Event::Finished(summary) => bar.finish_with_message(format!(
            "done: {} assets, {} vulnerabilities",
            summary.assets_written, summary.vulnerabilities_written
        )),
        Event::Failed(_) => bar.finish_with_message("failed (see the summary)"),
    }
}

/// One progress line per platform instance.
pub(crate) struct Instances {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Instances {
    pub(crate) fn new(names: &[String]) -> Arc<Self> {
        let multi = MultiProgress::new();
        let width = names.iter().map(String::len).max().unwrap_or(0);
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new_spinner());
                let template = format!("{{spinner}} {name:<width$} {{elapsed:>4}} {{msg}}");
                bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
                bar.enable_steady_tick(Duration::from_millis(120));
                (name.clone(), bar)
            })
            .collect();
        Arc::new(Instances { multi, bars: Mutex::new(bars) })
    }

    pub(crate) fn show(&self, instance: &str, event: &Event) {
        if let Some(bar) = self.bars.lock().unwrap().get(instance) {
            show(bar, event);
        }
    }

    pub(crate) fn finish(&self) {
        for bar in self.bars.lock().unwrap().values() {
            bar.finish_and_clear();
        }
        self.multi.clear().ok();
    }
}
