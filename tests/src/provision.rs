//! The tools tests use beside the Rust toolchain, installed on first use by
//! `tests/provision.sh` (from PyPI, npm and Debian's packages), so that the
//! README's `cargo test --workspace` works on a fresh machine.

use std::path::Path;
use std::process::Command;

/// Makes sure `part` of `tests/provision.sh` is installed (`python`, `node-red`,
/// `console`): a quick check when it is there, an install (one at a time across
/// test processes) when it is not. Panics with the script's own words when it
/// cannot install, so a test never runs without its tool and never skips.
pub fn provide(part: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("provision.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(part)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {part} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
