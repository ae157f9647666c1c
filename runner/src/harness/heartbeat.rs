//! Progress for long trials: while one runs past a threshold, a line on stderr says which
//! trial is still running and for how long, so a slow perplexity case never looks like a hang.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a running trial reports itself.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// Reports a trial every [`INTERVAL`] until dropped.
pub struct Heartbeat {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts reporting `name` through `report(name, elapsed)` every `interval`.
    pub fn start(
        name: String,
        interval: Duration,
        report: impl Fn(&str, Duration) + Send + 'static,
    ) -> Heartbeat {
        let (stop, stopped) = mpsc::channel::<()>();
        let started = Instant::now();
        let thread = thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                report(&name, started.elapsed());
            }
        });
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Reports `name` on stderr every [`INTERVAL`].
    pub fn on_stderr(name: &str) -> Heartbeat {
        Heartbeat::start(name.to_string(), INTERVAL, |name, elapsed| {
            eprintln!("    … {name} still running ({} s)", elapsed.as_secs());
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reports_while_running_and_stops_when_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let beat = Heartbeat::start("t".into(), Duration::from_millis(20), move |name, _| {
            sink.lock().unwrap().push(name.to_string());
        });
        thread::sleep(Duration::from_millis(110));
        drop(beat);
        let count = seen.lock().unwrap().len();
        assert!(count >= 2, "{count} reports");
        thread::sleep(Duration::from_millis(60));
        assert_eq!(seen.lock().unwrap().len(), count, "reports after drop");
    }
}
