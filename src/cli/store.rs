//! `secretsync store`: manage the encrypted file store (DESIGN §4).
//!
//! ```text
//! secretsync store init   --file STORE [--master-key-file KEY] [--reuse-key]
//! secretsync store put    --file STORE [--master-key-file KEY] NAME [--from-file PATH]
//!                         [--expires RFC3339 | --expires-in DURATION] [--tag k=v]... [--keep-newline]
//! secretsync store get    --file STORE [--master-key-file KEY] NAME [--version V]
//! secretsync store list   --file STORE [--master-key-file KEY] [--output text|json]
//! secretsync store rm     --file STORE [--master-key-file KEY] NAME
//! secretsync store rotate-key --file STORE --master-key-file OLD --new-master-key-file NEW [--keep-data-key]
//! secretsync store verify --file STORE [--master-key-file KEY]
//! ```
//!
//! The master key comes from `--master-key-file` (or `SECRETSYNC_MASTER_KEY_FILE`), else from
//! `SECRETSYNC_MASTER_KEY` (the key text itself). There is deliberately no flag that takes a key
//! or a value on the command line (it would show in `ps` and shell history).
//!
//! Values:
//! - `put` reads the value from stdin, or verbatim from `--from-file`. From stdin, exactly one
//!   trailing newline (`\n` or `\r\n`) is stripped, because `echo x | secretsync store put NAME` is
//!   the common case; `--keep-newline` keeps it. An empty value is refused unless `--allow-empty`.
//!   Values are limited to 1 MiB (the Kubernetes Secret limit).
//! - `--tag` options, when given, replace the entry's tags; without any, the tags are kept.
//! - `get` writes the raw bytes to stdout, nothing else.
//!
//! Stdout carries only data (values, lists, a newly generated key); status messages and warnings
//! go to stderr. Errors name the file and the problem, never a value.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::providers::file::storage::{
    create_store, load_store, read_key_file, update_store, write_new_key_file,
};
use crate::providers::file::{EntryInfo, Keyring, MasterKey, Store};
use crate::value::SecretBytes;

/// Environment variable holding master key text (one or more key lines).
pub const ENV_MASTER_KEY: &str = "SECRETSYNC_MASTER_KEY";
/// Environment variable naming a master key file.
pub const ENV_MASTER_KEY_FILE: &str = "SECRETSYNC_MASTER_KEY_FILE";
/// Largest value `put` accepts.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// The store file option.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreFileArg {
    /// The store file (JSON; holds only ciphertext and metadata, safe to commit).
    #[arg(long, short = 'f', value_name = "STORE")]
    pub file: PathBuf,
}

/// The master-key options (a key file; else `SECRETSYNC_MASTER_KEY`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MasterKeyArgs {
    /// File with the master key (`secretsync-master-key-v1:<id>:<key>` lines). Without it, the key
    /// is read from SECRETSYNC_MASTER_KEY (the key text itself).
    #[arg(long, env = ENV_MASTER_KEY_FILE, value_name = "KEY")]
    pub master_key_file: Option<PathBuf>,
}

/// Output format of `store list`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOutput {
    /// A table.
    #[default]
    Text,
    /// A JSON array of entries.
    Json,
}

