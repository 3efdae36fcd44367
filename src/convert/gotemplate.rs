//! ESO's Go templates (engine v2: `text/template` with sprig functions) → secretsync's minijinja
//! templates, for a small supported subset; anything else is refused, never guessed.
//!
//! Supported: literal text; actions `{{ pipeline }}` with the trim markers `{{- ` and ` -}}`;
//! comments `{{/* … */}}`; operands `.key`, `index . "key"`, string literals (`"…"`, `` `…` ``),
//! parenthesised pipelines with field access (`(.cfg | fromJson).host`); the functions `b64enc`,
//! `b64dec`, `upper`, `lower`, `trim`, `quote` (one argument), `toJson`, `fromJson` (only with a
//! field access after it) and `default`. Control structures (`if`, `range`, `with`, …), variables,
//! numbers, other functions and method calls are refused with the reason.
//!
//! Known byte differences (documented in docs/migrate-from-eso.md): `toJson` escapes `'` as
//! `\u0027` here (Go leaves it; both are the same JSON); `upper`/`lower` use Unicode case mapping
//! (Go maps `ß` to itself, Rust to `SS`); numbers read with `fromJson` print without Go's float
//! formatting (`1e+06`).

use std::fmt::Write;

/// Why a template cannot be translated. Messages quote the template's syntax, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// A term of a pipeline.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.a` (a fetched key).
    Field(String),
    /// `.` (only as `index`'s first argument).
    Dot,
    /// A string literal.
    Str(String),
    /// An identifier: a function name.
    Ident(String),
    /// `(pipeline).a.b`.
    Paren(Box<Expr>, Vec<String>),
    /// A call with its arguments (the piped value last).
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Dot,
    Str(String),
    Ident(String),
    Open,
    Close(Vec<String>),
    Pipe,
}

const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// Splits the source into literal text and actions (with their trim markers applied to the text).
fn split(src: &str) -> Result<Vec<(String, Option<String>)>, TemplateError> {
    // (literal text before, action body after it)
    let mut parts: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let text = if trim_next {
                rest.trim_start_matches(WS)
            } else {
                rest
            };
            parts.push((text.to_string(), None));
            break;
        };
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start_matches(WS);
        }
        let mut body_start = start + 2;
        let after = &rest[body_start..];
        if after.starts_with('-') && after[1..].starts_with(WS) {
            text = text.trim_end_matches(WS);
            body_start += 1;
        }
        let (body_len, close_len, trim_right) = find_close(&rest[body_start..])?;
        let body = rest[body_start..body_start + body_len].to_string();
        parts.push((text.to_string(), Some(body)));
        trim_next = trim_right;
        rest = &rest[body_start + body_len + close_len..];
    }
    Ok(parts)
}

