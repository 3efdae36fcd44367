//! `secretsync audit verify FILE`: checks the hash chain of an audit trail.

use std::io::Write;
use std::path::Path;

use crate::audit::trail::{Verdict, verify};

/// Verifies `path`; `Ok(true)` when every link holds. Prints the verdict to `out`.
pub fn run_verify(path: &Path, out: &mut dyn Write) -> anyhow::Result<bool> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    match verify(std::io::BufReader::new(f))? {
        Verdict::Intact(n) => {
            writeln!(out, "{}: {n} records, chain intact", path.display())?;
            Ok(true)
        }
        Verdict::Broken { line, why } => {
            writeln!(
                out,
                "{}: chain broken at line {line}: {why}",
                path.display()
            )?;
            Ok(false)
        }
    }
}
