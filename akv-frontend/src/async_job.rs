//! OpenSSL ASYNC jobs: when a server runs its handshakes in jobs (`SSL_MODE_ASYNC`, HAProxy
//! `ssl-mode-async`, `openssl s_server -async`), a remote operation does not block the
//! server's thread. The callback's work becomes a task of the process's async runtime (one
//! worker thread, the async client), the job gets a file descriptor that becomes readable
//! when the result is in, and pauses; the server serves others meanwhile and resumes the job
//! when the descriptor fires. Hundreds of operations in flight cost hundreds of small tasks,
//! not threads.
//!
//! The ASYNC functions are looked up by name in the libcrypto that loaded us: the provider
//! links no libcrypto, and the engine uses the same code. Outside a job nothing changes: the
//! same callback body runs in place, its vault call made by the calling thread.
//!
//! A job runs on OpenSSL's 32 KiB fibre, which a callback's frames would overflow
//! (measured: 20 KiB between an engine callback and the network call, on top of libssl's
//! frames): on the fibre only the hand-over and the wait run, and the task's future is
//! built on the runtime's thread, never on the fibre. A job an application abandons (a
//! client that disconnected mid-handshake) is never resumed: the task still runs to its end
//! and drops what it owns, and its result is reached only through the descriptor's entry in
//! the job's wait context, which OpenSSL cleans up.

use std::any::Any;
use std::ffi::{CStr, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use crate::failure::{self, Deferred, Failure, Raise, Reason};
use crate::remote::Via;
use crate::runtime;

type GetCurrentJob = unsafe extern "C" fn() -> *mut c_void;
type GetWaitCtx = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type Cleanup = unsafe extern "C" fn(*mut c_void, *const c_void, c_int, *mut c_void);
type SetWaitFd =
    unsafe extern "C" fn(*mut c_void, *const c_void, c_int, *mut c_void, Option<Cleanup>) -> c_int;
type GetFd =
    unsafe extern "C" fn(*mut c_void, *const c_void, *mut c_int, *mut *mut c_void) -> c_int;
type PauseJob = unsafe extern "C" fn() -> c_int;

/// The ASYNC functions of the hosting libcrypto.
struct Api {
    current_job: GetCurrentJob,
    wait_ctx: GetWaitCtx,
    set_wait_fd: SetWaitFd,
    get_fd: GetFd,
    pause_job: PauseJob,
}

static API: OnceLock<Option<Api>> = OnceLock::new();

fn api() -> Option<&'static Api> {
    API.get_or_init(|| {
        // SAFETY: dlsym with NUL-terminated names; each symbol, when present, has the C type
        // OpenSSL 3.0 through 4.x declare for it (async.h), which the types above copy.
        unsafe {
            let find = |name: &std::ffi::CStr| {
                let f = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
                (!f.is_null()).then_some(f)
            };
            Some(Api {
                current_job: std::mem::transmute::<*mut c_void, GetCurrentJob>(find(
                    c"ASYNC_get_current_job",
                )?),
                wait_ctx: std::mem::transmute::<*mut c_void, GetWaitCtx>(find(
                    c"ASYNC_get_wait_ctx",
                )?),
                set_wait_fd: std::mem::transmute::<*mut c_void, SetWaitFd>(find(
                    c"ASYNC_WAIT_CTX_set_wait_fd",
                )?),
                get_fd: std::mem::transmute::<*mut c_void, GetFd>(find(c"ASYNC_WAIT_CTX_get_fd")?),
                pause_job: std::mem::transmute::<*mut c_void, PauseJob>(find(c"ASYNC_pause_job")?),
            })
        }
    })
    .as_ref()
}

/// The ASYNC job the calling thread runs in.
pub struct Job {
    api: &'static Api,
    job: *mut c_void,
}

/// The job the calling thread runs in, if any.
pub fn current() -> Option<Job> {
    let api = api()?;
    // SAFETY: a libcrypto function without arguments.
    let job = unsafe { (api.current_job)() };
    (!job.is_null()).then_some(Job { api, job })
}

/// An eventfd, closed when the last holder lets go: the job's wait context and the thread
/// of an operation in flight each hold it, so a descriptor is never closed under a write.
struct EventFd(c_int);

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: our eventfd, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// What an operation's thread hands back (type-erased: one waiter serves every callback).
type Outcome = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

/// Our entry in a job's wait context, kept for the context's life (one descriptor per
/// connection, as servers that poll the descriptors expect: a descriptor closed and its
/// number reused between operations confuses them).
struct Waiter {
    fd: Arc<EventFd>,
    outcome: Outcome,
}

/// Sets the result and wakes the job. Dropped without a result (its task was dropped: the
/// runtime shut down), it still wakes the job, which then fails instead of waiting forever.
pub struct Done {
    fd: Arc<EventFd>,
    outcome: Outcome,
    finished: bool,
}

/// What a job finds when its operation's task ended without a result.
struct Dropped;

