//! `secretsync convert` (issue 22): the ESO corpus under tests/fixtures/eso/ against its golden
//! files, and the round trip of the converted objects through the offline `check`.
//!
//! Each `NAME.yaml` has `NAME.out` (what convert writes to stdout) and `NAME.err` (its stderr
//! lines, without --allow-partial). `UPDATE_GOLDEN=1 cargo test --test convert` rewrites them;
//! review the diff.

use std::path::{Path, PathBuf};

use secretsync::cli::check::{CheckArgs, CheckOutput};
use secretsync::cli::convert::{ConvertArgs, convert_documents};
use secretsync::cli::manifests::{self, OfflineArgs};
use secretsync::convert::Options;

const DIR: &str = "tests/fixtures/eso";

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(Path::new(DIR));
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
    out
}

fn opts(adopt: bool) -> Options {
    Options {
        default_namespace: "default".into(),
        adopt,
    }
}

fn golden(path: &Path, got: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        got,
        want,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn corpus_matches_golden_files() {
    for case in cases() {
        let docs = manifests::documents(std::slice::from_ref(&case)).unwrap();
        let r = convert_documents(&docs, &opts(false));
        golden(&case.with_extension("out"), &r.yaml());
        golden(&case.with_extension("err"), &r.stderr(false));
    }
}

#[test]
fn every_supported_case_converts_and_every_refusal_names_a_field() {
    for case in cases() {
        let docs = manifests::documents(std::slice::from_ref(&case)).unwrap();
        let r = convert_documents(&docs, &opts(false));
        if case.parent().is_some_and(|p| p.ends_with("refused")) {
            assert!(r.objects.is_empty(), "{}", case.display());
            for f in &r.refused {
                assert!(f.message.contains(": "), "a refusal names its field: {f:?}");
            }
        } else {
            assert!(r.refused.is_empty(), "{}: {:?}", case.display(), r.refused);
            assert!(!r.objects.is_empty(), "{}", case.display());
        }
    }
}

#[test]
fn adopt_writes_the_opt_in_on_secretrefs_only() {
    let docs = manifests::documents(&[PathBuf::from(DIR).join("aws.yaml")]).unwrap();
    let r = convert_documents(&docs, &opts(true));
    for (o, _) in &r.objects {
        let ann = o
            .object
            .pointer("/metadata/annotations/secretsync.io~1adopt-from");
        if o.kind == "SecretRef" {
            assert_eq!(
                ann.and_then(|v| v.as_str()),
                Some(format!("external-secrets.io/ExternalSecret/{}", o.name).as_str())
            );
        } else {
            assert!(ann.is_none());
        }
    }
}

/// The converted fake-store example goes straight through `check` (the same code path as
/// `secretsync check`) and resolves; and `convert --check` says so too.
#[tokio::test]
async fn converted_output_passes_the_offline_check() {
    let docs = manifests::documents(&[PathBuf::from(DIR).join("fake.yaml")]).unwrap();
    let r = convert_documents(&docs, &opts(false));
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    let loaded = manifests::load_str(Path::new("converted"), &r.yaml(), "default").unwrap();
    let args = CheckArgs {
        offline: OfflineArgs {
            files: Vec::new(),
            namespace: "default".into(),
            stores: Default::default(),
        },
        output: CheckOutput::Text,
    };
    let mut out = Vec::new();
    let ok = secretsync::cli::check::run_loaded(&loaded, &args, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("SecretRef/demo/templated: OK"), "{text}");

    let cargs = ConvertArgs {
        files: vec![PathBuf::from(DIR).join("fake.yaml")],
        namespace: "default".into(),
        out: None,
        allow_partial: false,
        adopt: false,
        check: true,
        stores: Default::default(),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = secretsync::cli::convert::run(&cargs, &mut out, &mut err)
        .await
        .unwrap();
    assert!(ok, "{}", String::from_utf8_lossy(&err));
}

/// The rendered Secret of the templated example holds what ESO's Go templates would produce.
#[tokio::test]
async fn converted_templates_render_like_eso() {
    let docs = manifests::documents(&[PathBuf::from(DIR).join("fake.yaml")]).unwrap();
    let r = convert_documents(&docs, &opts(false));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("converted.yaml");
    std::fs::write(&p, r.yaml()).unwrap();
    let loaded = manifests::load(&[p], "default").unwrap();
    let offline = OfflineArgs {
        files: Vec::new(),
        namespace: "default".into(),
        stores: Default::default(),
    };
    let off = secretsync::cli::offline::Offline::new(&loaded, &offline).unwrap();
    let ev =
        secretsync::cli::evaluate::evaluate(&loaded, &off, &secretsync::audit::HmacKey::random())
            .await;
    let d = ev[0].desired.as_ref().expect("builds");
    let get = |k: &str| String::from_utf8(d.data[k].expose().to_vec()).unwrap();
    assert_eq!(get("url"), "postgres://doe:SEVMTE8x@db.internal:5432/app");
    assert_eq!(get("upper"), "HELLO1");
    assert_eq!(get("quoted"), "\"doe\"");
    assert_eq!(get("json"), "\"HELLO1\"");
    assert_eq!(get("fallback"), "5432");
    assert_eq!(get("config"), "host=db.internal\nuser=app\n");
    assert_eq!(get("decoded"), "HELLO1");
}

fn args(files: Vec<PathBuf>) -> ConvertArgs {
    ConvertArgs {
        files,
        namespace: "default".into(),
        out: None,
        allow_partial: false,
        adopt: false,
        check: false,
        stores: Default::default(),
    }
}

/// A refusal fails the command and writes nothing; `--allow-partial` writes the rest and lists the
/// refused objects as skipped; `--out` writes one file per object.
#[tokio::test]
async fn refusals_fail_unless_partial_and_out_writes_one_file_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed.yaml");
    let good = std::fs::read_to_string(PathBuf::from(DIR).join("vault.yaml")).unwrap();
    std::fs::write(
        &mixed,
        format!(
            "{good}---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: gcp, namespace: apps}}\nspec: {{provider: {{gcpsm: {{projectID: p}}}}}}\n"
        ),
    )
    .unwrap();

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = secretsync::cli::convert::run(&args(vec![mixed.clone()]), &mut out, &mut err)
        .await
        .unwrap();
    let err_s = String::from_utf8(err).unwrap();
    assert!(!ok);
    assert!(
        out.is_empty(),
        "nothing is written when an object is refused"
    );
    assert!(
        err_s.contains("error: SecretStore/apps/gcp") && err_s.contains("spec.provider.gcpsm"),
        "{err_s}"
    );

    let out_dir = dir.path().join("out");
    let mut a = args(vec![mixed]);
    a.allow_partial = true;
    a.out = Some(out_dir.clone());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = secretsync::cli::convert::run(&a, &mut out, &mut err)
        .await
        .unwrap();
    let err_s = String::from_utf8(err).unwrap();
    assert!(ok, "{err_s}");
    assert!(err_s.contains("skipped: SecretStore/apps/gcp"), "{err_s}");
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "clustersecretstore-vault-approle.yaml",
            "secretref-payments-per-item-store.yaml",
            "secretref-payments-vault-example.yaml",
            "secretstore-payments-vault-backend.yaml",
            "secretstore-payments-vault-k8s.yaml",
        ]
    );
    // Each file is a valid manifest for `check`'s loader.
    let m = manifests::load(&[out_dir], "default").unwrap();
    assert_eq!(m.secret_refs.len(), 2);
    assert!(m.secret_refs.iter().all(|s| s.problems.is_empty()));
}

