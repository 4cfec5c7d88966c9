//! The one-line progress indicator on stderr, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Width of the bar between the brackets.
const BAR_WIDTH: usize = 30;

/// Counts finished requests and redraws `[=====>     ] 12/32 requests, 3 failed` in place with `\r`.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    enabled: bool,
    /// `(finished, failed)`. A `std` mutex, not atomics: the count and the redraw must happen together so that
    /// concurrent workers never draw an older count over a newer one; the section is short and never awaits.
    counts: Mutex<(usize, usize)>,
}

impl Progress {
    /// A progress line for `total` requests; silent unless stderr is a terminal.
    pub fn new(total: usize) -> Self {
        let progress = Self { total, enabled: std::io::stderr().is_terminal(), counts: Mutex::new((0, 0)) };
        progress.draw(0, 0);
        progress
    }

    /// Records one finished request (failed or rejected when `succeeded` is false) and redraws.
    pub fn record(&self, succeeded: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.0 += 1;
        counts.1 += usize::from(!succeeded);
        self.draw(counts.0, counts.1);
    }

    /// Ends the line so that what follows starts on its own line.
    pub fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }

    fn draw(&self, finished: usize, failed: usize) {
        if !self.enabled {
            return;
        }
        let line = render(finished, failed, self.total);
        let mut stderr = std::io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing the benchmark for.
        let _ = write!(stderr, "\r{line}").and_then(|()| stderr.flush());
    }
}

fn render(finished: usize, failed: usize, total: usize) -> String {
    let filled = (finished * BAR_WIDTH).checked_div(total).unwrap_or(BAR_WIDTH);
    let bar = match filled {
        0 => " ".repeat(BAR_WIDTH),
        n if n >= BAR_WIDTH => "=".repeat(BAR_WIDTH),
        n => format!("{}>{}", "=".repeat(n - 1), " ".repeat(BAR_WIDTH - n)),
    };
    format!("[{bar}] {finished}/{total} requests, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_grows_with_finished_requests() {
        assert_eq!(render(0, 0, 4), format!("[{}] 0/4 requests, 0 failed", " ".repeat(30)));
        assert_eq!(render(2, 1, 4), format!("[{}>{}] 2/4 requests, 1 failed", "=".repeat(14), " ".repeat(15)));
        assert_eq!(render(4, 0, 4), format!("[{}] 4/4 requests, 0 failed", "=".repeat(30)));
    }
}