impl Done {
    /// Hands over the result and makes the job's descriptor readable.
    pub fn finish<T: Send + 'static>(mut self, value: T) {
        self.hand_over(Box::new(value));
    }

    fn hand_over(&mut self, value: Box<dyn Any + Send>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        self.finished = true;
        let one: u64 = 1;
        // SAFETY: an 8-byte write to the eventfd this holds open (it counts, never blocks).
        unsafe { libc::write(self.fd.0, (&one as *const u64).cast(), 8) };
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if !self.finished {
            self.hand_over(Box::new(Dropped));
        }
    }
}

/// Empties an eventfd (non-blocking), so that it is quiet until the next result.
fn drain(fd: c_int) {
    let mut count = 0u64;
    // SAFETY: an 8-byte read from our non-blocking eventfd.
    unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
}

/// The key of our descriptor in a job's wait context (the address of this static).
static WAIT_KEY: u8 = 0;

fn wait_key() -> *const c_void {
    (&WAIT_KEY as *const u8).cast()
}

/// Called by OpenSSL when it frees a wait context that holds our entry.
unsafe extern "C" fn cleanup(
    _ctx: *mut c_void,
    _key: *const c_void,
    _fd: c_int,
    custom: *mut c_void,
) {
    if !custom.is_null() {
        // SAFETY: the Box `waiter` leaked into the wait context, dropped once, here.
        drop(unsafe { Box::from_raw(custom as *mut Waiter) });
    }
}

impl Job {
    /// This job's waiter: the one of its wait context, or a new one registered there.
    fn waiter(&self) -> Result<*const Waiter, Failure> {
        let fail = |why: &str| Failure::new(Reason::Internal, format!("async job: {why}"));
        // SAFETY: the job is the current one; its context lives as long as the job.
        let ctx = unsafe { (self.api.wait_ctx)(self.job) };
        if ctx.is_null() {
            return Err(fail("no wait context"));
        }
        let (mut fd, mut custom) = (-1, std::ptr::null_mut());
        // SAFETY: looks up our key; custom is then the Box we registered.
        if unsafe { (self.api.get_fd)(ctx, wait_key(), &mut fd, &mut custom) } == 1
            && !custom.is_null()
        {
            return Ok(custom as *const Waiter);
        }
        // SAFETY: a non-blocking, close-on-exec eventfd, owned by the EventFd from here.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(fail("cannot make an eventfd"));
        }
        let waiter = Box::into_raw(Box::new(Waiter {
            fd: Arc::new(EventFd(fd)),
            outcome: Arc::new(Mutex::new(None)),
        }));
        // SAFETY: our key, the fd, the leaked Box and its cleanup for the context to keep.
        if unsafe { (self.api.set_wait_fd)(ctx, wait_key(), fd, waiter.cast(), Some(cleanup)) } != 1
        {
            // SAFETY: not handed to OpenSSL, so still ours.
            drop(unsafe { Box::from_raw(waiter) });
            return Err(fail("cannot register the wait descriptor"));
        }
        Ok(waiter)
    }

    /// Starts an operation with `start` (which hands the [`Done`] to whatever finishes the
    /// operation elsewhere; when it fails, it MUST drop the `Done`, which wakes the job),
    /// pauses the job until the result is in, and returns it.
    pub fn wait<T: Send + 'static>(
        self,
        start: impl FnOnce(Done) -> Result<(), Failure>,
    ) -> Result<T, Failure> {
        // Only a pointer on this stack: the entry belongs to the wait context, which OpenSSL
        // cleans up even if the job is never resumed.
        let waiter = self.waiter()?;
        // SAFETY: alive while the job is (only the context's cleanup drops it).
        let (fd, outcome) = unsafe { ((*waiter).fd.clone(), (*waiter).outcome.clone()) };
        // Nothing left over from an earlier operation of this connection can pass for this
        // one's result.
        outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        let raw_fd = fd.0;
        // A start that fails has dropped its Done, which wakes the job.
        let started = start(Done {
            fd,
            outcome,
            finished: false,
        });
        // Always pause at least once, even when the result is already in: the server learns
        // of the descriptor only from a pause, and one that has seen every descriptor of a
        // connection removes them all when it closes it (HAProxy asserts so).
        loop {
            // SAFETY: called inside the job this is.
            if unsafe { (self.api.pause_job)() } == 0 {
                return Err(Failure::new(
                    Reason::Internal,
                    "async job: cannot pause the job",
                ));
            }
            if let Err(e) = started {
                drain(raw_fd);
                return Err(e);
            }
            // SAFETY: as above.
            let taken = unsafe { &(*waiter).outcome }
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(value) = taken {
                drain(raw_fd);
                if value.is::<Dropped>() {
                    return Err(Failure::new(
                        Reason::Internal,
                        "async job: the operation was stopped before it finished (e_akv was unloaded or reconfigured)",
                    ));
                }
                return value.downcast::<T>().map(|v| *v).map_err(|_| {
                    Failure::new(Reason::Internal, "async job: a result of another type")
                });
            }
        }
    }
}

