//! `secretsync check` and `secretsync render` through the real binary, on the manifest sets in
//! `examples/check/` (copied into a temp dir, with the store created by the README's commands).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use secretsync::api::SecretRef;
use secretsync::audit::HmacKey;
use secretsync::controller::{desired, target};
use secretsync::providers::file::{FileProvider, Keyring};
use secretsync::providers::{Provider, RemoteRef};

/// The value whose leak every test looks for.
const SENTINEL: &str = "correct-horse-battery";

/// The README's setup commands (run in a copy of `examples/check/`), with what they read on stdin.
const SETUP: &[(&str, Option<&str>)] = &[
    (
        "secretsync store init --file store.json --master-key-file master.key",
        None,
    ),
    (
        "secretsync store put --file store.json --master-key-file master.key /demo/db",
        Some(r#"{"username":"app","password":"correct-horse-battery"}"#),
    ),
    (
        "secretsync store put --file store.json --master-key-file master.key /demo/api/token",
        Some("tok-123"),
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Runs `secretsync ARGS` in `dir` with a clean SECRETSYNC_* environment plus `env`.
fn run(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_secretsync"));
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SECRETSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Splits a README command line (no quoting) and drops the leading `secretsync`.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().skip(1).collect()
}

/// A copy of `examples/check/` with the store created exactly as the README does.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/check"), dir.path());
    for (line, stdin) in SETUP {
        let out = run(dir.path(), &words(line), *stdin, &[]);
        assert!(out.status.success(), "{line}: {out:?}");
    }
    dir
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn assert_no_leak(o: &Output) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(SENTINEL);
    for text in [stdout(o), stderr(o)] {
        assert!(!text.contains(SENTINEL), "value leaked: {text}");
        assert!(!text.contains(&b64), "value leaked (base64): {text}");
    }
}

const GOOD: &str =
    "secretsync check -f good/ --master-key-file master.key --file-store team-files=store.json";
const GOOD_JSON: &str = "secretsync check -f good/ --master-key-file master.key --file-store team-files=store.json --output json";
const BROKEN: &str =
    "secretsync check -f broken/ --master-key-file master.key --file-store team-files=store.json";
const RENDER: &str =
    "secretsync render -f good/ --master-key-file master.key --file-store team-files=store.json";
const ENV_CHECK: &str = "secretsync check -f env/ --store-override aws-prod=env";

#[test]
fn readme_shows_the_commands_the_tests_run() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (line, stdin) in SETUP {
        let shown = match stdin {
            Some(s) => format!("echo '{s}' | {line}"),
            None => line.to_string(),
        };
        assert!(readme.contains(&shown), "README lacks: {shown}");
    }
    for line in [GOOD, GOOD_JSON, BROKEN, RENDER, ENV_CHECK] {
        assert!(readme.contains(line), "README lacks: {line}");
    }
    assert!(readme.contains("SECRETSYNC_PROD_DB="));
}

#[test]
fn good_set_passes_with_exact_output() {
    let dir = setup();
    let out = run(dir.path(), &words(GOOD), None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "SecretRef/demo/api: OK (Secret \"api\", 1 key(s), ClusterSecretStore \"shared\")\n\
         SecretRef/demo/db: OK (Secret \"db-credentials\", 3 key(s), SecretStore \"team-files\")\n\
         OK: 2 SecretRef(s) resolve, 1 other object(s) ignored\n"
    );
    assert_no_leak(&out);

    let out = run(dir.path(), &words(GOOD_JSON), None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["ignoredObjects"], 1);
    assert_eq!(v["secretRefs"].as_array().unwrap().len(), 2);
    assert_eq!(v["secretRefs"][1]["name"], "db");
    assert_eq!(v["secretRefs"][1]["store"], "team-files");
    assert_eq!(v["secretRefs"][1]["keys"], 3);
    assert_eq!(v["secretRefs"][1]["problems"], serde_json::json!([]));
    assert_no_leak(&out);
}

#[test]
fn broken_set_names_every_problem() {
    let dir = setup();
    let out = run(dir.path(), &words(BROKEN), None, &[]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert_eq!(
        stdout(&out),
        r#"SecretRef/demo/ambient: spec.storeRef: store "borrowed-identity": aws without auth uses the controller's own AWS identity (the SDK default chain), which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; set auth.jwt.serviceAccountRef (a service account of this namespace exchanged for a role) or auth.secretRef [InvalidStoreConfig]
SecretRef/demo/bad-fields: spec.refreshInterval: "1 day" is not a duration (use e.g. 1h, 15m, 90s, 1h30m) [InvalidSpec]
SecretRef/demo/bad-fields: spec.data[0].secretKey: "a b" is not a valid Secret key (letters, digits, '-', '_', '.') [InvalidSpec]
SecretRef/demo/invalid-value: spec.data[0].validate: Secret key "password" fails validate.minLength 32: the value has 21 bytes [InvalidValue]
SecretRef/demo/missing-key: spec.data[0].remoteRef.key: remote key "/demo/missing" not found [RemoteKeyNotFound]
SecretRef/demo/outside-prefix: spec.data[0].remoteRef.key: ClusterSecretStore "shared" does not allow namespace "demo" to read remote key "/prod/db" [KeyNotAllowed]
SecretRef/demo/unknown-store: spec.storeRef: SecretStore "nope" not found in namespace "demo" [StoreNotFound]
SecretRef/other/other-ns: spec.storeRef: ClusterSecretStore "shared" does not admit namespace "other" [NamespaceNotAllowed]
FAIL: 7 of 7 SecretRef(s) have problems, 0 invalid store(s), 0 other object(s) ignored
"#
    );
    assert_no_leak(&out);

    let mut args = words(BROKEN);
    args.extend(["--output", "json"]);
    let out = run(dir.path(), &args, None, &[]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], false);
    let reasons: BTreeMap<String, Vec<String>> = v["secretRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["ok"], false);
            (
                s["name"].as_str().unwrap().to_string(),
                s["problems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p["reason"].as_str().unwrap(),
                            p["field"].as_str().unwrap()
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let expect = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        reasons["bad-fields"],
        expect(&[
            "InvalidSpec spec.refreshInterval",
            "InvalidSpec spec.data[0].secretKey"
        ])
    );
    assert_eq!(
        reasons["invalid-value"],
        expect(&["InvalidValue spec.data[0].validate"])
    );
    assert_eq!(
        reasons["missing-key"],
        expect(&["RemoteKeyNotFound spec.data[0].remoteRef.key"])
    );
    assert_eq!(
        reasons["unknown-store"],
        expect(&["StoreNotFound spec.storeRef"])
    );
    assert_eq!(
        reasons["other-ns"],
        expect(&["NamespaceNotAllowed spec.storeRef"])
    );
    assert_eq!(
        reasons["outside-prefix"],
        expect(&["KeyNotAllowed spec.data[0].remoteRef.key"])
    );
    assert_no_leak(&out);
}

#[test]
fn input_errors_exit_2() {
    let dir = setup();
    let out = run(dir.path(), &["check", "-f", "malformed/"], None, &[]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("malformed/bad.yaml: document 2 (line 11): malformed YAML"),
        "{err}"
    );
    // No SecretRef at all, and a missing file.
    let out = run(
        dir.path(),
        &["check", "-f", "good/namespace.yaml"],
        None,
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no SecretRef"), "{out:?}");
    let out = run(dir.path(), &["render", "-f", "nowhere.yaml"], None, &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("nowhere.yaml"), "{out:?}");
    // A malformed option.
    let out = run(
        dir.path(),
        &["check", "-f", "good/", "--store-override", "x=aws"],
        None,
        &[],
    );
    assert_eq!(code(&out), 2, "{out:?}");
}

#[test]
fn configmap_backed_stores_need_file_store() {
    let dir = setup();
    let quickstart = repo().join("examples/quickstart");
    let qs = quickstart.to_str().unwrap();
    let out = run(
        dir.path(),
        &["check", "-f", qs, "--master-key-file", "master.key"],
        None,
        &[],
    );
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("[InvalidStoreConfig]"), "{text}");
    assert!(text.contains("pass --file-store team-files=PATH"), "{text}");
    let out = run(
        dir.path(),
        &[
            "check",
            "-f",
            qs,
            "--master-key-file",
            "master.key",
            "--file-store",
            "team-files=store.json",
        ],
        None,
        &[],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    // The master key may also come from the environment.
    let key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let out = run(
        dir.path(),
        &[
            "check",
            "-f",
            "good/",
            "--file-store",
            "team-files=store.json",
        ],
        None,
        &[("SECRETSYNC_MASTER_KEY", key.trim())],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    // The ConfigMap's manifest (how GitOps repositories commit the document) serves it too.
    let doc = std::fs::read_to_string(dir.path().join("store.json")).unwrap();
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "team-secrets", "namespace": "demo"},
        "data": {"store.json": doc},
    });
    std::fs::write(dir.path().join("cm.json"), cm.to_string()).unwrap();
    let out = run(
        dir.path(),
        &[
            "check",
            "-f",
            "good/",
            "-f",
            "cm.json",
            "--master-key-file",
            "master.key",
        ],
        None,
        &[],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    // The controller's rule on its own files: a team's SecretStore may not read `file.path` (the
    // controller refuses it), unless it is in the controller's namespace.
    let stores = std::fs::read_to_string(dir.path().join("good/stores.yaml")).unwrap();
    let with_path = stores.replace(
        "configMapRef: {name: team-secrets, key: store.json}",
        "path: store.json",
    );
    assert_ne!(stores, with_path);
    std::fs::write(dir.path().join("good/stores.yaml"), with_path).unwrap();
    let out = run(dir.path(), &words(GOOD), None, &[]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert!(
        stdout(&out).contains("SecretRef/demo/db: spec.storeRef: store \"team-files\": file.path reads the controller's filesystem, which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; use configMapRef [InvalidStoreConfig]"),
        "{out:?}"
    );
    let mut args = words(GOOD);
    args.extend(["--controller-namespace", "demo"]);
    let out = run(dir.path(), &args, None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    // A wrong master key is a store problem naming the reason, never a value.
    let out = run(
        dir.path(),
        &[
            "store",
            "init",
            "--file",
            "other.json",
            "--master-key-file",
            "other.key",
        ],
        None,
        &[],
    );
    assert!(out.status.success());
    let out = run(
        dir.path(),
        &["check", "-f", "good/", "--master-key-file", "other.key"],
        None,
        &[],
    );
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("[AccessDenied]"), "{out:?}");
    assert_no_leak(&out);
}

#[test]
fn env_provider_via_store_override() {
    let dir = setup();
    let value = r#"{"password":"correct-horse-battery"}"#;
    let out = run(
        dir.path(),
        &words(ENV_CHECK),
        None,
        &[("SECRETSYNC_PROD_DB", value)],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "SecretRef/payments/db: OK (Secret \"db\", 1 key(s), SecretStore \"aws-prod\")\n\
         OK: 1 SecretRef(s) resolve, 0 other object(s) ignored\n"
    );
    assert_no_leak(&out);
    // Without the variable: not found, named by its remote key.
    let out = run(dir.path(), &words(ENV_CHECK), None, &[]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains(
            r#"spec.data[0].remoteRef.key: remote key "/prod/db" not found [RemoteKeyNotFound]"#
        ),
        "{out:?}"
    );
    // The override changes where values come from, not which stores the controller accepts: a
    // team's AWS store without auth (the controller's own identity) is refused either way.
    let manifest = std::fs::read_to_string(dir.path().join("env/manifests.yaml")).unwrap();
    let start = manifest.find("      role:").unwrap();
    let end = manifest.find("---").unwrap();
    let ambient = format!("{}{}", &manifest[..start], &manifest[end..]);
    std::fs::write(dir.path().join("env/manifests.yaml"), &ambient).unwrap();
    let out = run(
        dir.path(),
        &words(ENV_CHECK),
        None,
        &[("SECRETSYNC_PROD_DB", value)],
    );
    assert_eq!(code(&out), 1, "{ambient}\n{out:?}");
    assert!(
        stdout(&out).contains("controller's own AWS identity")
            && stdout(&out).contains("[InvalidStoreConfig]"),
        "{out:?}"
    );
    std::fs::write(dir.path().join("env/manifests.yaml"), &manifest).unwrap();
    // Without the override: the aws provider cannot be read offline.
    let out = run(
        dir.path(),
        &["check", "-f", "env/"],
        None,
        &[("SECRETSYNC_PROD_DB", value)],
    );
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("[ProviderUnsupported]"), "{out:?}");
    // Render serves the value.
    let out = run(
        dir.path(),
        &["render", "-f", "env/", "--store-override", "aws-prod=env"],
        None,
        &[("SECRETSYNC_PROD_DB", value)],
    );
    assert_eq!(code(&out), 0, "{out:?}");
    let docs = secrets(&stdout(&out));
    assert_eq!(
        docs[0]["data"]["password"],
        base64::engine::general_purpose::STANDARD.encode(SENTINEL)
    );
}

/// The Secrets of a render output (comment-only documents skipped).
fn secrets(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// What the controller would apply for `sref`: its build step and apply object, over values read
/// from the store.
async fn expected(sref: &SecretRef, provider: &FileProvider, key: &HmacKey) -> serde_json::Value {
    let plan = desired::plan(&sref.spec);
    let mut answers = desired::Answers::default();
    let mut reads = plan.reads.clone();
    for (i, q) in &plan.finds {
        let found = provider.find(q).await.unwrap();
        reads.extend(found.iter().map(|k| RemoteRef::latest(k.clone())));
        answers.found.insert(*i, found);
    }
    for r in reads {
        let v = provider.get(&r).await.unwrap();
        answers.values.insert(r, v);
    }
    let name = sref.metadata.name.clone().unwrap();
    let ns = sref.metadata.namespace.clone().unwrap();
    let d = desired::build(&name, &sref.spec, &answers, &key.for_namespace(&ns)).unwrap();
    let creation = sref
        .spec
        .target
        .as_ref()
        .and_then(|t| t.creation_policy)
        .unwrap_or_default();
    // Offline there is no SecretRef uid, hence no ownership proof.
    let owner = target::Ownership {
        sref_name: name.clone(),
        proof: None,
        claimed_in_status: false,
        adopt_from: None,
    };
    serde_json::to_value(target::apply_object(&d, &ns, &owner, creation, None)).unwrap()
}

#[tokio::test]
async fn render_prints_what_the_controller_would_apply() {
    let dir = setup();
    let hmac = vec![7u8; 32];
    std::fs::write(dir.path().join("hmac.key"), &hmac).unwrap();
    let mut args = words(RENDER);
    args.extend(["--hmac-key-file", "hmac.key"]);
    let out = run(dir.path(), &args, None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    let docs = secrets(&stdout(&out));
    assert_eq!(docs.len(), 2);

    let keyring =
        Keyring::parse(&std::fs::read_to_string(dir.path().join("master.key")).unwrap()).unwrap();
    let provider = FileProvider::open(&dir.path().join("store.json"), keyring).unwrap();
    let text = std::fs::read_to_string(dir.path().join("good/secretrefs.yaml")).unwrap();
    let srefs: Vec<SecretRef> = {
        use serde::Deserialize;
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| SecretRef::deserialize(d).unwrap())
            .collect()
    };
    // Ordered by namespace and name: demo/api, demo/db.
    let key = HmacKey::new(hmac);
    assert_eq!(docs[0], expected(&srefs[1], &provider, &key).await);
    assert_eq!(docs[1], expected(&srefs[0], &provider, &key).await);

    let db = &docs[1];
    assert_eq!(db["apiVersion"], "v1");
    assert_eq!(db["kind"], "Secret");
    assert_eq!(db["metadata"]["name"], "db-credentials");
    assert_eq!(db["metadata"]["namespace"], "demo");
    assert_eq!(
        db["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "secretsync"
    );
    assert_eq!(db["metadata"]["labels"]["secretsync.io/secretref"], "db");
    assert!(db["metadata"]["annotations"]["secretsync.io/data-hmac"].is_string());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(db["data"]["username"], b64("app"));
    assert_eq!(db["data"]["password"], b64(SENTINEL));
    assert_eq!(
        db["data"]["url"],
        b64("postgres://app:correct-horse-battery@db:5432/app")
    );
    assert_eq!(docs[0]["data"]["demo_api_token"], b64("tok-123"));

    // Without an HMAC key the annotation is left out, and a comment says why.
    let out = run(dir.path(), &words(RENDER), None, &[]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(
        text.starts_with("# secretsync.io/data-hmac annotation omitted"),
        "{text}"
    );
    for d in secrets(&text) {
        assert!(d["metadata"].get("annotations").is_none(), "{d}");
    }
}

#[test]
fn render_is_all_or_nothing() {
    let dir = setup();
    let out = run(
        dir.path(),
        &[
            "render",
            "-f",
            "broken/",
            "--master-key-file",
            "master.key",
            "--file-store",
            "team-files=store.json",
        ],
        None,
        &[],
    );
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).is_empty(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("SecretRef/demo/missing-key: spec.data[0].remoteRef.key: remote key \"/demo/missing\" not found [RemoteKeyNotFound]"), "{err}");
    // A value that fails its validate block is refused by render too, naming key and rule.
    assert!(err.contains("SecretRef/demo/invalid-value: spec.data[0].validate: Secret key \"password\" fails validate.minLength 32: the value has 21 bytes [InvalidValue]"), "{err}");
    assert!(err.contains("nothing was printed"), "{err}");
    assert_no_leak(&out);
}

#[test]
fn namespace_labels_come_from_manifests_or_options() {
    let dir = setup();
    let base = [
        "check",
        "-f",
        "good/stores.yaml",
        "-f",
        "good/secretrefs.yaml",
        "--master-key-file",
        "master.key",
        "--file-store",
        "team-files=store.json",
    ];
    // Without the Namespace manifest, the labels of "demo" are unknown: the selector admits nothing.
    let out = run(dir.path(), &base, None, &[]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("SecretRef/demo/api: spec.storeRef: ClusterSecretStore \"shared\" does not admit namespace \"demo\" (the labels of namespace \"demo\" are unknown offline"),
        "{text}"
    );
    assert!(text.contains("[NamespaceNotAllowed]"), "{text}");
    let mut args = base.to_vec();
    args.extend(["--namespace-labels", "demo=team=demo"]);
    let out = run(dir.path(), &args, None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
}

#[test]
fn inline_values_never_reach_error_text() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "apiVersion: secretsync.io/v1alpha1\nkind: SecretStore\nmetadata: {{name: inline, namespace: demo}}\nspec:\n  provider:\n    fake:\n      data:\n        - {{key: /db, value: '{{\"password\":\"{SENTINEL}\"}}'}}\n        - {{key: /n, value: 987654321}}\n---\napiVersion: secretsync.io/v1alpha1\nkind: SecretRef\nmetadata: {{name: db, namespace: demo}}\nspec:\n  storeRef: {{name: inline}}\n  data:\n    - {{secretKey: pw, remoteRef: {{key: /db, property: missing}}}}\n"
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).unwrap();
    let out = run(dir.path(), &["check", "-f", "m.yaml"], None, &[]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    // The store's bad entry (a number where a string is expected) is reported without the number.
    assert!(text.contains("SecretStore/demo/inline: spec: "), "{text}");
    assert!(!text.contains("987654321"), "{text}");
    assert!(text.contains("[InvalidStoreConfig]"), "{text}");
    assert_no_leak(&out);
    // With a valid store, the missing property is reported by the build step, still without values.
    let fixed = std::fs::read_to_string(dir.path().join("m.yaml"))
        .unwrap()
        .replace("        - {key: /n, value: 987654321}\n", "");
    std::fs::write(dir.path().join("m.yaml"), fixed).unwrap();
    let out = run(dir.path(), &["check", "-f", "m.yaml"], None, &[]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert!(
        stdout(&out).contains("spec.data[0].remoteRef.property: "),
        "{out:?}"
    );
    assert!(stdout(&out).contains("[InvalidRemoteValue]"), "{out:?}");
    assert_no_leak(&out);
}

/// A ClusterSecretRef is recognised and validated (not expanded over Namespace manifests): a valid one
/// is counted, not failed; one over a namespaced store is an input error.
#[test]
fn cluster_secretrefs_are_recognised() {
    let dir = setup();
    let csref = |kind: &str| {
        format!(
            "apiVersion: secretsync.io/v1alpha1\nkind: ClusterSecretRef\nmetadata: {{name: registry}}\n\
             spec:\n  namespaces: [demo]\n  template:\n    storeRef: {{name: shared, kind: {kind}}}\n    \
             data: [{{secretKey: k, remoteRef: {{key: /demo/api}}}}]\n"
        )
    };
    std::fs::write(
        dir.path().join("good/csref.yaml"),
        csref("ClusterSecretStore"),
    )
    .unwrap();
    let out = run(dir.path(), &words(GOOD), None, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("note: 1 ClusterSecretRef(s) recognised"),
        "{text}"
    );
    assert!(
        text.ends_with("OK: 2 SecretRef(s) resolve, 1 other object(s) ignored\n"),
        "{text}"
    );
    std::fs::write(dir.path().join("good/csref.yaml"), csref("SecretStore")).unwrap();
    let out = run(dir.path(), &words(GOOD), None, &[]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(
        stderr(&out).contains("ClusterSecretRef/registry"),
        "{out:?}"
    );
}
