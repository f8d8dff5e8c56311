//! Running the binary with something on its standard input, for the test
//! files that need it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Run `cmd` with `input` on its standard input; its whole output.
pub fn output_with_input(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
