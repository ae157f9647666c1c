//! A team of threads that run the chunks of one product together: the calling thread and
//! `threads − 1` workers.
//!
//! A one-token product of a layer lasts tens of microseconds, so how soon the other threads
//! start on it and how evenly they finish matter as much as the kernel. Between products the
//! workers spin for a while (then yield, then sleep), so a dispatch reaches them in well under a
//! microsecond. Each thread owns a run of consecutive jobs, which it claims one at a time from the
//! front, so it streams its part of a matrix as one run; a thread that is done takes jobs from the
//! back of the longest remaining run, so the threads finish within one job of each other; and the
//! caller waits on a counter, not a wake-up.
//!
//! A dispatch from inside a job (or while another thread dispatches on the same team) runs on
//! the calling thread. A panic in a job reaches the caller once every job has stopped.

use std::any::Any;
use std::cell::Cell;
use std::hint::spin_loop;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::error::KernelError;

/// How long an idle thread spins before it starts yielding its core.
const SPIN_FOR: Duration = Duration::from_micros(200);
/// How long an idle worker yields before it sleeps until the next dispatch.
const YIELD_FOR: Duration = Duration::from_millis(2);
/// Idle rounds between two looks at the clock.
const ROUNDS_PER_CLOCK: u32 = 64;

/// Threads that run the jobs of a dispatch together (see the module docs).
#[derive(Debug)]
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    dispatching: Mutex<()>,
}

/// A value alone on its cache lines, so threads spinning on one do not slow writes to another.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug)]
struct Shared {
    /// Per thread (the dispatching caller first): the unclaimed jobs of its run in the current
    /// dispatch, the end (high half) and the next one (low half).
    runs: Vec<Padded<AtomicU64>>,
    /// The current dispatch's work, valid while one of its jobs is claimed and not done.
    job: Padded<AtomicPtr<Job<'static>>>,
    /// Jobs of the current dispatch that have finished.
    done: Padded<AtomicUsize>,
    /// Per worker: asleep until the next dispatch unparks it.
    asleep: Vec<Padded<AtomicBool>>,
    /// Set when the team is dropped.
    stop: AtomicBool,
}

/// The work of one dispatch, on the caller's stack.
struct Job<'a> {
    run: &'a (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