/// `secretsync store <command>`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum StoreCommand {
    /// Create a new store and, unless one is given, a new master key.
    ///
    /// With --master-key-file, the key file is created (mode 0600) and must not exist (unless
    /// --reuse-key). Without it and without SECRETSYNC_MASTER_KEY, the new key is printed once to
    /// stdout: save it, it cannot be recovered.
    Init {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Use an existing master key (file or SECRETSYNC_MASTER_KEY) instead of generating one.
        #[arg(long)]
        reuse_key: bool,
    },
    /// Add a new version of an entry. The value is read from stdin (or --from-file), never from
    /// an argument.
    Put {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Entry name (the remote key SecretRefs use).
        name: String,
        /// Read the value verbatim from this file instead of stdin.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
        /// Expiry time (RFC 3339, e.g. 2026-12-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339", conflicts_with = "expires_in")]
        expires: Option<String>,
        /// Expiry as a duration from now: days and/or a duration as in the CRDs (e.g. 90d, 12h, 1d12h).
        #[arg(long, value_name = "DURATION", value_parser = parse_expires_in)]
        expires_in: Option<std::time::Duration>,
        /// A tag `key=value` (repeatable). Given tags replace the entry's tags.
        #[arg(long = "tag", value_name = "K=V")]
        tags: Vec<String>,
        /// Keep a trailing newline read from stdin (by default one is stripped).
        #[arg(long)]
        keep_newline: bool,
        /// Accept an empty value.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Print a value (raw bytes) to stdout.
    Get {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Entry name.
        name: String,
        /// Version id (default: the latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// List entries with versions, times and tags (never values).
    List {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = ListOutput::Text)]
        output: ListOutput,
    },
    /// Remove an entry with all its versions.
    Rm {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Entry name.
        name: String,
    },
    /// Generate a new master key (written to NEW, mode 0600) and re-encrypt the store for it only.
    ///
    /// By default the data key is rotated too (every value re-encrypted), so old copies of the
    /// store plus the old key reveal nothing about current values. Afterwards only NEW opens it.
    RotateKey {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
        /// Where to write the new master key (must not exist).
        #[arg(long, value_name = "NEW")]
        new_master_key_file: PathBuf,
        /// Only re-wrap the data key under the new master key; values are not re-encrypted.
        #[arg(long)]
        keep_data_key: bool,
    },
    /// Check the store's integrity and that every value decrypts.
    Verify {
        /// The store file.
        #[command(flatten)]
        store: StoreFileArg,
        /// The master key.
        #[command(flatten)]
        key: MasterKeyArgs,
    },
}

/// Loads the master keyring the way every offline command does: the key file given (flag or
/// `SECRETSYNC_MASTER_KEY_FILE`), else `SECRETSYNC_MASTER_KEY`, else `SECRETSYNC_MASTER_KEY_FILE`
/// read from the environment (for callers that did not bind it with clap).
pub fn load_keyring_from_cli(file: Option<&Path>) -> anyhow::Result<Keyring> {
    if let Some(path) = file {
        return read_key_file(path)
            .with_context(|| format!("reading master key file {}", path.display()));
    }
    if let Some(text) = std::env::var_os(ENV_MASTER_KEY) {
        let text = Zeroizing::new(
            text.into_string()
                .map_err(|_| anyhow::anyhow!("{ENV_MASTER_KEY} is not valid UTF-8"))?,
        );
        return Keyring::parse(&text)
            .with_context(|| format!("reading the master key from {ENV_MASTER_KEY}"));
    }
    if let Some(path) = std::env::var_os(ENV_MASTER_KEY_FILE) {
        let path = PathBuf::from(path);
        return read_key_file(&path)
            .with_context(|| format!("reading master key file {}", path.display()));
    }
    bail!("no master key: pass --master-key-file, or set {ENV_MASTER_KEY} or {ENV_MASTER_KEY_FILE}")
}

fn open(store: &Path, key: &MasterKeyArgs) -> anyhow::Result<(Store, Keyring)> {
    let ring = load_keyring_from_cli(key.master_key_file.as_deref())?;
    let s =
        load_store(store, &ring).with_context(|| format!("opening store {}", store.display()))?;
    Ok((s, ring))
}

