//! `secretsync store` flows through `cli::store::run` with in-memory stdin/stdout.
//! Every command passes `--master-key-file` explicitly (no test here touches the environment).

use std::path::Path;

use clap::Parser;
use secretsync::cli::store::{StoreCommand, run};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: StoreCommand,
}

fn store(args: &[&str], stdin: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cli = Cli::try_parse_from(std::iter::once("store").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    let mut input = stdin;
    run(cli.cmd, &mut out, &mut input)?;
    Ok(out)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn full_flow_init_put_list_get_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("store.json");
    let key = dir.path().join("key");
    let new_key = dir.path().join("key2");

    let out = store(
        &["init", "--file", s(&st), "--master-key-file", s(&key)],
        b"",
    )
    .unwrap();
    assert!(out.is_empty(), "the key goes to the file, not stdout");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // init refuses to overwrite.
    assert!(
        store(
            &[
                "init",
                "--file",
                s(&st),
                "--master-key-file",
                s(&dir.path().join("k3"))
            ],
            b""
        )
        .is_err()
    );
    assert!(!dir.path().join("k3").exists());

    store(
        &[
            "put",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "db/password",
            "--tag",
            "team=pay",
        ],
        b"hunter2-sentinel\n",
    )
    .unwrap();
    store(
        &[
            "put",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "db/password",
        ],
        b"second-sentinel\n",
    )
    .unwrap();
    store(
        &[
            "put",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "raw",
            "--keep-newline",
            "--expires-in",
            "30d",
        ],
        b"line\n",
    )
    .unwrap();

    let list = String::from_utf8(
        store(&["list", "-f", s(&st), "--master-key-file", s(&key)], b"").unwrap(),
    )
    .unwrap();
    assert!(list.contains("db/password") && list.contains("team=pay") && list.contains("raw"));
    assert!(!list.contains("sentinel"));
    let json = store(
        &[
            "list",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "--output",
            "json",
        ],
        b"",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v[0]["name"], "db/password");
    assert_eq!(v[0]["versions"].as_array().unwrap().len(), 2);
    assert!(v[1]["versions"][0]["expires"].is_string());
    assert!(!String::from_utf8_lossy(&json).contains("sentinel"));

    let file_text = std::fs::read_to_string(&st).unwrap();
    assert!(!file_text.contains("sentinel"));

    assert_eq!(
        store(
            &[
                "get",
                "-f",
                s(&st),
                "--master-key-file",
                s(&key),
                "db/password"
            ],
            b""
        )
        .unwrap(),
        b"second-sentinel"
    );
    assert_eq!(
        store(
            &[
                "get",
                "-f",
                s(&st),
                "--master-key-file",
                s(&key),
                "db/password",
                "--version",
                "1"
            ],
            b""
        )
        .unwrap(),
        b"hunter2-sentinel"
    );
    assert_eq!(
        store(
            &["get", "-f", s(&st), "--master-key-file", s(&key), "raw"],
            b""
        )
        .unwrap(),
        b"line\n"
    );

    store(
        &[
            "rotate-key",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "--new-master-key-file",
            s(&new_key),
        ],
        b"",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let err = store(
        &[
            "get",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "db/password",
        ],
        b"",
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("wrong master key") && msg.contains("store.json"),
        "{msg}"
    );
    assert!(!msg.contains("sentinel"));
    assert_eq!(
        store(
            &[
                "get",
                "-f",
                s(&st),
                "--master-key-file",
                s(&new_key),
                "db/password",
                "--version",
                "1"
            ],
            b""
        )
        .unwrap(),
        b"hunter2-sentinel"
    );
    // rotate-key never overwrites an existing key file.
    assert!(
        store(
            &[
                "rotate-key",
                "-f",
                s(&st),
                "--master-key-file",
                s(&new_key),
                "--new-master-key-file",
                s(&key)
            ],
            b""
        )
        .is_err()
    );

    store(
        &["rm", "-f", s(&st), "--master-key-file", s(&new_key), "raw"],
        b"",
    )
    .unwrap();
    assert!(
        store(
            &["get", "-f", s(&st), "--master-key-file", s(&new_key), "raw"],
            b""
        )
        .is_err()
    );
    let out = store(
        &["verify", "-f", s(&st), "--master-key-file", s(&new_key)],
        b"",
    )
    .unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("ok: 1 entries, 2 versions")
    );
}

#[test]
fn init_without_key_file_prints_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("store.json");
    let out = store(&["init", "--file", s(&st)], b"").unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("secretsync-master-key-v1:mk-"));
    let key = dir.path().join("saved");
    std::fs::write(&key, &text).unwrap();
    store(
        &["put", "-f", s(&st), "--master-key-file", s(&key), "a"],
        b"v",
    )
    .unwrap();
    assert_eq!(
        store(
            &["get", "-f", s(&st), "--master-key-file", s(&key), "a"],
            b""
        )
        .unwrap(),
        b"v"
    );
}

