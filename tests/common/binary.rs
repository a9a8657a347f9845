//! Running the audionas binary in a test folder.

use std::path::Path;
use std::process::{Command, Output};

/// The audionas binary to run in `dir`, on lavapipe, with the feature cache
/// inside `dir`.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_audionas"));
    command
        .current_dir(dir)
        .env("WGPU_BACKEND", "vulkan")
        .env("NODEVICE_SELECT", "1")
        .env("AUDIONAS_CACHE", dir.join("cache"));
    command
}

/// `audionas ARGS` in `dir`, as [`command`] runs it.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().unwrap()
}

/// The stdout of a command that must have succeeded.
pub fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The stderr of a command that must have failed.
pub fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "succeeded; stderr:\n{stderr}");
    stderr
}
