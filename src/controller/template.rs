//! `target.template`: minijinja templates over the fetched values, with pure functions only.
//!
//! The environment has no loader (no `include`/`import` of files), no network or API access, and a
//! fuel limit so a template cannot loop forever. Error messages carry the template's key, the error
//! kind and line, never a value.

use std::collections::BTreeMap;

use base64::Engine;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::value::SecretBytes;

/// Fuel: a bound on the work one template may do.
const FUEL: u64 = 200_000;
/// Largest output of one template.
const MAX_OUTPUT: usize = 1024 * 1024;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // Stricter than Jinja2's `urlencode` (which keeps '/'): credentials in URLs need every reserved
    // character encoded, so only RFC 3986 unreserved characters stay as they are.
    env.add_filter("urlencode", |s: String| {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        percent_encoding::utf8_percent_encode(&s, SET).to_string()
    });
    env.add_filter("b64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    });
    env.add_filter("b64decode", |s: String| -> Result<String, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim().as_bytes())
            .map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "b64decode: input is not base64",
                )
            })?;
        String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                "b64decode: result is not UTF-8",
            )
        })
    });
    // Go's `%q` (sprig `quote`), for templates converted from External Secrets Operator.
    env.add_filter("quote", |s: String| go_quote(&s));
    env.add_filter("fromjson", |s: String| -> Result<Value, Error> {
        serde_json::from_str::<serde_json::Value>(&s)
            .map(|v| Value::from(minijinja::value::Serde(v)))
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "fromjson: input is not JSON"))
    });
    env
}

/// A string quoted like Go's `strconv.Quote` (`%q`): `"` and `\\` escaped, `\n`/`\t`/... as
/// escapes, other control characters as `\xNN` / `\uNNNN`, printable characters as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn describe(key: &str, e: &Error) -> String {
    crate::api::syntax::describe_template_error(key, e)
}

/// Checks that a template parses (for validation before any value is fetched).
pub fn check_syntax(key: &str, source: &str) -> Result<(), String> {
    crate::api::syntax::template(key, source)
}

/// Renders every template over `values` (Secret key → value). Non-UTF-8 values are available only
/// through `data` as base64 (`data_b64`), never as broken text.
pub fn render(
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, String> {
    let env = environment();
    let mut ctx = BTreeMap::new();
    let mut data = BTreeMap::new();
    let mut data_b64 = BTreeMap::new();
    for (k, v) in values {
        data_b64.insert(
            k.clone(),
            Value::from(base64::engine::general_purpose::STANDARD.encode(v.expose())),
        );
        if let Some(s) = v.expose_str() {
            ctx.insert(k.clone(), Value::from(s));
            data.insert(k.clone(), Value::from(s));
        }
    }
    ctx.insert(
        "data".to_string(),
        Value::from(minijinja::value::Serde(&data)),
    );
    ctx.insert(
        "data_b64".to_string(),
        Value::from(minijinja::value::Serde(&data_b64)),
    );
    let ctx = Value::from(minijinja::value::Serde(&ctx));
    let mut out = BTreeMap::new();
    for (key, source) in templates {
        let tpl = env
            .template_from_str(source)
            .map_err(|e| describe(key, &e))?;
        let rendered = tpl.render(&ctx).map_err(|e| describe(key, &e))?;
        if rendered.len() > MAX_OUTPUT {
            return Err(format!("template for key {key:?} produced more than 1 MiB"));
        }
        out.insert(key.clone(), SecretBytes::from_string(rendered));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretBytes> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::from(*v)))
            .collect()
    }

    fn tpl(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_urls_with_filters() {
        let out = render(
            &tpl(&[(
                "url",
                "postgres://{{ username }}:{{ password | urlencode }}@db:5432/app",
            )]),
            &vals(&[("username", "app"), ("password", "p@ss/word")]),
        )
        .unwrap();
        assert_eq!(
            out["url"].expose(),
            b"postgres://app:p%40ss%2Fword@db:5432/app"
        );
    }

    #[test]
    fn json_and_base64_helpers() {
        let out = render(
            &tpl(&[
                ("a", "{{ (cfg | fromjson).host }}"),
                ("b", "{{ x | b64encode }}"),
                ("c", "{{ 'aGk=' | b64decode }}"),
            ]),
            &vals(&[("cfg", r#"{"host":"h1"}"#), ("x", "hi")]),
        )
        .unwrap();
        assert_eq!(out["a"].expose(), b"h1");
        assert_eq!(out["b"].expose(), b"aGk=");
        assert_eq!(out["c"].expose(), b"hi");
    }

    #[test]
    fn undefined_variables_fail_without_values() {
        let e = render(
            &tpl(&[("k", "{{ nope }}")]),
            &vals(&[("password", "sentinel-xyz")]),
        )
        .unwrap_err();
        assert!(e.contains("\"k\""), "{e}");
        assert!(!e.contains("sentinel"), "{e}");
    }

    #[test]
    fn errors_on_values_do_not_leak_them() {
        let e = render(
            &tpl(&[("k", "{{ password | int + [] }}")]),
            &vals(&[("password", "sentinel-xyz")]),
        )
        .unwrap_err();
        assert!(!e.contains("sentinel"), "{e}");
        let e = render(
            &tpl(&[("k", "{{ password | fromjson }}")]),
            &vals(&[("password", "sentinel-xyz")]),
        )
        .unwrap_err();
        assert!(!e.contains("sentinel"), "{e}");
    }

    #[test]
    fn no_file_access_and_bounded_loops() {
        assert!(render(&tpl(&[("k", "{% include '/etc/passwd' %}")]), &vals(&[])).is_err());
        assert!(render(&tpl(&[("k", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")]), &vals(&[])).is_err());
    }

    #[test]
    fn syntax_errors_are_reported_before_fetching() {
        assert!(check_syntax("k", "{{ unclosed").is_err());
        assert!(check_syntax("k", "ok {{ a }}").is_ok());
    }
}