thread_local! {
    /// Whether this thread is running jobs of a dispatch (workers always are).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

impl Team {
    /// A team of `threads` threads: the caller of each dispatch and `threads − 1` workers.
    pub fn new(threads: usize) -> Result<Self, KernelError> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            runs: (0..threads).map(|_| Padded::default()).collect(),
            job: Padded::default(),
            done: Padded::default(),
            asleep: (1..threads).map(|_| Padded::default()).collect(),
            stop: AtomicBool::new(false),
        });
        let mut team = Team {
            shared,
            workers: Vec::with_capacity(threads - 1),
            dispatching: Mutex::new(()),
        };
        for me in 0..threads - 1 {
            let shared = team.shared.clone();
            let worker = thread::Builder::new()
                .name(format!("bitnet-team-{}", me + 1))
                .spawn(move || shared.work(me))
                .map_err(|e| KernelError::ThreadPool {
                    threads,
                    reason: e.to_string(),
                })?;
            team.workers.push(worker);
        }
        Ok(team)
    }

    /// Threads of the team, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// `f(i)` for every `i` in `0..n`, each on one thread of the team; returns when all are done.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let threads = self.threads();
        self.run_in_runs(n, &|t| t * n / threads, f);
    }

    /// [`Team::run`] with thread `t` starting on the run of jobs `first(t)..first(t + 1)`
    /// (`first(0) = 0`, `first(threads) = n`, never decreasing).
    fn run_in_runs(&self, n: usize, first: &dyn Fn(usize) -> usize, f: &(dyn Fn(usize) + Sync)) {
        let parallel = n >= 2 && u32::try_from(n).is_ok() && !IN_JOB.get();
        let guard = match parallel && !self.workers.is_empty() {
            true => self.dispatch_lock(),
            false => None,
        };
        let Some(_guard) = guard else {
            (0..n).for_each(f);
            return;
        };
        let job = Job {
            run: f,
            panic: Mutex::new(None),
        };
        let shared = &*self.shared;
        shared.done.0.store(0, Ordering::Relaxed);
        // Threads dereference the pointer only after claiming one of its jobs, and this
        // function returns only once `done` counts every job.
        let erased = ptr::from_ref(&job).cast_mut().cast::<Job<'static>>();
        shared.job.0.store(erased, Ordering::Relaxed);
        for (t, run) in shared.runs.iter().enumerate() {
            run.0.store(span(first(t), first(t + 1)), Ordering::SeqCst);
        }
        for (worker, asleep) in self.workers.iter().zip(&shared.asleep) {
            if asleep.0.load(Ordering::SeqCst) {
                worker.thread().unpark();
            }
        }
        IN_JOB.set(true);
        shared.claim_all(0);
        let mut idle = Idle::new();
        while shared.done.0.load(Ordering::Acquire) < n {
            idle.wait();
        }
        IN_JOB.set(false);
        if let Some(payload) = take(&job.panic) {
            panic::resume_unwind(payload);
        }
    }

    /// `f(item)` for every item, each on one thread of the team; the results in item order.
    pub fn map<I: Send, R: Send>(&self, items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
        let slots: Vec<Mutex<(Option<I>, Option<R>)>> = items
            .into_iter()
            .map(|item| Mutex::new((Some(item), None)))
            .collect();
        self.run(slots.len(), &|i| {
            let item = lock(&slots[i]).0.take();
            if let Some(item) = item {
                let result = f(item);
                lock(&slots[i]).1 = Some(result);
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                let (_, result) = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
                result.expect("a dispatch returns once every job has run")
            })
            .collect()
    }

    /// `f(part, first, chunk)` for every chunk of `chunk_len` values of each of `parts` (the last
    /// chunk of a part may be shorter), `first` the chunk's offset in its part, each on one
    /// thread of the team. The jobs follow the parts and their chunks in order, so a thread's
    /// run covers consecutive chunks ([`Team::for_each_span`] over an even split).
    pub fn for_each_chunk<T: Send>(
        &self,
        parts: &mut [&mut [T]],
        chunk_len: usize,
        f: impl Fn(usize, usize, &mut [T]) + Sync,
    ) {
        let chunk_len = chunk_len.max(1);
        let spans: Vec<(usize, Range<usize>)> = parts
            .iter()
            .enumerate()
            .flat_map(|(part, values)| {
                let len = values.len();
                (0..len)
                    .step_by(chunk_len)
                    .map(move |first| (part, first..(first + chunk_len).min(len)))
            })
            .collect();
        self.for_each_span(parts, &spans, &[], f);
    }

    /// `f(part, first, chunk)` for each span `(part, first..end)` of `spans`, `chunk` being
    /// `parts[part][first..end]`, each on one thread of the team, thread `t` starting on the
    /// spans `runs[t]..runs[t + 1]` (`runs` holds `threads() + 1` starts, the last
    /// `spans.len()`; without them, an even split of the spans' count). The spans must lie
    /// within their parts and follow each other in order, parts first, without overlapping.
    ///
    /// # Panics
    /// If they do not.
    pub fn for_each_span<T: Send>(
        &self,
        parts: &mut [&mut [T]],
        spans: &[(usize, Range<usize>)],
        runs: &[usize],
        f: impl Fn(usize, usize, &mut [T]) + Sync,
    ) {
        let mut end = (0, 0);
        for (part, range) in spans {
            assert!(
                (*part, range.start) >= end
                    && range.start <= range.end
                    && parts.get(*part).is_some_and(|p| range.end <= p.len()),
                "span {part}:{range:?} out of order or out of bounds"
            );
            end = (*part, range.end);
        }
        let bases: Vec<AtomicPtr<T>> = parts
            .iter_mut()
            .map(|part| AtomicPtr::new(part.as_mut_ptr()))
            .collect();
        let job = |i: usize| {
            let (part, range) = &spans[i];
            // SAFETY: `run` calls this once per job, the spans are disjoint ranges within their
            // parts (checked above), and the parts stay mutably borrowed, by nothing else,
            // until `run` returns.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(
                    bases[*part].load(Ordering::Relaxed).add(range.start),
                    range.len(),
                )
            };
            f(*part, range.start, chunk);
        };
        let threads = self.threads();
        let split = runs.len() == threads + 1
            && runs.first() == Some(&0)
            && runs.last() == Some(&spans.len())
            && runs.windows(2).all(|w| w[0] <= w[1]);
        match split {
            true => self.run_in_runs(spans.len(), &|t| runs[t], &job),
            false => self.run(spans.len(), &job),
        }
    }

    /// The right to dispatch, or `None` while another thread dispatches on this team.
    fn dispatch_lock(&self) -> Option<MutexGuard<'_, ()>> {
        match self.dispatching.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            worker.thread().unpark();
            // A worker runs no user code outside a dispatch, which cannot be in progress here.
            let _ = worker.join();
        }
    }
}