/// Runs one `store` command. Values and data go to `out`; `input` is stdin (for `put`).
pub fn run(cmd: StoreCommand, out: &mut dyn Write, input: &mut dyn Read) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Init {
            store,
            key,
            reuse_key,
        } => init(&store.file, &key, reuse_key, out),
        StoreCommand::Put {
            store,
            key,
            name,
            from_file,
            expires,
            expires_in,
            tags,
            keep_newline,
            allow_empty,
        } => {
            let path = &store.file;
            let expires = parse_expiry(expires.as_deref(), expires_in)?;
            let tags = parse_tags(&tags)?;
            let value = read_value(from_file.as_deref(), input, keep_newline, allow_empty)?;
            let ring = load_keyring_from_cli(key.master_key_file.as_deref())?;
            let version = update_store(path, &ring, |s| s.put(&name, &value, expires, tags))
                .with_context(|| format!("writing {name:?} to store {}", path.display()))?;
            eprintln!("stored {name:?} version {version} in {}", path.display());
            Ok(())
        }
        StoreCommand::Get {
            store,
            key,
            name,
            version,
        } => {
            let (s, _) = open(&store.file, &key)?;
            let (value, meta) = s
                .get(&name, version.as_deref())
                .with_context(|| format!("reading {name:?} from store {}", store.file.display()))?;
            if meta.is_expired_at(Utc::now()) {
                eprintln!(
                    "warning: {name:?} version {} expired at {}",
                    meta.version,
                    meta.expires.map(|e| e.to_rfc3339()).unwrap_or_default()
                );
            }
            out.write_all(value.expose())
                .context("writing the value to stdout")?;
            out.flush().context("writing the value to stdout")?;
            Ok(())
        }
        StoreCommand::List { store, key, output } => {
            let (s, _) = open(&store.file, &key)?;
            let entries = s.list();
            match output {
                ListOutput::Json => {
                    serde_json::to_writer_pretty(&mut *out, &entries)?;
                    writeln!(out)?;
                }
                ListOutput::Text => write_table(out, &entries)?,
            }
            Ok(())
        }
        StoreCommand::Rm { store, key, name } => {
            let ring = load_keyring_from_cli(key.master_key_file.as_deref())?;
            update_store(&store.file, &ring, |s| s.remove(&name)).with_context(|| {
                format!("removing {name:?} from store {}", store.file.display())
            })?;
            eprintln!("removed {name:?} from {}", store.file.display());
            Ok(())
        }
        StoreCommand::RotateKey {
            store,
            key,
            new_master_key_file,
            keep_data_key,
        } => rotate(&store.file, &key, &new_master_key_file, keep_data_key),
        StoreCommand::Verify { store, key } => {
            let (s, _) = open(&store.file, &key)?;
            let n = s
                .verify()
                .with_context(|| format!("verifying store {}", store.file.display()))?;
            writeln!(
                out,
                "ok: {} entries, {n} versions, master key(s) {}",
                s.list().len(),
                s.master_key_ids().join(", ")
            )?;
            Ok(())
        }
    }
}

fn init(
    path: &Path,
    key: &MasterKeyArgs,
    reuse_key: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        bail!("store {} already exists", path.display());
    }
    let env_key = std::env::var_os(ENV_MASTER_KEY).is_some();
    let mut created_key_file = None;
    let ring = if reuse_key || (key.master_key_file.is_none() && env_key) {
        load_keyring_from_cli(key.master_key_file.as_deref())?
    } else {
        let mk = MasterKey::generate();
        match &key.master_key_file {
            Some(kp) => {
                write_new_key_file(kp, &mk).with_context(|| {
                    format!(
                        "creating master key file {} (pass --reuse-key to use an existing key)",
                        kp.display()
                    )
                })?;
                created_key_file = Some(kp.clone());
                eprintln!(
                    "wrote new master key {} to {} (mode 0600)",
                    mk.id(),
                    kp.display()
                );
            }
            None => {
                eprintln!(
                    "warning: no --master-key-file given; the new master key {} is printed below ONCE. \
                     Store it safely (e.g. in a Kubernetes Secret); without it the store cannot be opened.",
                    mk.id()
                );
                let mut line = mk.to_text();
                line.push('\n');
                out.write_all(line.as_bytes())
                    .context("writing the key to stdout")?;
            }
        }
        Keyring::single(mk)
    };
    let result = Store::init(&ring)
        .and_then(|s| create_store(path, &s))
        .with_context(|| format!("creating store {}", path.display()));
    if let (Err(_), Some(kp)) = (&result, created_key_file) {
        let _ = std::fs::remove_file(kp);
    }
    result?;
    eprintln!(
        "created store {} for master key {}",
        path.display(),
        ring.newest().map(|k| k.id()).unwrap_or("")
    );
    Ok(())
}