/// Moves what is not `Send` (OpenSSL's pointers for a callback, and what the callback
/// returns) between the job and the task that does the callback's work; as a future, it also
/// turns a panic into a value.
struct Handover<T>(T);

// SAFETY: only used by `run_remote`, for a callback's arguments, its body and its result,
// which nothing else touches while the job that passed them is paused waiting for the task.
unsafe impl<T> Send for Handover<T> {}

impl<T> Handover<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

impl<F: Future> Future for Handover<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field, never moved out.
        let inner = unsafe { self.map_unchecked_mut(|h| &mut h.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Polls a future that must be ready at once (a body whose vault call is made by the calling
/// thread).
fn now<T>(future: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(Failure::new(
            Reason::Internal,
            "a blocking operation did not finish when run",
        )),
    }
}

/// Runs a callback's `body` behind the front end's guard (`function` and `raise` as for
/// [`failure::guard`]), returning `on_error` when it fails. Outside an ASYNC job the body runs
/// in place with [`Via::Blocking`]. Inside a job it runs with [`Via::Async`] as a task of the
/// process's async runtime while the job waits, paused; what it raises is raised again on
/// the job's thread, whose error queue the application reads.
///
/// # Safety
/// Inside a job `body` runs on another thread: it must use only what the callback's caller
/// leaves untouched until the callback returns (the callback's arguments), no thread-local
/// state of the caller's thread.
pub unsafe fn run_remote<T, F>(
    function: &'static CStr,
    on_error: T,
    raise: Raise,
    body: impl FnOnce(Via) -> F + 'static,
) -> T
where
    T: Copy + 'static,
    F: Future<Output = Result<T, Failure>> + 'static,
{
    let Some(job) = current() else {
        return failure::guard(function, on_error, raise, || now(body(Via::Blocking)));
    };
    let failed = |failure: Failure| failure::guard(function, on_error, raise, || Err(failure));
    // Built once per process (on a helper thread), then only looked up.
    let side = match runtime::async_side() {
        Ok(side) => side,
        Err(failure) => return failed(failure),
    };
    let (body, on_error_there) = (Handover(body), Handover(on_error));
    let waited = job.wait::<Handover<(T, Vec<Deferred>)>>(move |done| {
        // Only the closure crosses: the body's future is built on the runtime's thread.
        side.spawn(async move {
            let future = Box::pin(body.into_inner()(Via::Async));
            let outcome = Handover(future).await;
            let on_error = on_error_there.into_inner();
            let finished = failure::collect_raised(|| {
                failure::guard(function, on_error, raise, || match outcome {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
            });
            done.finish(Handover(finished));
        });
        Ok(())
    });
    match waited {
        Ok(finished) => {
            let (value, raised) = finished.into_inner();
            // Where the application reads its errors: this thread's queue.
            for failure in raised {
                failure.raise();
            }
            value
        }
        Err(failure) => failed(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut future = std::pin::pin!(future);
        future
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn blocking_bodies_finish_when_polled_and_a_pending_one_is_a_failure() {
        assert_eq!(now(async { Ok::<_, Failure>(7) }).unwrap(), 7);
        let pending = now(std::future::pending::<Result<u8, Failure>>()).unwrap_err();
        assert_eq!(pending.reason, Reason::Internal);
    }

    #[test]
    fn a_panicking_task_body_becomes_a_value() {
        let Poll::Ready(Err(panic)) = poll_once(Handover(async { panic!("boom") })) else {
            panic!("caught")
        };
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
        assert!(matches!(
            poll_once(Handover(async { 3 })),
            Poll::Ready(Ok(3))
        ));
    }

    #[test]
    fn a_task_dropped_without_a_result_still_wakes_its_job() {
        // SAFETY: a fresh eventfd, owned by the EventFd.
        let fd = Arc::new(EventFd(unsafe {
            libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        }));
        let outcome: Outcome = Arc::new(Mutex::new(None));
        let done = Done {
            fd: fd.clone(),
            outcome: outcome.clone(),
            finished: false,
        };
        drop(done);
        let mut count = 0u64;
        // SAFETY: an 8-byte read from the eventfd.
        let read = unsafe { libc::read(fd.0, (&mut count as *mut u64).cast(), 8) };
        assert_eq!((read, count), (8, 1), "the job's descriptor fired");
        assert!(outcome.lock().unwrap().take().unwrap().is::<Dropped>());

        let done = Done {
            fd: fd.clone(),
            outcome: outcome.clone(),
            finished: false,
        };
        done.finish(5u32);
        assert_eq!(
            *outcome
                .lock()
                .unwrap()
                .take()
                .unwrap()
                .downcast::<u32>()
                .unwrap(),
            5
        );
        // SAFETY: as above.
        let read = unsafe { libc::read(fd.0, (&mut count as *mut u64).cast(), 8) };
        assert_eq!(
            (read, count),
            (8, 1),
            "finished once, not again when dropped"
        );
    }
}