impl Shared {
    /// A worker's life: claim jobs as they come, idle in between.
    fn work(&self, me: usize) {
        IN_JOB.set(true);
        let mut idle = Idle::new();
        loop {
            if self.unclaimed() {
                self.claim_all(me + 1);
                idle = Idle::new();
            } else if self.stop.load(Ordering::Acquire) {
                return;
            } else if idle.wait() {
                self.sleep(me);
                idle = Idle::new();
            }
        }
    }

    /// Sleeps until the next dispatch (or the team's end), unless one has already begun.
    fn sleep(&self, me: usize) {
        let asleep = &self.asleep[me].0;
        asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.unclaimed() && !self.stop.load(Ordering::SeqCst) {
            thread::park();
        }
        asleep.store(false, Ordering::SeqCst);
    }

    /// Whether a run of the current dispatch has jobs nobody has claimed yet.
    fn unclaimed(&self) -> bool {
        self.runs
            .iter()
            .any(|run| remaining(run.0.load(Ordering::SeqCst)) > 0)
    }

    /// Runs jobs of the current dispatch, thread `me`'s own run first, until none is left
    /// unclaimed.
    fn claim_all(&self, me: usize) {
        while let Some(i) = self.claim(me) {
            // SAFETY: job `i` was claimed from a run of the dispatch whose stores the claim
            // synchronized with, and its caller waits for the job to be counted done before its
            // `Job` goes away.
            let job = unsafe { &*self.job.0.load(Ordering::Acquire) };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| (job.run)(i))) {
                lock(&job.panic).get_or_insert(payload);
            }
            self.done.0.fetch_add(1, Ordering::Release);
        }
    }

    /// Claims the next job of thread `me`'s run or, once that is empty, the last job of the
    /// longest other run.
    fn claim(&self, me: usize) -> Option<usize> {
        let own = &self.runs[me].0;
        let mut current = own.load(Ordering::Acquire);
        while remaining(current) > 0 {
            let (start, end) = bounds(current);
            match own.compare_exchange_weak(
                current,
                span(start + 1, end),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(start),
                Err(now) => current = now,
            }
        }
        loop {
            let (victim, current) = self
                .runs
                .iter()
                .map(|run| (&run.0, run.0.load(Ordering::Acquire)))
                .max_by_key(|&(_, v)| remaining(v))?;
            if remaining(current) == 0 {
                return None;
            }
            let (start, end) = bounds(current);
            if victim
                .compare_exchange_weak(
                    current,
                    span(start, end - 1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Some(end - 1);
            }
        }
    }
}

/// The idle rounds of a thread that waits: spinning first, then yielding its core.
struct Idle {
    since: Instant,
    rounds: u32,
    yielding: bool,
}

impl Idle {
    fn new() -> Self {
        Idle {
            since: Instant::now(),
            rounds: 0,
            yielding: false,
        }
    }

    /// One idle round; whether the thread has waited long enough to sleep.
    fn wait(&mut self) -> bool {
        self.rounds += 1;
        if self.rounds.is_multiple_of(ROUNDS_PER_CLOCK) {
            let waited = self.since.elapsed();
            self.yielding = waited >= SPIN_FOR;
            if waited >= SPIN_FOR + YIELD_FOR {
                return true;
            }
        }
        match self.yielding {
            true => thread::yield_now(),
            false => spin_loop(),
        }
        false
    }
}

