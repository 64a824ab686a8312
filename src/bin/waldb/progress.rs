//! Progress on stderr for the long commands (`sim`, `bench`): an indicatif bar on a terminal,
//! and in a log (stderr not a terminal) a plain line now and then and at the end, so that a CI
//! log shows how far a run got without a line per redraw.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over `total` steps of a `unit` (`"seeds"`, `"cells"`).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    done: u64,
    total: u64,
    unit: &'static str,
    started: Instant,
    logged: Instant,
    log_every: Duration,
}

impl Progress {
    /// A bar on a terminal; otherwise a line at most every `log_every`, and one at the end.
    pub(crate) fn new(total: u64, unit: &'static str, log_every: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(&format!(
                "[{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}}, {{eta}} left  {{msg}}"
            ))
            .expect("a valid template")
            .progress_chars("=> ");
            ProgressBar::new(total).with_style(style)
        });
        let now = Instant::now();
        Progress { bar, done: 0, total, unit, started: now, logged: now, log_every }
    }

    /// One step done; `what` says which.
    pub(crate) fn step(&mut self, what: &str) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_owned());
            bar.inc(1);
            if self.done == self.total {
                bar.finish();
            }
            return;
        }
        if self.done == self.total || self.logged.elapsed() >= self.log_every {
            self.logged = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            let rate = self.done as f64 / secs.max(1e-9);
            let _ = writeln!(
                std::io::stderr(),
                "{}/{} {}, {rate:.0}/s, {secs:.1} s  {what}",
                self.done,
                self.total,
                self.unit
            );
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints `text` on stderr without tearing the bar (a closed stderr is ignored: the tool
    /// never panics on its output).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))] // the campaign's summary
    pub(crate) fn println(&self, text: &str) {
        let print = || {
            let _ = writeln!(std::io::stderr(), "{text}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A run cut short (a failing seed, an error) leaves its bar where it stopped.
        if let Some(bar) = self.bar.as_ref().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
    }
}
