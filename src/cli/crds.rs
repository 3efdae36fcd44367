//! `secretsync crds`: print or write the CRDs generated from the Rust types.

use std::io::Write;
use std::path::Path;

/// Writes each CRD to `dir/<plural>.yaml`, or all of them to `out` as one multi-document stream.
pub fn run(dir: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    let files = crate::api::crd_files();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, yaml) in files {
                let path = dir.join(&name);
                std::fs::write(&path, yaml)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                writeln!(out, "wrote {}", path.display())?;
            }
        }
        None => {
            for (_, yaml) in files {
                writeln!(out, "---\n{}", yaml.trim_end())?;
            }
        }
    }
    Ok(())
}