fn rotate(
    path: &Path,
    key: &MasterKeyArgs,
    new_path: &Path,
    keep_data_key: bool,
) -> anyhow::Result<()> {
    let old = load_keyring_from_cli(key.master_key_file.as_deref())?;
    // Check the store opens before creating anything.
    load_store(path, &old).with_context(|| format!("opening store {}", path.display()))?;
    let mut new_key = MasterKey::generate();
    while old.get(new_key.id()).is_some() {
        new_key = MasterKey::generate();
    }
    write_new_key_file(new_path, &new_key)
        .with_context(|| format!("creating new master key file {}", new_path.display()))?;
    let result = update_store(path, &old, |s| {
        if !keep_data_key {
            s.rotate_data_key(&old)?;
        }
        s.rotate_master_key(&new_key)
    })
    .with_context(|| format!("rotating store {}", path.display()));
    if let Err(e) = result {
        let _ = std::fs::remove_file(new_path);
        return Err(e);
    }
    // Sanity check: the new key alone opens the result.
    load_store(path, &Keyring::single(new_key.clone()))
        .with_context(|| format!("re-opening store {} with the new key", path.display()))?;
    eprintln!(
        "store {} is now encrypted for master key {} only ({}); the old key is no longer needed",
        path.display(),
        new_key.id(),
        if keep_data_key {
            "data key re-wrapped"
        } else {
            "data key rotated, values re-encrypted"
        }
    );
    Ok(())
}

/// `--expires-in`: an optional leading `<n>d` (days), then a duration in the CRDs' syntax
/// ([`crate::api::duration::parse`]), e.g. `90d`, `12h`, `1d12h`.
fn parse_expires_in(s: &str) -> Result<std::time::Duration, String> {
    const DAY: u64 = 24 * 60 * 60;
    let bad = || format!("{s:?} is not a duration (use e.g. 90d, 12h, 1d12h)");
    if s.is_empty() {
        return Err(bad());
    }
    let (days, rest) = match s.split_once('d') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (n.parse::<u64>().map_err(|_| bad())?, rest)
        }
        _ => (0, s),
    };
    let rest = if rest.is_empty() {
        std::time::Duration::ZERO
    } else {
        crate::api::duration::parse(rest).map_err(|_| bad())?
    };
    days.checked_mul(DAY)
        .map(std::time::Duration::from_secs)
        .and_then(|d| d.checked_add(rest))
        .ok_or_else(bad)
}

fn parse_expiry(
    expires: Option<&str>,
    expires_in: Option<std::time::Duration>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let now = Utc::now();
    let t = match (expires, expires_in) {
        (Some(s), _) => Some(
            DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--expires {s:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        (None, Some(d)) => {
            let d = chrono::Duration::from_std(d).context("--expires-in is too large")?;
            Some(
                now.checked_add_signed(d)
                    .context("--expires-in is too large")?,
            )
        }
        (None, None) => None,
    };
    if let Some(t) = t
        && t <= now
    {
        bail!("the expiry {} is in the past", t.to_rfc3339());
    }
    Ok(t)
}

fn parse_tags(tags: &[String]) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if tags.is_empty() {
        return Ok(None);
    }
    let mut map = BTreeMap::new();
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            bail!("--tag {t:?} is not key=value")
        };
        if map.insert(k.to_string(), v.to_string()).is_some() {
            bail!("--tag {k:?} given twice");
        }
    }
    Ok(Some(map))
}

