//! One set of reasons everywhere: the `Reason` enum (what the controller reports), the reason table
//! of `docs/api.md` (what users read) and the Argo CD health check `deploy/argocd/secretref-health.lua`
//! (which reasons are transient) agree, reason by reason.

use std::collections::BTreeSet;
use std::path::Path;

use secretsync::api::Reason;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `(reason, transient)` rows of the table in docs/api.md.
fn documented() -> Vec<(String, bool)> {
    read("docs/api.md")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[3] == "yes")
        })
        .collect()
}

/// The keys of the `transient` table of the Lua health check.
fn lua_transient() -> BTreeSet<String> {
    let lua = read("deploy/argocd/secretref-health.lua");
    let start = lua.find("local transient = {").expect("transient table");
    let body = &lua[start..];
    let body = &body[..body.find('}').expect("end of table")];
    body.lines()
        .filter_map(|l| {
            l.trim()
                .strip_suffix("= true,")
                .map(|k| k.trim().to_string())
        })
        .collect()
}

#[test]
fn the_docs_list_every_reason_with_its_kind() {
    let docs = documented();
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    let enum_names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names, enum_names,
        "docs/api.md's reason table and the Reason enum differ"
    );
    for (name, transient) in &docs {
        let r = Reason::parse(name).unwrap();
        assert_eq!(
            *transient,
            r.is_transient(),
            "{name}: docs/api.md says transient = {transient}"
        );
    }
}

#[test]
fn the_argo_cd_health_check_knows_the_transient_reasons() {
    let want: BTreeSet<String> = Reason::ALL
        .iter()
        .filter(|r| r.is_transient())
        .map(|r| r.as_str().to_string())
        .collect();
    assert_eq!(lua_transient(), want);
}
