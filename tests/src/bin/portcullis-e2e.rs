//! The `portcullis` binary, built by this crate so its end-to-end tests can run it by path
//! (`CARGO_BIN_EXE_*` only names a package's own binaries). Same entry point, same code.

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
