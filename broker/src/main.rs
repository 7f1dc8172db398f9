//! The `portcullis` binary. The work is in the library (`cli::main`) so the test harness can
//! build an identical binary of its own.

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
