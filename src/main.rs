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
    onerec::util::logging::init(cli.verbose, cli.quiet);
    if let Err(err) = onerec::cli::run(cli) {
        // One error line on stderr (the causes joined), non-zero exit.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
