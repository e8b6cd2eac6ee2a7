//! Host data the library keeps: one type, one lifetime rule, used by every
//! callback set and by borrowed tensor memory.

use std::ffi::c_void;

/// A destructor for host data: `free_user_data`, a borrowed tensor's
/// `release`. May be NULL (nothing to free).
#[allow(non_camel_case_types)]
pub type ofl_free_fn = Option<extern "C" fn(user_data: *mut c_void)>;

/// A host pointer and its destructor, as handed to the library.
///
/// The rule, the same everywhere: from the call that hands the pair over,
/// the library owns it. It calls `free(user_data)` exactly once, after the
/// last callback using `user_data` has returned and nothing in the library
/// can call one again (the object holding it freed, or the call that took
/// it failed), on whichever thread that happens. Shared through an `Arc`
/// by the objects that use it.
pub struct ForeignData {
    user_data: *mut c_void,
    free: ofl_free_fn,
}

// SAFETY: the header requires `user_data` to be usable from any thread (the
// callbacks that get it run on library threads, possibly concurrently, and
// `free` may run on any thread); the library only passes the pointer back.
unsafe impl Send for ForeignData {}
// SAFETY: as above: the library never dereferences `user_data`.
unsafe impl Sync for ForeignData {}

impl ForeignData {
    /// Takes ownership of `user_data` (see the type's rule).
    pub fn new(user_data: *mut c_void, free: ofl_free_fn) -> Self {
        Self { user_data, free }
    }

    /// No host data.
    pub fn none() -> Self {
        Self::new(std::ptr::null_mut(), None)
    }

    /// The pointer to pass back to the host's callbacks.
    pub fn get(&self) -> *mut c_void {
        self.user_data
    }
}

impl Drop for ForeignData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // A panic cannot start here: `free` is C. Guard anyway so that a
            // Rust-written destructor cannot unwind through a drop.
            let user_data = self.user_data;
            let _ = std::panic::catch_unwind(move || free(user_data));
        }
    }
}

impl std::fmt::Debug for ForeignData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignData").field("user_data", &self.user_data).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    static FREED: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn count_free(user_data: *mut c_void) {
        assert_eq!(user_data as usize, 42);
        FREED.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn freed_exactly_once_when_the_last_holder_drops_it() {
        let data = Arc::new(ForeignData::new(42 as *mut c_void, Some(count_free)));
        let second = Arc::clone(&data);
        drop(data);
        assert_eq!(FREED.load(Ordering::SeqCst), 0);
        let thread = std::thread::spawn(move || drop(second));
        thread.join().unwrap();
        assert_eq!(FREED.load(Ordering::SeqCst), 1);
        drop(ForeignData::none());
        assert_eq!(FREED.load(Ordering::SeqCst), 1);
    }
}