/// Output that would not validate is refused, not written: here a template key Kubernetes rejects.
#[test]
fn output_is_validated_like_check() {
    let docs = {
        let mut v = Vec::new();
        manifests::documents_of(
            Path::new("bad.yaml"),
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: x, namespace: a}\nspec:\n  secretStoreRef: {name: s}\n  refreshInterval: 5 minutes\n  data: [{secretKey: k, remoteRef: {key: r}}]\n",
            &mut v,
        )
        .unwrap();
        v
    };
    let r = convert_documents(&docs, &opts(false));
    assert!(r.objects.is_empty());
    assert!(
        r.refused[0].message.contains("spec.refreshInterval"),
        "{:?}",
        r.refused
    );
}

/// `-f -` reads standard input (the binary, as a user runs it).
#[test]
fn reads_stdin() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["convert", "-f", "-", "--adopt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = std::fs::read(PathBuf::from(DIR).join("azure.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kind: SecretRef"), "{stdout}");
    assert!(
        stdout.contains(
            "secretsync.io/adopt-from: external-secrets.io/ExternalSecret/database-credentials"
        ),
        "{stdout}"
    );
    // The ExternalSecret is Orphan: the warning says adoption cannot prove it.
    assert!(String::from_utf8_lossy(&out.stderr).contains("--adopt: ESO writes no ownerReference"));
}
