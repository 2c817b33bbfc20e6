//! Progress bars on stderr (indicatif) while seeding and running; hidden when switched off
//! (tests, `--no-progress`), so nothing else needs to know.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where the bars of a run are drawn.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars on stderr when `enabled`, invisible otherwise.
    pub fn new(enabled: bool) -> Self {
        let target = if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Self { multi: MultiProgress::with_draw_target(target) }
    }

    /// A bar of `len` steps labelled `message`.
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{spinner} {msg:<44} [{bar:30}] {pos:>8}/{len:<8} {per_sec:>10} {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(len).with_style(style).with_message(message.to_owned()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    /// A spinner for a step without a known length.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = self.multi.add(ProgressBar::new_spinner().with_style(style).with_message(message.to_owned()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        if self.multi.is_hidden() {
            return;
        }
        let _ = self.multi.println(line);
    }
}
