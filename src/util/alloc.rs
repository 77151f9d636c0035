//! The allocator's one setting: keep freed memory (see [`keep_freed_memory`]).

/// Tells mimalloc (the binary's allocator) never to return freed memory to the OS,
/// unless `MIMALLOC_PURGE_DELAY` says otherwise. By default it purges after 10 ms, so
/// every batch that follows a pause re-faults the pages of its activations: a cold
/// batch took up to 5x a warm one, which made the latency tail (docs/performance.md,
/// "Serving"); offline `generate` spent half its CPU time in the kernel; and 17-22% of a
/// `beauty` training step's `perf` samples were the kernel zeroing those pages again
/// (`clear_page_erms`). A command's working set is bounded by its batch, so keeping it
/// costs little beyond its peak (a `beauty` training: ~670 -> ~730 MiB).
/// Called by `cli::run` for every command.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // Links mimalloc into every binary of the crate (tests too), not only `onerec`'s.
    #[allow(unused_extern_crates)]
    extern crate mimalloc;
    extern "C" {
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    /// `mi_option_purge_delay` in mimalloc v2's `mi_option_t` (libmimalloc-sys 0.1).
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    // SAFETY: mi_option_set only stores an option value; mimalloc is linked in through
    // the `mimalloc` crate and the option is read on each later purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    tracing::debug!("mimalloc: freed memory is kept (purge delay -1)");
}
