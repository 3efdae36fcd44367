//! A small backtracking matcher for the regular expressions of OpenAPI `pattern`s (Go RE2
//! semantics for the common subset: literals, `.`, classes with ranges and negation, `\d \w \s`
//! and their negations, groups `( )`/`(?: )`, alternation, `* + ? {n} {n,} {n,m}` (lazy
//! suffix accepted), anchors `^ $`; unanchored search otherwise). Patterns using anything else
//! (backreferences do not exist in RE2; `\b`, flags, Unicode classes) are not evaluated.

#[derive(Debug)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>),
}

/// A compiled pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    alts: Vec<Vec<Node>>,
}

const BUDGET: u32 = 200_000;

impl Pattern {
    /// `None` when the pattern uses syntax this matcher does not know.
    pub fn compile(p: &str) -> Option<Pattern> {
        let chars: Vec<char> = p.chars().collect();
        let mut pos = 0;
        let alts = parse_alt(&chars, &mut pos)?;
        (pos == chars.len()).then_some(Pattern { alts })
    }

    /// Whether the pattern matches somewhere in `s`; `None` if matching took too long.
    pub fn is_match(&self, s: &str) -> Option<bool> {
        let text: Vec<char> = s.chars().collect();
        let mut budget = BUDGET;
        for start in 0..=text.len() {
            for seq in &self.alts {
                if m(seq, &text, start, &mut budget, &mut |_, _| true) {
                    return Some(true);
                }
            }
            if budget == 0 {
                return None;
            }
        }
        Some(false)
    }
}

fn parse_alt(p: &[char], pos: &mut usize) -> Option<Vec<Vec<Node>>> {
    let mut alts = vec![parse_seq(p, pos)?];
    while p.get(*pos) == Some(&'|') {
        *pos += 1;
        alts.push(parse_seq(p, pos)?);
    }
    Some(alts)
}

fn parse_seq(p: &[char], pos: &mut usize) -> Option<Vec<Node>> {
    let mut seq = Vec::new();
    while let Some(&c) = p.get(*pos) {
        if c == '|' || c == ')' {
            break;
        }
        *pos += 1;
        let atom = match c {
            '(' => {
                if p.get(*pos) == Some(&'?') {
                    if p.get(*pos + 1) != Some(&':') {
                        return None;
                    }
                    *pos += 2;
                }
                let alts = parse_alt(p, pos)?;
                if p.get(*pos) != Some(&')') {
                    return None;
                }
                *pos += 1;
                Node::Group(alts)
            }
            '[' => parse_class(p, pos)?,
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => {
                let e = *p.get(*pos)?;
                *pos += 1;
                match escape_class(e) {
                    Some((ranges, neg)) => Node::Class(ranges, neg),
                    None if e.is_ascii_alphanumeric() => return None,
                    None => Node::Char(e),
                }
            }
            '*' | '+' | '?' | '{' => return None,
            c => Node::Char(c),
        };
        let atom = parse_quantifier(p, pos, atom)?;
        seq.push(atom);
    }
    Some(seq)
}

fn parse_quantifier(p: &[char], pos: &mut usize, atom: Node) -> Option<Node> {
    let (min, max) = match p.get(*pos) {
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('?') => (0, Some(1)),
        Some('{') => {
            let close = p[*pos..].iter().position(|c| *c == '}')? + *pos;
            let inner: String = p[*pos + 1..close].iter().collect();
            let (lo, hi) = match inner.split_once(',') {
                None => {
                    let n = inner.parse().ok()?;
                    (n, Some(n))
                }
                Some((lo, "")) => (lo.parse().ok()?, None),
                Some((lo, hi)) => (lo.parse().ok()?, Some(hi.parse().ok()?)),
            };
            *pos = close;
            (lo, hi)
        }
        _ => return Some(atom),
    };
    *pos += 1;
    if p.get(*pos) == Some(&'?') {
        *pos += 1;
    }
    if matches!(atom, Node::Start | Node::End) {
        return None;
    }
    Some(Node::Repeat(Box::new(atom), min, max))
}

fn escape_class(e: char) -> Option<(Vec<(char, char)>, bool)> {
    let digit = vec![('0', '9')];
    let word = vec![('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')];
    let space = vec![
        (' ', ' '),
        ('\t', '\t'),
        ('\n', '\n'),
        ('\r', '\r'),
        ('\u{b}', '\u{c}'),
    ];
    Some(match e {
        'd' => (digit, false),
        'D' => (digit, true),
        'w' => (word, false),
        'W' => (word, true),
        's' => (space, false),
        'S' => (space, true),
        _ => return None,
    })
}