/// A run of jobs `start..end` as one word (`end` at most `u32::MAX`).
fn span(start: usize, end: usize) -> u64 {
    ((end as u64) << 32) | start as u64
}

/// The first unclaimed job and the end of a run.
fn bounds(run: u64) -> (usize, usize) {
    ((run & u64::from(u32::MAX)) as usize, (run >> 32) as usize)
}

/// Jobs of a run nobody has claimed yet.
fn remaining(run: u64) -> usize {
    let (start, end) = bounds(run);
    end.saturating_sub(start)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    lock(m).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_on_any_team_size() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            assert_eq!(team.threads(), threads);
            for n in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                team.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn every_chunk_of_every_part_is_visited_once_with_its_offset() {
        let team = Team::new(3).unwrap();
        let (mut a, mut b, mut c) = (vec![0usize; 10], Vec::new(), vec![0usize; 7]);
        team.for_each_chunk(&mut [&mut a, &mut b, &mut c], 4, |part, first, chunk| {
            for (i, v) in chunk.iter_mut().enumerate() {
                *v += 100 * (part + 1) + first + i;
            }
        });
        assert_eq!(a, (100..110).collect::<Vec<_>>());
        assert!(b.is_empty());
        assert_eq!(c, (300..307).collect::<Vec<_>>());
    }

    #[test]
    fn every_span_is_visited_once_with_its_offset_whatever_the_runs() {
        let team = Team::new(2).unwrap();
        let spans = [(0, 0..3), (0, 3..4), (2, 0..5), (2, 5..7)];
        for runs in [vec![0, 1, 4], vec![0, 4, 4], vec![0, 2], vec![0, 3, 1]] {
            let (mut a, mut b, mut c) = (vec![0usize; 4], Vec::new(), vec![0usize; 7]);
            team.for_each_span(
                &mut [&mut a, &mut b, &mut c],
                &spans,
                &runs,
                |part, first, chunk| {
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v += 100 * (part + 1) + first + i;
                    }
                },
            );
            assert_eq!(a, (100..104).collect::<Vec<_>>(), "{runs:?}");
            assert!(b.is_empty());
            assert_eq!(c, (300..307).collect::<Vec<_>>(), "{runs:?}");
        }
    }

    #[test]
    #[should_panic(expected = "out of order or out of bounds")]
    fn overlapping_spans_are_refused() {
        let team = Team::new(2).unwrap();
        let mut a = vec![0u8; 8];
        team.for_each_span(
            &mut [&mut a],
            &[(0, 0..4), (0, 3..8)],
            &[0, 1, 2],
            |_, _, _| (),
        );
    }

    #[test]
    fn nested_dispatches_run_every_part() {
        let team = Team::new(2).unwrap();
        let total = AtomicUsize::new(0);
        team.run(8, &|i| {
            team.run(3, &|_| {
                total.fetch_add(11 * i, Ordering::Relaxed);
            });
        });
        assert_eq!(
            total.load(Ordering::Relaxed),
            3 * 11 * (0..8).sum::<usize>()
        );
    }

    #[test]
    fn a_panicking_job_reaches_the_caller_after_the_others_finish() {
        let team = Team::new(2).unwrap();
        let finished = AtomicUsize::new(0);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(16, &|i| {
                if i == 3 {
                    panic!("job 3");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(result.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 15);
        team.run(4, &|_| ());
    }

    #[test]
    fn workers_wake_from_sleep_for_the_next_dispatch() {
        let team = Team::new(2).unwrap();
        thread::sleep(SPIN_FOR + YIELD_FOR + Duration::from_millis(20));
        // Job 0 holds its thread until job 1 has started, which only another thread can do.
        let started = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ran_on = [Mutex::new(None), Mutex::new(None)];
        team.run(2, &|i| {
            *lock(&ran_on[i]) = Some(thread::current().id());
            match i {
                0 => {
                    while !started.load(Ordering::Acquire) && Instant::now() < deadline {
                        thread::yield_now();
                    }
                }
                _ => started.store(true, Ordering::Release),
            }
        });
        assert!(started.load(Ordering::Acquire));
        let [a, b] = ran_on.map(|m| take(&m));
        assert_ne!(a.unwrap(), b.unwrap());
    }
}
