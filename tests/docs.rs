//! The `secretsync` commands in `docs/secrets-management.md` still parse: for each command line in a
//! fenced code block, the subcommand exists (`secretsync <subcommand> --help` succeeds) and every flag
//! it uses appears in that subcommand's help.

use std::path::Path;
use std::process::Command;

const GUIDE: &str = "docs/secrets-management.md";

/// Command lines (from `secretsync` up to a pipe, redirection, comment or `;`) in fenced code blocks.
fn commands(markdown: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut joined = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        // Join continuation lines.
        if let Some(l) = line.strip_suffix('\\') {
            joined.push_str(l);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        let full = std::mem::take(&mut joined);
        let tokens: Vec<&str> = full.split_whitespace().collect();
        for (i, t) in tokens.iter().enumerate() {
            if *t != "secretsync"
                || (i > 0
                    && !matches!(tokens[i - 1], "|" | ";" | "&&" | "||" | "$(")
                    && !tokens[i - 1].contains('='))
            {
                continue;
            }
            let cmd: Vec<String> = tokens[i + 1..]
                .iter()
                .take_while(|t| {
                    !matches!(**t, "|" | ";" | "&&" | "||" | ">" | ">>" | "<" | "#")
                        && !t.starts_with('#')
                })
                .map(|t| t.to_string())
                .collect();
            if !cmd.is_empty() {
                out.push(cmd);
            }
        }
    }
    assert!(!in_block, "{GUIDE}: unterminated code block");
    out
}

fn help(path: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subcommands a help text lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn guide_commands_parse() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(GUIDE)).unwrap();
    let cmds = commands(&text);
    assert!(
        cmds.len() >= 8,
        "expected the guide's secretsync commands, found {cmds:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for cmd in &cmds {
        let line = cmd.join(" ");
        // The subcommand path: descend while the next word is a listed subcommand.
        let mut path: Vec<&str> = Vec::new();
        let mut text = help(&[]).expect("secretsync --help");
        for word in cmd {
            if subcommands(&text).iter().any(|s| s == word) {
                path.push(word);
                text = help(&path).unwrap_or_else(|| {
                    panic!(
                        "`secretsync {} --help` failed (from: {line})",
                        path.join(" ")
                    )
                });
            } else {
                break;
            }
        }
        assert!(
            !path.is_empty(),
            "{GUIDE}: `secretsync {line}`: unknown subcommand {:?}",
            cmd[0]
        );
        assert!(
            subcommands(&text).is_empty(),
            "{GUIDE}: `secretsync {line}`: incomplete subcommand"
        );
        for word in &cmd[path.len()..] {
            if !word.starts_with('-') {
                continue;
            }
            let flag = word.split('=').next().unwrap();
            let listed = text
                .split(|c: char| {
                    c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=' || c == '<'
                })
                .any(|t| t == flag);
            assert!(
                listed,
                "{GUIDE}: `secretsync {line}`: flag {flag} is not in `secretsync {} --help`",
                path.join(" ")
            );
        }
        seen.insert(path.join(" "));
    }
    // The guide covers the incident-response and audit commands.
    for must in ["refresh", "audit verify", "store rotate-key", "check"] {
        assert!(
            seen.contains(must),
            "{GUIDE} no longer shows `secretsync {must}` ({seen:?})"
        );
    }
}

#[test]
fn extraction_of_commands() {
    let md = "```bash\necho x | secretsync store put --file s.json NAME   # c\nkubectl -n x get secret secretsync-hmac-key\nsecretsync refresh -n ns \\\n  --store st\n```\nsecretsync outside a block\n";
    let got = commands(md);
    assert_eq!(
        got,
        vec![
            vec!["store", "put", "--file", "s.json", "NAME"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            vec!["refresh", "-n", "ns", "--store", "st"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
        ]
    );
}
