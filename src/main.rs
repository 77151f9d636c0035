use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = onerec::cli::Cli::parse();
    onerec::util::logging::init(cli.verbose, cli.quiet);
    if let Err(err) = onerec::cli::run(cli) {
        // One error line on stderr (the causes joined), non-zero exit.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