/// Finds the end of an action: `(body length, closing length, trims right)`; skips strings and
/// comments.
fn find_close(s: &str) -> Result<(usize, usize, bool), TemplateError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if s[i..].starts_with("/*") => match s[i..].find("*/") {
                Some(e) => i += e + 1,
                None => return err("unclosed comment"),
            },
            b'}' if s[i..].starts_with("}}") => {
                let body = &s[..i];
                if body.ends_with('-') && body[..body.len() - 1].ends_with(WS) {
                    return Ok((i - 1, 3, true));
                }
                return Ok((i, 2, false));
            }
            _ => {}
        }
        i += 1;
    }
    err("unclosed action: missing }}")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(body: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let fields = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut names = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                break;
            }
            names.push(chars[start..j].iter().collect());
            *i = j;
        }
        names
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                toks.push(Tok::Close(fields(&chars, &mut i)));
            }
            '.' => {
                let names = fields(&chars, &mut i);
                if names.is_empty() {
                    i += 1;
                    if i < chars.len() && !WS.contains(&chars[i]) && chars[i] != ')' {
                        return err("unsupported syntax after `.`");
                    }
                    toks.push(Tok::Dot);
                } else {
                    toks.push(Tok::Field(names));
                }
            }
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return err("unterminated string");
                }
                let lit: String = chars[i..=j].iter().collect();
                toks.push(Tok::Str(unquote_go(&lit)?));
                i = j + 1;
            }
            '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '`' {
                    j += 1;
                }
                if j >= chars.len() {
                    return err("unterminated raw string");
                }
                toks.push(Tok::Str(chars[i + 1..j].iter().collect()));
                i = j + 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
                if i < chars.len() && chars[i] == '.' {
                    return err("method and field calls on functions are not supported");
                }
            }
            '$' => return err("template variables ($x) are not supported"),
            c if c.is_ascii_digit() || c == '-' => {
                return err("number literals are not supported");
            }
            other => return err(format!("unsupported character {other:?} in an action")),
        }
    }
    Ok(toks)
}

/// A Go interpreted string literal (`"a\n"`) to its value.
fn unquote_go(lit: &str) -> Result<String, TemplateError> {
    let inner = &lit[1..lit.len() - 1];
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            _ => return err("unsupported escape in a string literal"),
        }
    }
    Ok(out)
}

const CONTROL: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    "nil", "true", "false",
];

/// The functions translated, and the minijinja filter each becomes.
const FUNCTIONS: &[(&str, usize)] = &[
    ("b64enc", 1),
    ("b64dec", 1),
    ("upper", 1),
    ("lower", 1),
    ("trim", 1),
    ("quote", 1),
    ("toJson", 1),
    ("fromJson", 1),
    ("default", 2),
    ("index", 2),
];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    /// pipeline := command ('|' command)*
    fn pipeline(&mut self) -> Result<Expr, TemplateError> {
        let mut value = self.command(None)?;
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            value = self.command(Some(value))?;
        }
        Ok(value)
    }

    fn command(&mut self, piped: Option<Expr>) -> Result<Expr, TemplateError> {
        let mut terms = Vec::new();
        while let Some(t) = self.peek() {
            if matches!(t, Tok::Pipe | Tok::Close(_)) {
                break;
            }
            terms.push(self.term()?);
        }
        let Some(first) = terms.first().cloned() else {
            return err("empty command");
        };
        match first {
            Expr::Ident(name) => {
                if CONTROL.contains(&name.as_str()) {
                    return err(format!("`{name}` is not supported (no control structures)"));
                }
                let Some((_, arity)) = FUNCTIONS.iter().find(|(f, _)| *f == name) else {
                    return err(format!("function `{name}` is not supported"));
                };
                let mut args: Vec<Expr> = terms[1..].to_vec();
                args.extend(piped);
                if args.len() != *arity {
                    return err(format!(
                        "`{name}` takes {arity} argument(s) here, got {}",
                        args.len()
                    ));
                }
                if args.iter().any(|a| matches!(a, Expr::Ident(_))) {
                    return err("a function name used as an argument");
                }
                Ok(Expr::Call(name, args))
            }
            other => {
                if terms.len() > 1 || piped.is_some() {
                    return err("only functions can take arguments or piped values");
                }
                Ok(other)
            }
        }
    }

    fn term(&mut self) -> Result<Expr, TemplateError> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match t {
            Some(Tok::Field(names)) => {
                if names.len() > 1 {
                    return err("nested field access on a fetched value is not supported");
                }
                Ok(Expr::Field(names.into_iter().next().unwrap_or_default()))
            }
            Some(Tok::Dot) => Ok(Expr::Dot),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Ident(s)) => Ok(Expr::Ident(s)),
            Some(Tok::Open) => {
                let inner = self.pipeline()?;
                match self.toks.get(self.pos).cloned() {
                    Some(Tok::Close(names)) => {
                        self.pos += 1;
                        Ok(Expr::Paren(Box::new(inner), names))
                    }
                    _ => err("unbalanced parentheses"),
                }
            }
            _ => err("unexpected token"),
        }
    }
}

fn parse_action(body: &str) -> Result<Option<Expr>, TemplateError> {
    let trimmed = body.trim_matches(WS);
    if trimmed.starts_with("/*") {
        if trimmed.ends_with("*/") {
            return Ok(None);
        }
        return err("a comment must fill its action");
    }
    let mut p = Parser {
        toks: lex(body)?,
        pos: 0,
    };
    let e = p.pipeline()?;
    if p.pos != p.toks.len() {
        return err("unbalanced parentheses");
    }
    Ok(Some(e))
}

/// Whether `name` can be a bare minijinja variable (otherwise `data["name"]`).
fn bare_ok(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "data", "data_b64", "true", "false", "none", "True", "False", "None", "and", "or", "not",
        "in", "is", "if", "else", "loop", "self",
    ];
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(is_ident_char)
        && !RESERVED.contains(&name)
}

fn literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn var(name: &str) -> Result<String, TemplateError> {
    if name == "data" || name == "data_b64" {
        return err(format!(
            "a fetched key named {name:?} cannot be referenced (the name is a template variable here)"
        ));
    }
    Ok(if bare_ok(name) {
        name.to_string()
    } else {
        format!("data[{}]", literal(name))
    })
}

fn emit(e: &Expr, top: bool) -> Result<String, TemplateError> {
    Ok(match e {
        Expr::Field(f) => var(f)?,
        Expr::Str(s) => literal(s),
        Expr::Dot => return err("`.` is supported only as `index . \"key\"`"),
        Expr::Ident(f) => return err(format!("function `{f}` used as a value")),
        Expr::Paren(inner, names) => {
            if names.is_empty() {
                emit(inner, top)?
            } else {
                if !matches!(inner.as_ref(), Expr::Call(f, _) if f == "fromJson") {
                    return err("field access is supported only on the result of fromJson");
                }
                let mut s = format!("({})", emit(inner, false)?);
                for n in names {
                    let _ = write!(s, "[{}]", literal(n));
                }
                s
            }
        }
        Expr::Call(f, args) => {
            let a = |i: usize| -> Result<String, TemplateError> {
                args.get(i)
                    .map(|x| emit(x, false))
                    .unwrap_or_else(|| err("missing argument"))
            };
            match f.as_str() {
                "index" => match (&args[..], args.get(1)) {
                    ([Expr::Dot, _], Some(Expr::Str(k))) => var(k)?,
                    _ => return err("only `index . \"key\"` is supported"),
                },
                "default" => format!("({} | default({}, true))", a(1)?, a(0)?),
                "fromJson" if top => {
                    return err(
                        "printing a whole fromJson result is not supported (Go prints map[...]); access a field",
                    );
                }
                other => {
                    let filter = match other {
                        "b64enc" => "b64encode",
                        "b64dec" => "b64decode",
                        "toJson" => "tojson",
                        "fromJson" => "fromjson",
                        same => same,
                    };
                    format!("({} | {filter})", a(0)?)
                }
            }
        }
    })
}

