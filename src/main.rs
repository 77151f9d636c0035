use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
