use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    keep_freed_memory();
    let cli = onerec::cli::Cli::parse();
    if !matches!(cli.command, onerec::cli::Command::Serve(_)) {
        // Rust ignores SIGPIPE, so `println!` into a closed pipe (`onerec eval | head`)
        // panics. Like other Unix tools, stop quietly instead. The server keeps ignoring
        // it: a client that hangs up must not end it.
        // SAFETY: called once, before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // MPI when an MPI launcher started us (feature `mpi`), else one process.
    let world = onerec::dist::init().unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        std::process::exit(1)
    });
    let (rank, size) = (world.sync().rank(), world.sync().world_size());
    // Rank 0 alone logs; the other ranks keep warnings and errors.
    onerec::util::logging::init(cli.verbose, cli.quiet || rank > 0);
    if let Err(err) = onerec::cli::run_on(cli, world.sync()) {
        // One error line on stderr (the causes joined), non-zero exit (MPI_Abort on N ranks).
        match size {
            1 => eprintln!("error: {err:#}"),
            _ => eprintln!("error (rank {rank} of {size}): {err:#}"),
        }
        world.fail(1);
    }
}

/// mimalloc hands freed memory back to the OS 10 ms after it is freed; a training or
/// decoding step frees and re-allocates the same large tensors every few ms, so the
/// kernel zeroed (huge) pages again on every step: 17-22% of a `beauty` training
/// step's samples under `perf` were page faults (`clear_page_erms`). Freed memory is
/// kept instead (the peak is the same; only the return to the OS between steps is
/// gone). `MIMALLOC_PURGE_DELAY` in the environment still decides when set.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3); the symbol is linked in by the
    // mimalloc crate's own C library (libmimalloc-sys exposes it only with its
    // `extended` feature, which would pull in another crate).
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    // SAFETY: mi_option_set only stores an integer option; -1 = never purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