fn read_value(
    from_file: Option<&Path>,
    input: &mut dyn Read,
    keep_newline: bool,
    allow_empty: bool,
) -> anyhow::Result<SecretBytes> {
    let mut buf = Zeroizing::new(Vec::new());
    let source = match from_file {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            f.take(MAX_VALUE_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", p.display()))?;
            p.display().to_string()
        }
        None => {
            input
                .take(MAX_VALUE_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
            if !keep_newline && buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            "stdin".to_string()
        }
    };
    if buf.len() > MAX_VALUE_BYTES {
        bail!("the value from {source} is larger than {MAX_VALUE_BYTES} bytes");
    }
    if buf.is_empty() && !allow_empty {
        bail!("the value from {source} is empty (pass --allow-empty to store an empty value)");
    }
    Ok(SecretBytes::new(std::mem::take(&mut *buf)))
}

fn write_table(out: &mut dyn Write, entries: &[EntryInfo]) -> anyhow::Result<()> {
    let fmt_t = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let latest = e.latest();
            [
                e.name.clone(),
                e.versions.len().to_string(),
                latest.map(|v| v.version.clone()).unwrap_or_default(),
                latest.map(|v| fmt_t(v.created)).unwrap_or_default(),
                latest
                    .and_then(|v| v.expires)
                    .map(fmt_t)
                    .unwrap_or_else(|| "-".into()),
                if e.tags.is_empty() {
                    "-".into()
                } else {
                    e.tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    let header = ["NAME", "VERSIONS", "LATEST", "CREATED", "EXPIRES", "TAGS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_takes_days_and_crd_durations() {
        let h = |n: u64| std::time::Duration::from_secs(n * 3600);
        assert_eq!(parse_expires_in("90d"), Ok(h(90 * 24)));
        assert_eq!(parse_expires_in("12h"), Ok(h(12)));
        assert_eq!(parse_expires_in("1d12h"), Ok(h(36)));
        assert_eq!(
            parse_expires_in("90m"),
            Ok(std::time::Duration::from_secs(5400))
        );
        for bad in [
            "",
            "d",
            "1 day",
            "1d1d",
            "-1d",
            "x1d",
            "99999999999999999999d",
        ] {
            let e = parse_expires_in(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn newline_handling() {
        let v = read_value(None, &mut &b"abc\n"[..], false, false).unwrap();
        assert_eq!(v.expose(), b"abc");
        let v = read_value(None, &mut &b"abc\r\n"[..], false, false).unwrap();
        assert_eq!(v.expose(), b"abc");
        let v = read_value(None, &mut &b"abc\n\n"[..], false, false).unwrap();
        assert_eq!(v.expose(), b"abc\n");
        let v = read_value(None, &mut &b"abc\n"[..], true, false).unwrap();
        assert_eq!(v.expose(), b"abc\n");
        assert!(read_value(None, &mut &b"\n"[..], false, false).is_err());
        assert!(
            read_value(None, &mut &b""[..], false, true)
                .unwrap()
                .is_empty()
        );
        let big = vec![b'x'; MAX_VALUE_BYTES + 1];
        assert!(read_value(None, &mut &big[..], false, false).is_err());
    }

    #[test]
    fn tags_and_expiry() {
        assert_eq!(parse_tags(&[]).unwrap(), None);
        let t = parse_tags(&["a=b=c".into(), "x=".into()]).unwrap().unwrap();
        assert_eq!(t["a"], "b=c");
        assert_eq!(t["x"], "");
        assert!(parse_tags(&["nope".into()]).is_err());
        assert!(parse_tags(&["a=1".into(), "a=2".into()]).is_err());
        assert!(parse_expiry(Some("2000-01-01T00:00:00Z"), None).is_err());
        assert!(parse_expiry(Some("tomorrow"), None).is_err());
        assert!(
            parse_expiry(None, Some(std::time::Duration::from_secs(3600)))
                .unwrap()
                .unwrap()
                > Utc::now()
        );
        assert!(
            parse_expiry(Some("2999-01-01T00:00:00Z"), None)
                .unwrap()
                .is_some()
        );
    }
}
