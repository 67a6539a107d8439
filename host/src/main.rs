//! `connector-host`: load a connector plugin, check its configuration, run it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