/// Translates one ESO (engine v2) template to a secretsync minijinja template that renders the
/// same bytes for the supported subset (see the module docs).
pub fn translate(src: &str) -> Result<String, TemplateError> {
    let mut out = String::new();
    for (text, action) in split(src)? {
        push_text(&mut out, &text);
        if let Some(body) = action
            && let Some(e) = parse_action(&body)?
        {
            let _ = write!(out, "{{{{ {} }}}}", emit(&e, true)?);
        }
    }
    // minijinja drops one trailing newline of a template (Jinja2's keep_trailing_newline=False);
    // Go keeps it: write it as an expression.
    if out.ends_with('\n') {
        out.pop();
        out.push_str("{{ \"\\n\" }}");
    }
    Ok(out)
}

/// Literal text: as is, unless it could be read as minijinja syntax (`{`, e.g. `{%`, `{#`).
fn push_text(out: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if text.contains('{') || (out.ends_with('{') && !text.is_empty()) {
        let _ = write!(out, "{{{{ {} }}}}", literal(text));
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_the_supported_subset() {
        let t = |s: &str| translate(s).unwrap();
        assert_eq!(t("{{ .password }}"), "{{ password }}");
        assert_eq!(
            t("{{ .password | b64enc }}"),
            "{{ (password | b64encode) }}"
        );
        assert_eq!(
            t("{{ .password | b64enc | b64dec }}"),
            "{{ ((password | b64encode) | b64decode) }}"
        );
        assert_eq!(
            t("u={{ index . \"api-key\" }}"),
            "u={{ data[\"api-key\"] }}"
        );
        assert_eq!(
            t("{{ .x | default \"d\" }}"),
            "{{ (x | default(\"d\", true)) }}"
        );
        assert_eq!(
            t("{{ default \"d\" .x }}"),
            "{{ (x | default(\"d\", true)) }}"
        );
        assert_eq!(
            t("{{ (.cfg | fromJson).host }}"),
            "{{ ((cfg | fromjson))[\"host\"] }}"
        );
        assert_eq!(t("a\n  {{- .x -}}  \nb"), "a{{ x }}b");
        assert_eq!(t("{{/* note */}}x\n"), "x{{ \"\\n\" }}");
        assert_eq!(t("{% raw %}"), "{{ \"{% raw %}\" }}");
    }

    #[test]
    fn refuses_what_it_cannot_translate() {
        for src in [
            "{{ if .x }}a{{ end }}",
            "{{ range .x }}{{ end }}",
            "{{ $x := .a }}",
            "{{ .a | sha256sum }}",
            "{{ printf \"%s\" .a }}",
            "{{ .a | fromJson }}",
            "{{ .a.b }}",
            "{{ .data }}",
            "{{ 1 }}",
            "{{ .a",
        ] {
            assert!(translate(src).is_err(), "{src}");
        }
    }

    /// For the supported subset, a translated template renders the same bytes with secretsync's
    /// renderer as Go's text/template with sprig would: checked against a small reference
    /// evaluator of Go's semantics, over random templates and values.
    mod equivalence {
        use std::collections::BTreeMap;

        use base64::Engine;
        use proptest::prelude::*;

        use super::super::translate;
        use crate::controller::template::render;
        use crate::value::SecretBytes;

        const KEYS: &[&str] = &["a", "b_c", "my-key", "x1"];

        #[derive(Debug, Clone)]
        enum P {
            Field(usize),
            Str(String),
            F1(&'static str, Box<P>, bool),
            B64RoundTrip(Box<P>),
            Default(String, Box<P>, bool),
        }

        #[derive(Debug, Clone)]
        enum Seg {
            Lit(String),
            Act(P, bool, bool),
        }

        fn text() -> impl Strategy<Value = String> {
            // Printable ASCII without `'` (see the module docs), plus tab and newline.
            proptest::collection::vec(
                prop_oneof![
                    8 => proptest::char::range(' ', '&'),
                    8 => proptest::char::range('(', '~'),
                    1 => Just('\n'),
                    1 => Just('\t'),
                ],
                0..12,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        fn literal() -> impl Strategy<Value = String> {
            text().prop_map(|s| {
                // Go would read `{{` as an action (and a trailing `{` before one).
                let mut s = s.replace('{', "(");
                if s.is_empty() {
                    s.push('.');
                }
                s
            })
        }

        fn pipeline() -> impl Strategy<Value = P> {
            let leaf = prop_oneof![(0..KEYS.len()).prop_map(P::Field), text().prop_map(P::Str),];
            leaf.prop_recursive(4, 16, 2, |inner| {
                prop_oneof![
                    (
                        prop_oneof![
                            Just("b64enc"),
                            Just("upper"),
                            Just("lower"),
                            Just("trim"),
                            Just("quote"),
                            Just("toJson"),
                        ],
                        inner.clone(),
                        any::<bool>()
                    )
                        .prop_map(|(f, p, piped)| P::F1(f, Box::new(p), piped)),
                    inner.clone().prop_map(|p| P::B64RoundTrip(Box::new(p))),
                    (text(), inner, any::<bool>()).prop_map(|(d, p, piped)| P::Default(
                        d,
                        Box::new(p),
                        piped
                    )),
                ]
            })
        }

        fn go_str(s: &str) -> String {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\t' => o.push_str("\\t"),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }

        fn source(p: &P) -> String {
            match p {
                P::Field(i) if KEYS[*i].contains('-') => format!("index . {}", go_str(KEYS[*i])),
                P::Field(i) => format!(".{}", KEYS[*i]),
                P::Str(s) => go_str(s),
                P::F1(f, x, true) => format!("{} | {f}", source(x)),
                P::F1(f, x, false) => format!("{f} ({})", source(x)),
                P::B64RoundTrip(x) => format!("{} | b64enc | b64dec", source(x)),
                P::Default(d, x, true) => format!("{} | default {}", source(x), go_str(d)),
                P::Default(d, x, false) => format!("default {} ({})", go_str(d), source(x)),
            }
        }

        /// Go's `%q` for the generated alphabet.
        fn go_quote(s: &str) -> String {
            go_str(s)
        }

        /// Go's `json.Marshal` of a string (HTML-escaping `<`, `>`, `&`).
        fn go_json(s: &str) -> String {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\t' => o.push_str("\\t"),
                    '<' => o.push_str("\\u003c"),
                    '>' => o.push_str("\\u003e"),
                    '&' => o.push_str("\\u0026"),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }

        /// The reference: what Go's text/template + sprig produce.
        fn eval(p: &P, vals: &BTreeMap<&str, String>) -> String {
            match p {
                P::Field(i) => vals[KEYS[*i]].clone(),
                P::Str(s) => s.clone(),
                P::F1(f, x, _) => {
                    let v = eval(x, vals);
                    match *f {
                        "b64enc" => base64::engine::general_purpose::STANDARD.encode(v),
                        "upper" => v.to_ascii_uppercase(),
                        "lower" => v.to_ascii_lowercase(),
                        "trim" => v.trim_matches([' ', '\t', '\n', '\r']).to_string(),
                        "quote" => go_quote(&v),
                        "toJson" => go_json(&v),
                        other => unreachable!("{other}"),
                    }
                }
                P::B64RoundTrip(x) => eval(x, vals),
                P::Default(d, x, _) => {
                    let v = eval(x, vals);
                    if v.is_empty() { d.clone() } else { v }
                }
            }
        }

        fn segments() -> impl Strategy<Value = Vec<Seg>> {
            proptest::collection::vec(
                prop_oneof![
                    literal().prop_map(Seg::Lit),
                    (pipeline(), any::<bool>(), any::<bool>())
                        .prop_map(|(p, l, r)| Seg::Act(p, l, r)),
                ],
                1..6,
            )
            .prop_map(merged)
        }

        fn go_source(segs: &[Seg]) -> String {
            segs.iter()
                .map(|s| match s {
                    Seg::Lit(t) => t.clone(),
                    Seg::Act(p, l, r) => format!(
                        "{{{{{} {} {}}}}}",
                        if *l { "-" } else { "" },
                        source(p),
                        if *r { "-" } else { "" }
                    ),
                })
                .collect()
        }

        /// Adjacent literals are one literal in Go.
        fn merged(segs: Vec<Seg>) -> Vec<Seg> {
            let mut out: Vec<Seg> = Vec::new();
            for s in segs {
                match (out.last_mut(), s) {
                    (Some(Seg::Lit(a)), Seg::Lit(b)) => a.push_str(&b),
                    (_, s) => out.push(s),
                }
            }
            out
        }

        fn expected(segs: &[Seg], vals: &BTreeMap<&str, String>) -> String {
            const WS: &[char] = &[' ', '\t', '\r', '\n'];
            let mut out = String::new();
            for (i, s) in segs.iter().enumerate() {
                match s {
                    Seg::Lit(t) => {
                        let mut t = t.as_str();
                        if i > 0 && matches!(segs[i - 1], Seg::Act(_, _, true)) {
                            t = t.trim_start_matches(WS);
                        }
                        if matches!(segs.get(i + 1), Some(Seg::Act(_, true, _))) {
                            t = t.trim_end_matches(WS);
                        }
                        out.push_str(t);
                    }
                    Seg::Act(p, _, _) => out.push_str(&eval(p, vals)),
                }
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn translated_templates_render_like_go(
                segs in segments(),
                values in proptest::collection::vec(text(), KEYS.len()),
            ) {
                let vals: BTreeMap<&str, String> =
                    KEYS.iter().copied().zip(values.iter().cloned()).collect();
                let src = go_source(&segs);
                let tpl = translate(&src).map_err(|e| TestCaseError::fail(format!("{src:?}: {e}")))?;
                let secret: BTreeMap<String, SecretBytes> = vals
                    .iter()
                    .map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_str())))
                    .collect();
                let got = render(&[("k".to_string(), tpl.clone())].into(), &secret)
                    .map_err(|e| TestCaseError::fail(format!("{src:?} -> {tpl:?}: {e}")))?;
                let got = String::from_utf8(got["k"].expose().to_vec()).unwrap_or_default();
                prop_assert_eq!(got, expected(&segs, &vals), "Go source {:?} -> {:?}", src, tpl);
            }
        }
    }
}
