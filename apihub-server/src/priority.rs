//! The gateway's own background threads give way to the request-serving ones.
//!
//! On a machine with few cores, a background thread (a batch writer, the WAL checkpoint, a
//! password hash) that the scheduler puts on a core at nice 0 holds up the runtime's worker that
//! was due there. Measured on the 2-core development machine in three alternating pairs of runs,
//! the SQLite gateway's p99 at concurrency 1 was +450 to +953 µs over a direct call with its
//! writer threads at nice 0, and +196 to +301 µs with them at nice 10: a batch written every
//! 50 ms had been landing on a request's path.
//!
//! A background thread still has a core to itself when the workers leave one idle, and about a
//! tenth of one when they do not. A writer that falls behind then writes more per transaction,
//! and the settlements' queue is bounded (new holds wait when it is full), so it keeps up.

/// Lowers the calling thread's priority below the request-serving threads' (Linux: nice 10 for
/// this thread alone; elsewhere nothing).
pub(crate) fn background() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::gettid();
        if let Ok(tid) = libc::id_t::try_from(tid) {
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    }
}
