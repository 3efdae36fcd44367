//! `secretsync render`: print the Secrets the controller would write, for pipelines that apply
//! manifests themselves (DESIGN §3).
//!
//! ```text
//! secretsync render -f PATH... [--hmac-key-file FILE] [-n NS] [--master-key-file KEY]
//!                   [--file-store NAME=PATH]... [--store-override NAME=env]... [--namespace-labels NS=K=V]...
//! ```
//!
//! Every SecretRef goes through the same steps as `secretsync check`, and its Secret is the
//! controller's server-side-apply object ([`crate::controller::target::apply_object`] over
//! [`crate::controller::desired::build`]): labels `app.kubernetes.io/managed-by: secretsync` and
//! `secretsync.io/secretref: <name>`, values base64 in `data`. The Secrets go to stdout as
//! multi-document YAML, one per SecretRef, ordered by namespace and name.
//!
//! **All or nothing:** if any SecretRef has a problem, nothing is printed; the problems go to
//! stderr (as `check` reports them) and the exit code is 1, so a pipeline never applies a partial
//! set. Usage and input errors exit with 2.
//!
//! The `secretsync.io/data-hmac` annotation is keyed with the controller's HMAC key: it is printed
//! only with `--hmac-key-file` (the raw key bytes, e.g. `kubectl -n secretsync-system get secret
//! secretsync-hmac-key -o jsonpath='{.data.hmac-key}' | base64 -d > hmac.key`); without it the
//! annotation is omitted and a comment says so (the controller adds it on its first sync).
//! The output holds secret values: a warning goes to stderr when stdout is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::evaluate::evaluate;
use super::manifests::{self, CliError, OfflineArgs};
use super::offline::Offline;
use crate::api;
use crate::audit::HmacKey;
use crate::controller::target;

/// `secretsync render` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RenderArgs {
    /// Manifests and stores.
    #[command(flatten)]
    pub offline: OfflineArgs,
    /// The controller's HMAC key (raw bytes, at least 16), to print the
    /// secretsync.io/data-hmac annotation the controller would write.
    #[arg(long, value_name = "FILE")]
    pub hmac_key_file: Option<PathBuf>,
}

fn read_hmac_key(path: &std::path::Path) -> Result<HmacKey, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < 16 {
        return Err(CliError::Usage(format!(
            "--hmac-key-file {}: the key must be at least 16 bytes (the raw bytes of the controller's hmac-key)",
            path.display()
        )));
    }
    Ok(HmacKey::new(bytes))
}

/// Runs `render`: Secrets to `out`, problems and notes to `err`. `Ok(true)`: everything rendered
/// (exit 0); `Ok(false)`: some SecretRef has a problem and nothing was printed (exit 1).
pub async fn run(
    args: &RenderArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool, CliError> {
    let manifests = manifests::load_args(&args.offline)?;
    let hmac = args
        .hmac_key_file
        .as_deref()
        .map(read_hmac_key)
        .transpose()?;
    let offline = Offline::new(&manifests, &args.offline)?;
    let key = hmac.clone().unwrap_or_else(HmacKey::random);
    let evaluated = evaluate(&manifests, &offline, &key).await;

    let failing: Vec<_> = evaluated
        .iter()
        .filter(|e| !e.problems.is_empty())
        .collect();
    if !failing.is_empty() {
        for e in &failing {
            for p in &e.problems {
                writeln!(err, "SecretRef/{}/{}: {p}", e.namespace, e.name)?;
            }
        }
        writeln!(
            err,
            "error: {} of {} SecretRef(s) cannot be rendered; nothing was printed",
            failing.len(),
            evaluated.len()
        )?;
        return Ok(false);
    }

    let mut docs = Vec::with_capacity(evaluated.len());
    for (e, m) in evaluated.iter().zip(&manifests.secret_refs) {
        let (Some(desired), Some(sref)) = (&e.desired, &m.object) else {
            continue;
        };
        let creation = sref.spec.creation_policy();
        // The ownership proof needs the SecretRef's uid (and the HMAC key): only a manifest read
        // back from a cluster has one. Without it, a controller would not take the Secret for its own.
        let owner = target::Ownership {
            sref_name: e.name.clone(),
            proof: match (hmac.as_ref(), sref.metadata.uid.as_deref()) {
                (Some(k), Some(uid)) => Some(k.for_namespace(&e.namespace).ownership_proof(
                    &e.namespace,
                    &desired.name,
                    &e.name,
                    uid,
                )),
                _ => None,
            },
            claimed_in_status: false,
            adopt_from: None,
        };
        let mut secret = target::apply_object(desired, &e.namespace, &owner, creation, None);
        if hmac.is_none()
            && let Some(a) = secret.metadata.annotations.as_mut()
        {
            a.remove(api::DATA_HMAC_ANNOTATION);
            if a.is_empty() {
                secret.metadata.annotations = None;
            }
        }
        let yaml = serde_yaml_ng::to_string(&secret)
            .map_err(|e| CliError::Output(std::io::Error::other(e.to_string())))?;
        docs.push(format!(
            "# From SecretRef {}/{}\n{yaml}",
            e.namespace, e.name
        ));
    }
    if std::io::stdout().is_terminal() {
        writeln!(
            err,
            "warning: the output holds secret values (base64 in `data`); redirect it to a file or a pipe"
        )?;
    }
    if hmac.is_none() {
        writeln!(
            out,
            "# {} annotation omitted: no --hmac-key-file given (the controller adds it with its own key)",
            api::DATA_HMAC_ANNOTATION
        )?;
    }
    for d in docs {
        write!(out, "---\n{d}")?;
    }
    out.flush()?;
    Ok(true)
}
