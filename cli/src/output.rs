//! Standard output for every command, in one place: the crate's `print!`/`println!` (defined
//! in `main.rs`, shadowing std's) write here. A closed pipe (`tessera templates | head -1`)
//! ends the process quietly with exit code 0 (the reader chose to stop reading); any
//! other write error ends it with a message and exit code 1. Std's macros would panic.

use std::fmt;
use std::io::{self, Write};

/// Writes `args` (and a newline when `newline`) to stdout.
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        std::process::exit(exit_code(&e));
    }
}

/// The exit code for a failed write to stdout: 0 for a closed pipe, else 1 (after saying
/// why on stderr).
fn exit_code(e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        0
    } else {
        eprintln!("error: writing to standard output: {e}");
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_a_clean_exit_other_errors_fail() {
        assert_eq!(exit_code(&io::Error::from(io::ErrorKind::BrokenPipe)), 0);
        assert_eq!(exit_code(&io::Error::other("disk full")), 1);
    }
}
