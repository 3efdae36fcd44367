//! The small languages inside a spec: JSON property paths (`remoteRef.property`), search patterns
//! (`find.name.regexp`) and templates (`target.template.data`). Validation checks them here before
//! anything is read, and the code that evaluates them parses them here too, so the two never
//! disagree. Messages name constructs, never values.

/// A malformed property path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("property path {path:?} is malformed: {why}")]
pub struct PathError {
    /// The path.
    pub path: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Longest property path accepted.
const MAX_PATH: usize = 1024;

/// Splits a dotted property path into segments: `db.password`, `hosts.0`, `a\.b` (`\.` is a literal
/// dot, `\\` a backslash).
pub fn property_path(path: &str) -> Result<Vec<String>, PathError> {
    let bad = |why| PathError {
        path: path.to_string(),
        why,
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > MAX_PATH {
        return Err(bad("longer than 1024 characters"));
    }
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('.' | '\\')) => cur.push(n),
                _ => return Err(bad("a backslash must escape '.' or '\\'")),
            },
            '.' => {
                if cur.is_empty() {
                    return Err(bad("empty segment"));
                }
                segs.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err(bad("empty segment"));
    }
    segs.push(cur);
    Ok(segs)
}

/// Compiles a `find.name.regexp`, bounded in size so a hostile pattern cannot exhaust memory.
pub fn name_regexp(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("find.name.regexp: {e}"))
}

/// Compiles a `validate.pattern`: anchored at both ends (the whole value must match), over bytes,
/// bounded in size like [`name_regexp`].
pub fn value_pattern(pattern: &str) -> Result<regex::bytes::Regex, String> {
    let build = |p: &str| {
        regex::bytes::RegexBuilder::new(p)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| match e {
                // The parser's message spans lines (the pattern, a caret, the error): keep the error.
                regex::Error::Syntax(s) => format!(
                    "not a valid regular expression (RE2 syntax): {}",
                    s.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim().trim_start_matches("error: "))
                        .unwrap_or("syntax error")
                ),
                regex::Error::CompiledTooBig(_) => {
                    "the regular expression is too large".to_string()
                }
                _ => "not a valid regular expression".to_string(),
            })
    };
    build(pattern)?;
    build(&format!(r"\A(?:{pattern})\z"))
}

/// Checks that the template of Secret key `key` parses. Filters are resolved when it renders, so
/// parsing needs no environment beyond the default syntax.
pub fn template(key: &str, source: &str) -> Result<(), String> {
    minijinja::Environment::new()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe_template_error(key, &e))
}

/// A template error as text: its kind, line and, for syntax and undefined-name errors, the
/// engine's detail (which names template constructs). Other details could quote a value, so they
/// are dropped.
pub fn describe_template_error(key: &str, e: &minijinja::Error) -> String {
    use minijinja::ErrorKind;
    let detail = match e.kind() {
        ErrorKind::SyntaxError
        | ErrorKind::UndefinedError
        | ErrorKind::UnknownFilter
        | ErrorKind::UnknownFunction
        | ErrorKind::UnknownTest => e.detail().map(|d| format!(": {d}")).unwrap_or_default(),
        _ => String::new(),
    };
    let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
    format!(
        "template for key {key:?} failed: {}{detail}{line}",
        e.kind()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_paths() {
        assert_eq!(property_path("db.password").unwrap(), ["db", "password"]);
        assert_eq!(property_path(r"a\.b.c").unwrap(), ["a.b", "c"]);
        assert_eq!(property_path(r"a\\").unwrap(), [r"a\"]);
        for bad in ["", "a..b", ".a", "a.", r"a\x", &"x".repeat(1025)] {
            assert!(property_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_and_patterns() {
        assert!(template("k", "{{ a | urlencode }}").is_ok());
        let e = template("k", "{{ a ").unwrap_err();
        assert!(
            e.starts_with("template for key \"k\" failed: syntax error"),
            "{e}"
        );
        assert!(name_regexp("^db-").is_ok());
        assert!(
            name_regexp("(")
                .unwrap_err()
                .starts_with("find.name.regexp: ")
        );
    }
}