#[test]
fn put_refuses_bad_input_and_value_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("store.json");
    let key = dir.path().join("key");
    store(
        &["init", "--file", s(&st), "--master-key-file", s(&key)],
        b"",
    )
    .unwrap();
    let put = |extra: &[&str], stdin: &[u8]| {
        let mut args = vec!["put", "-f", s(&st), "--master-key-file", s(&key)];
        args.extend_from_slice(extra);
        store(&args, stdin)
    };
    assert!(put(&["empty"], b"\n").is_err());
    assert!(put(&["x", "--tag", "novalue"], b"v").is_err());
    assert!(put(&["x", "--expires", "2001-01-01T00:00:00Z"], b"v").is_err());
    assert!(
        put(
            &[
                "x",
                "--expires",
                "2999-01-01T00:00:00Z",
                "--expires-in",
                "1h"
            ],
            b"v"
        )
        .is_err()
    );
    let before = std::fs::read(&st).unwrap();
    assert_eq!(std::fs::read(&st).unwrap(), before);

    let vf = dir.path().join("cert.pem");
    std::fs::write(&vf, b"-----BEGIN-----\n\x00\xff\n").unwrap();
    put(&["cert", "--from-file", s(&vf)], b"ignored").unwrap();
    assert_eq!(
        store(
            &["get", "-f", s(&st), "--master-key-file", s(&key), "cert"],
            b""
        )
        .unwrap(),
        b"-----BEGIN-----\n\x00\xff\n"
    );

    let err = store(
        &["get", "-f", s(&st), "--master-key-file", s(&key), "missing"],
        b"",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("\"missing\" not found"));
    let err = store(
        &[
            "get",
            "-f",
            s(&dir.path().join("nope.json")),
            "--master-key-file",
            s(&key),
            "a",
        ],
        b"",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nope.json"));
    let err = store(
        &[
            "get",
            "-f",
            s(&st),
            "--master-key-file",
            s(&dir.path().join("nokey")),
            "a",
        ],
        b"",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nokey"));
}

#[test]
fn concurrent_cli_puts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("store.json");
    let key = dir.path().join("key");
    store(
        &["init", "--file", s(&st), "--master-key-file", s(&key)],
        b"",
    )
    .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (st, key) = (st.clone(), key.clone());
            std::thread::spawn(move || {
                for i in 0..10 {
                    let name = format!("e-{t}-{i}");
                    store(
                        &["put", "-f", s(&st), "--master-key-file", s(&key), &name],
                        name.as_bytes(),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let json = store(
        &[
            "list",
            "-f",
            s(&st),
            "--master-key-file",
            s(&key),
            "-o",
            "json",
        ],
        b"",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 80);
    for t in 0..8 {
        for i in 0..10 {
            let name = format!("e-{t}-{i}");
            assert_eq!(
                store(
                    &["get", "-f", s(&st), "--master-key-file", s(&key), &name],
                    b""
                )
                .unwrap(),
                name.as_bytes()
            );
        }
    }
}