fn parse_class(p: &[char], pos: &mut usize) -> Option<Node> {
    let negated = p.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(*pos)?;
        *pos += 1;
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = if c == '\\' {
            let e = *p.get(*pos)?;
            *pos += 1;
            match escape_class(e) {
                Some((rs, false)) => {
                    ranges.extend(rs);
                    continue;
                }
                Some((_, true)) => return None,
                None if e.is_ascii_alphanumeric() => return None,
                None => e,
            }
        } else if c == '[' && p.get(*pos) == Some(&':') {
            return None;
        } else {
            c
        };
        if p.get(*pos) == Some(&'-') && p.get(*pos + 1).is_some_and(|n| *n != ']') {
            let mut hi = p[*pos + 1];
            *pos += 2;
            if hi == '\\' {
                hi = *p.get(*pos)?;
                *pos += 1;
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Some(Node::Class(ranges, negated))
}

/// Match `seq` at `i`, then the continuation `k` at the end position.
fn m(
    seq: &[Node],
    text: &[char],
    i: usize,
    budget: &mut u32,
    k: &mut dyn FnMut(usize, &mut u32) -> bool,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((first, rest)) = seq.split_first() else {
        return k(i, budget);
    };
    let one = |pred: &dyn Fn(char) -> bool| i < text.len() && pred(text[i]);
    match first {
        Node::Char(c) => one(&|t| t == *c) && m(rest, text, i + 1, budget, k),
        Node::Any => one(&|t| t != '\n') && m(rest, text, i + 1, budget, k),
        Node::Class(ranges, neg) => {
            one(&|t| ranges.iter().any(|(lo, hi)| *lo <= t && t <= *hi) != *neg)
                && m(rest, text, i + 1, budget, k)
        }
        Node::Start => i == 0 && m(rest, text, i, budget, k),
        Node::End => i == text.len() && m(rest, text, i, budget, k),
        Node::Group(alts) => alts
            .iter()
            .any(|alt| m(alt, text, i, budget, &mut |j, b| m(rest, text, j, b, k))),
        Node::Repeat(node, min, max) => repeat(node, *min, *max, 0, rest, text, i, budget, k),
    }
}

#[allow(clippy::too_many_arguments)]
fn repeat(
    node: &Node,
    min: u32,
    max: Option<u32>,
    count: u32,
    rest: &[Node],
    text: &[char],
    i: usize,
    budget: &mut u32,
    k: &mut dyn FnMut(usize, &mut u32) -> bool,
) -> bool {
    if max.is_none_or(|mx| count < mx) {
        let more = m(std::slice::from_ref(node), text, i, budget, &mut |j, b| {
            if j == i {
                // an empty iteration: more of them change nothing
                m(rest, text, j, b, k)
            } else {
                repeat(node, min, max, count + 1, rest, text, j, b, k)
            }
        });
        if more {
            return true;
        }
    }
    count >= min && m(rest, text, i, budget, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is(p: &str, s: &str) -> bool {
        Pattern::compile(p).unwrap().is_match(s).unwrap()
    }

    #[test]
    fn crd_patterns() {
        let dur = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$";
        for ok in ["0", "30s", "1h30m", "1.5h", "100ms"] {
            assert!(is(dur, ok), "{ok}");
        }
        for bad in ["", "1", "1x", "h", "1h 2m", "-1s"] {
            assert!(!is(dur, bad), "{bad}");
        }
        let dns = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
        assert!(is(dns, "my-secret.v1"));
        assert!(!is(dns, "My_Secret"));
        assert!(!is(dns, "a-"));
        let key = "^[-._a-zA-Z0-9]+$";
        assert!(is(key, "tls.crt"));
        assert!(!is(key, "a/b"));
        assert!(is("b", "abc"), "unanchored search");
        assert!(is("^a{2,3}$", "aaa") && !is("^a{2,3}$", "aaaa"));
        assert!(is(r"^\d+[^a-c]\w$", "12d_"));
        assert!(is("^(?:a|b)*c?$", "abab"));
        assert!(Pattern::compile(r"\bword").is_none());
        assert!(Pattern::compile("(a").is_none());
    }
}
