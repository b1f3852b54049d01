//! Remote operations need more stack than some servers give their threads (stunnel's
//! service threads have 64 KiB), and running out of stack is a crash, not an error. When the
//! calling thread has little stack left, the work runs on a short-lived helper thread with a
//! large stack; otherwise it runs in place, at no cost.

use crate::failure::{Failure, Reason};

/// Run in place when at least this much stack is left.
const ENOUGH: usize = 1024 * 1024;
/// Stack of the helper thread (virtual memory: only the pages touched are used).
const HELPER_STACK: usize = 8 * 1024 * 1024;

thread_local! {
    /// The lowest and highest address of this thread's stack. Asked once per thread: for the
    /// main thread glibc answers by reading /proc/self/maps, far too slow for every signature.
    static STACK_LIMIT: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

fn stack_limit() -> Option<(usize, usize)> {
    if let Some(limit) = STACK_LIMIT.with(|c| c.get()) {
        return Some(limit);
    }
    // SAFETY: pthread_getattr_np fills attr for the calling thread; we destroy it after use.
    let limit = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        // The stack grows down from addr + size to addr.
        ok.then_some((addr as usize, addr as usize + size))?
    };
    STACK_LIMIT.with(|c| c.set(Some(limit)));
    Some(limit)
}

/// Bytes of stack left below the current frame, if the platform tells. On a stack that is
/// not the thread's own (an OpenSSL ASYNC job runs on a 32 KiB fibre allocated on the
/// heap), nothing is known to be left: 0.
fn stack_left() -> Option<usize> {
    let here = 0u8;
    let sp = &here as *const u8 as usize;
    stack_limit().map(|(low, high)| {
        if (low..high).contains(&sp) {
            sp - low
        } else {
            0
        }
    })
}

/// Runs `work` with enough stack.
pub fn with_enough_stack<T: Send>(
    work: impl FnOnce() -> Result<T, Failure> + Send,
) -> Result<T, Failure> {
    if stack_left().is_some_and(|left| left >= ENOUGH) {
        return work();
    }
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("e_akv".into())
            .stack_size(HELPER_STACK)
            .spawn_scoped(scope, work)
            .map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("cannot start a helper thread: {e}"),
                )
            })?;
        match helper.join() {
            Ok(result) => result,
            // Re-raised here, caught by the callback's guard like any other panic.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stacks_get_a_helper() {
        assert!(
            stack_left().unwrap() > ENOUGH,
            "the test thread has a normal stack"
        );
        let inner = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let left = stack_left().unwrap();
                assert!(left < 64 * 1024);
                with_enough_stack(|| Ok(stack_left().unwrap())).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(inner > ENOUGH, "ran on the helper: {inner}");
    }

    #[test]
    fn panics_on_the_helper_come_back() {
        let result = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                std::panic::catch_unwind(|| with_enough_stack::<()>(|| panic!("boom"))).is_err()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(result);
    }
}
