//! The `thanotopolis-billing` binary: a thin shell over the library's command line.

fn main() -> std::process::ExitCode {
    thanotopolis_billing::cli::main()
}
