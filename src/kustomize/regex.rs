//! kustomize's regular expressions (Go's `regexp`, RE2 syntax) on the `regex` crate, which is
//! RE2-like and matches in linear time: a pattern from Git cannot hang a build.
//!
//! The two dialects differ in a few places, translated here before compiling so that a pattern
//! means what it means to kustomize: Go's Perl classes (`\d`, `\w`, `\s`, `\b`) are ASCII only,
//! and inside a bracket class Go reads `[`, `&&`, `--` and `~~` literally where the `regex`
//! crate nests classes or combines sets.

use std::fmt;

/// A compiled pattern is at most this big: patterns are names and kinds, and a repetition bomb
/// like `(a{1000}){1000}` must fail at once rather than allocate.
const SIZE_LIMIT: usize = 1 << 20;

/// A pattern that is not a valid regular expression (kustomize fails the build on it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRegex {
    pub pattern: String,
    pub message: String,
}

impl fmt::Display for InvalidRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error parsing regexp: {}: `{}`", self.message, self.pattern)
    }
}

impl std::error::Error for InvalidRegex {}

/// Go's RE2 syntax rewritten for the `regex` crate (see the module comment). `--` inside a class
/// has no sure meaning across the two (Go reads ranges where the crate subtracts sets): refused.
fn translate(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            let Some(escaped) = chars.next() else {
                out.push('\\');
                break;
            };
            let ascii = match (escaped, in_class) {
                ('d', false) => Some("[0-9]"),
                ('D', false) => Some("[^0-9]"),
                ('w', false) => Some("[0-9A-Za-z_]"),
                ('W', false) => Some("[^0-9A-Za-z_]"),
                ('s', false) => Some("[\\t\\n\\f\\r ]"),
                ('S', false) => Some("[^\\t\\n\\f\\r ]"),
                ('b', false) => Some("(?-u:\\b)"),
                ('B', false) => Some("(?-u:\\B)"),
                ('d', true) => Some("0-9"),
                ('w', true) => Some("0-9A-Za-z_"),
                ('s', true) => Some("\\t\\n\\f\\r "),
                _ => None,
            };
            match ascii {
                Some(replacement) => out.push_str(replacement),
                None => {
                    out.push('\\');
                    out.push(escaped);
                }
            }
            continue;
        }
        if !in_class {
            out.push(c);
            if c == '[' {
                in_class = true;
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                // A `]` first in a class is a literal in both dialects.
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str("\\]");
                }
            }
            continue;
        }
        match c {
            ']' => {
                in_class = false;
                out.push(']');
            }
            // A POSIX class `[:alpha:]` is the same in both; any other `[` is a literal in Go.
            '[' if chars.peek() == Some(&':') => {
                out.push('[');
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == ']' {
                        break;
                    }
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if chars.peek() == Some(&'-') => return Err("`--` in a character class".to_owned()),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn compile(anchored: &str, pattern: &str) -> Result<regex::Regex, InvalidRegex> {
    let translated = translate(anchored).map_err(|message| InvalidRegex { pattern: pattern.to_owned(), message })?;
    regex::RegexBuilder::new(&translated).size_limit(SIZE_LIMIT).dfa_size_limit(SIZE_LIMIT).build().map_err(|e| {
        // The crate's message spans several lines with a caret diagram; its last line says what is wrong.
        let message = e.to_string().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern").trim().trim_start_matches("error: ").to_owned();
        InvalidRegex { pattern: pattern.to_owned(), message }
    })
}

/// A target selector's pattern (kind, name, namespace, group, version), anchored as kustomize's
/// `anchorRegex` does: `^(?:pattern)$`.
pub fn whole(pattern: &str) -> Result<regex::Regex, InvalidRegex> {
    let anchored = format!("^(?:{pattern})$");
    compile(&anchored, &anchored)
}

/// An `images:` entry's name as kustomize matches it against an image (`IsImageMatched`): the
/// name, then an optional tag and digest. Not grouped, exactly as kustomize writes it, so an
/// alternation in a name binds as it does there.
pub fn image(name: &str) -> Result<regex::Regex, InvalidRegex> {
    let anchored = format!("^{name}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$");
    compile(&anchored, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(pattern: &str, text: &str) -> bool {
        whole(pattern).map(|r| r.is_match(text)).unwrap_or(false)
    }

    #[test]
    fn whole_names_match() {
        assert!(full("web", "web"));
        assert!(!full("web", "web-1"));
        assert!(full("web-.*", "web-1"));
        assert!(full("Deployment|StatefulSet", "StatefulSet"));
        assert!(!full("Deployment|StatefulSet", "DaemonSet"));
        assert!(full("app-[0-9]+", "app-42"));
        assert!(!full("app-[0-9]+", "app-"));
        assert!(full("(api|web)-v?\\d{1,2}", "web-v12"));
        assert!(full("^a.c$", "abc"));
        assert!(full("[^x]*", "abc"));
        assert!(!full("[^x]*", "axc"));
        assert!(full("a\\.b", "a.b"));
        assert!(!full("a\\.b", "axb"));
        assert!(whole("(a").is_err());
    }

    #[test]
    fn go_dialect_classes_are_ascii_and_brackets_literal() {
        // Go's \d is ASCII: an Arabic-Indic digit is no digit there.
        assert!(!full("\\d", "\u{0663}"));
        assert!(full("[\\d]x", "3x"));
        assert!(!full("\\w+", "é"));
        // `[` and `&&` inside a class are literals in Go, not a nested class or an intersection.
        assert!(full("[a[]", "["));
        assert!(full("[a&&b]", "&"));
        assert!(full("[]a]", "]"));
        assert!(full("[^]a]", "b"));
        assert!(!full("[^]a]", "]"));
        assert!(full("[[:digit:]]+", "42"));
    }

    #[test]
    fn exponential_patterns_finish_at_once() {
        let name = "a".repeat(40);
        // A backtracking matcher takes 2^40 steps here; an automaton takes 40.
        assert!(!full("(a|a)*b", &name));
        assert!(full("(a|a)*", &name));
        assert!(whole("((a{1000}){1000}){1000}").is_err(), "a repetition bomb is refused, not allocated");
    }

    #[test]
    fn image_patterns_are_kustomizes() {
        let nginx = image("nginx").expect("valid");
        assert!(nginx.is_match("nginx"));
        assert!(nginx.is_match("nginx:1.25"));
        assert!(nginx.is_match("nginx@sha256:abc"));
        assert!(nginx.is_match("nginx:1.25@sha256:abc"));
        assert!(!nginx.is_match("nginx-extra"));
        assert!(image("busybox:1.0").expect("valid").is_match("busybox:1.0"));
        let long = format!("nginx:{}", "a".repeat(20_000));
        assert!(nginx.is_match(&long), "a 20,000-character tag is matched without recursion");
        assert!(image("ngi(nx").is_err());
    }
}
