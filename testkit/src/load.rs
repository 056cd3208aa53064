//! A steady HTTP load for the zero-loss drill: a few threads, each sending `GET` after `GET`
//! (one connection per request, like many independent clients) with a pause in between, and
//! keeping every outcome with its start time, so a test can ask "did any fail" and "who answered
//! requests that started after t".

use crate::wait::http_get;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    pub start: Instant,
    pub end: Instant,
    /// The HTTP status, or why there is none.
    pub result: Result<u16, String>,
    /// The first line of the body (the example page's `greeting: ...`, naming the instance).
    pub first_line: String,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.result == Ok(200)
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// `workers` threads, each pausing `pause` after every request.
    pub fn start(url: &str, workers: usize, pause: Duration) -> Load {
        Self::start_in(None, url, workers, pause)
    }

    /// Like [`Load::start`], the workers sending from inside the network namespace at `netns`
    /// (`/run/netns/NAME`), e.g. where the load balancer listens.
    pub fn start_in(netns: Option<&std::path::Path>, url: &str, workers: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|_| {
                let (url, stop, samples) = (url.to_string(), stop.clone(), samples.clone());
                let netns = netns.map(std::path::Path::to_path_buf);
                std::thread::spawn(move || {
                    if let Some(netns) = netns {
                        crate::netns::enter_path(&netns)
                            .unwrap_or_else(|e| panic!("enter {}: {e}", netns.display()));
                    }
                    while !stop.load(Ordering::SeqCst) {
                        let start = Instant::now();
                        let answer = http_get(&url);
                        let end = Instant::now();
                        let (result, first_line) = match answer {
                            Ok((status, body)) => (Ok(status), body.lines().next().unwrap_or("").to_string()),
                            Err(e) => (Err(e), String::new()),
                        };
                        samples.lock().unwrap().push(Sample {
                            start,
                            end,
                            result,
                            first_line,
                        });
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            workers,
        }
    }

    /// The samples so far (unordered).
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Successful answers so far whose first line is `first_line`.
    pub fn served_by(&self, first_line: &str) -> usize {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|s| s.ok() && s.first_line == first_line)
            .count()
    }

    /// Stops the workers after their request in hand; every sample, in start order.
    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            w.join().expect("a load worker panicked");
        }
        let mut all = std::mem::take(&mut *self.samples.lock().unwrap());
        all.sort_by_key(|s| s.start);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
