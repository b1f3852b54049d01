//! One token supply for every client of a process, whichever way its callers wait: threads
//! on a condition variable, tasks on a waker. A process that loads its keys with the
//! blocking client and signs in ASYNC jobs with the async one fetches one token, not two.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use akv_proto::credential::{CredentialSource, TokenSupply};

/// The process's [`TokenSupply`] and the means to wait for a fetch another caller drives.
#[derive(Debug)]
pub struct SharedSupply {
    supply: Mutex<TokenSupply>,
    /// Threads waiting for a fetch.
    fetched: Condvar,
    /// Fetches completed so far: a task waits until it moves.
    completed: AtomicU64,
    /// Tasks waiting for a fetch.
    wakers: Mutex<Vec<Waker>>,
}

impl SharedSupply {
    /// A supply from `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> SharedSupply {
        SharedSupply {
            supply: Mutex::new(TokenSupply::new(source, budget)),
            fetched: Condvar::new(),
            completed: AtomicU64::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// The supply, locked. Never hold it across a fetch or an await.
    pub fn lock(&self) -> MutexGuard<'_, TokenSupply> {
        self.supply.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (a thread) for a fetch to complete, at most `timeout`, releasing the lock
    /// meanwhile.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, TokenSupply>,
        timeout: Duration,
    ) -> MutexGuard<'a, TokenSupply> {
        self.fetched
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// How many fetches have completed: read under the lock, before a task waits with
    /// [`SharedSupply::fetched_since`].
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Resolves (a task) once a fetch completes after `seen` fetches had.
    pub fn fetched_since(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
            if self.completed.load(Ordering::SeqCst) != seen {
                return Poll::Ready(());
            }
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Tells every waiting thread and task that a fetch completed (after handing its result
    /// to the supply).
    pub fn notify_fetched(&self) {
        self.completed.fetch_add(1, Ordering::SeqCst);
        self.fetched.notify_all();
        let waiting = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn supply() -> SharedSupply {
        SharedSupply::new(
            CredentialSource::Static {
                token: akv_proto::credential::Secret::new("t"),
            },
            Duration::from_secs(1),
        )
    }

    #[test]
    fn a_completed_fetch_wakes_waiting_tasks_and_threads() {
        let shared = Arc::new(supply());
        let seen = shared.completed();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiting = pin!(shared.fetched_since(seen));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "registered once"
        );
        assert_eq!(shared.wakers.lock().unwrap().len(), 1);

        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let guard = shared.lock();
                let started = std::time::Instant::now();
                drop(shared.wait(guard, Duration::from_secs(5)));
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        shared.notify_fetched();
        assert!(flag.0.load(Ordering::SeqCst), "the task was woken");
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(
            thread.join().unwrap() < Duration::from_secs(4),
            "the thread was woken, not timed out"
        );
        // A task that looks after the fetch completed does not wait.
        assert!(
            pin!(shared.fetched_since(seen))
                .as_mut()
                .poll(&mut cx)
                .is_ready()
        );
    }
}
