//! The regular expressions of kustomize's patch targets (Go's RE2 syntax, matched against the
//! whole name): literals, `.`, classes, groups, alternation and the usual quantifiers. A small
//! backtracking matcher is enough for names and kinds.

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class { negated: bool, items: Vec<(char, char)> },
    Group(Vec<Vec<Piece>>),
    Start,
    End,
}

#[derive(Debug, Clone)]
struct Piece {
    node: Node,
    min: usize,
    max: Option<usize>,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    alternatives: Vec<Vec<Piece>>,
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
}

fn class_escape(c: char) -> Option<Vec<(char, char)>> {
    match c {
        'd' => Some(vec![('0', '9')]),
        'w' => Some(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]),
        's' => Some(vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r'), ('\u{c}', '\u{c}'), ('\u{b}', '\u{b}')]),
        _ => None,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    fn alternatives(&mut self) -> Result<Vec<Vec<Piece>>, String> {
        let mut alternatives = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.at += 1;
            alternatives.push(self.sequence()?);
        }
        Ok(alternatives)
    }

    fn sequence(&mut self) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let node = self.atom()?;
            let (min, max) = self.quantifier()?;
            pieces.push(Piece { node, min, max });
        }
        Ok(pieces)
    }

    fn atom(&mut self) -> Result<Node, String> {
        match self.next() {
            Some('.') => Ok(Node::Any),
            Some('^') => Ok(Node::Start),
            Some('$') => Ok(Node::End),
            Some('(') => {
                if self.chars[self.at..].starts_with(&['?', ':']) {
                    self.at += 2;
                }
                let group = self.alternatives()?;
                if self.next() != Some(')') {
                    return Err("missing ')'".into());
                }
                Ok(Node::Group(group))
            }
            Some('[') => self.class(),
            Some('\\') => {
                let c = self.next().ok_or("trailing '\\'")?;
                Ok(match class_escape(c) {
                    Some(items) => Node::Class { negated: false, items },
                    None => Node::Char(c),
                })
            }
            Some(c @ ('*' | '+' | '?')) => Err(format!("missing argument to repetition operator '{c}'")),
            Some(c) => Ok(Node::Char(c)),
            None => Err("unexpected end".into()),
        }
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.next().ok_or("missing ']'")?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = if c == '\\' {
                let e = self.next().ok_or("trailing '\\'")?;
                if let Some(class) = class_escape(e) {
                    items.extend(class);
                    continue;
                }
                e
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|c| *c != ']') {
                self.at += 1;
                let high = self.next().ok_or("missing ']'")?;
                items.push((low, high));
            } else {
                items.push((low, low));
            }
        }
        Ok(Node::Class { negated, items })
    }

    fn quantifier(&mut self) -> Result<(usize, Option<usize>), String> {
        let bounds = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let close = self.chars[self.at..].iter().position(|c| *c == '}').ok_or("missing '}'")?;
                let inside: String = self.chars[self.at + 1..self.at + close].iter().collect();
                let (min, max) = match inside.split_once(',') {
                    Some((min, "")) => (min.parse().map_err(|_| "bad repetition")?, None),
                    Some((min, max)) => (min.parse().map_err(|_| "bad repetition")?, Some(max.parse().map_err(|_| "bad repetition")?)),
                    None => {
                        let n = inside.parse().map_err(|_| "bad repetition")?;
                        (n, Some(n))
                    }
                };
                self.at += close;
                (min, max)
            }
            _ => return Ok((1, Some(1))),
        };
        self.at += 1;
        // A lazy marker changes nothing for a whole-string match.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        Ok(bounds)
    }
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parser = Parser { chars: &chars, at: 0 };
        let alternatives = parser.alternatives().map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))?;
        if parser.at < chars.len() {
            return Err(format!("invalid regular expression {pattern:?}: unexpected ')'"));
        }
        Ok(Regex { alternatives })
    }

    /// Whether the whole of `text` matches.
    pub fn is_full_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut accept = |at: usize| at == chars.len();
        match_alternatives(&self.alternatives, &chars, 0, &mut accept)
    }
}

fn match_alternatives(alternatives: &[Vec<Piece>], text: &[char], at: usize, then: &mut dyn FnMut(usize) -> bool) -> bool {
    alternatives.iter().any(|sequence| match_sequence(sequence, text, at, then))
}

fn match_sequence(pieces: &[Piece], text: &[char], at: usize, then: &mut dyn FnMut(usize) -> bool) -> bool {
    let Some((piece, rest)) = pieces.split_first() else { return then(at) };
    match_repeat(piece, 0, text, at, &mut |next| match_sequence(rest, text, next, then))
}

/// Greedy repetition of `piece`, having matched it `count` times so far.
fn match_repeat(piece: &Piece, count: usize, text: &[char], at: usize, then: &mut dyn FnMut(usize) -> bool) -> bool {
    if piece.max.is_none_or(|max| count < max) {
        // An empty match (an anchor, an empty group) counts once, and never loops.
        let matched = match_once(&piece.node, text, at, &mut |next| {
            if next == at { count + 1 >= piece.min && then(at) } else { match_repeat(piece, count + 1, text, next, then) }
        });
        if matched {
            return true;
        }
    }
    count >= piece.min && then(at)
}

fn match_once(node: &Node, text: &[char], at: usize, then: &mut dyn FnMut(usize) -> bool) -> bool {
    match node {
        Node::Char(c) => text.get(at) == Some(c) && then(at + 1),
        Node::Any => text.get(at).is_some_and(|c| *c != '\n') && then(at + 1),
        Node::Class { negated, items } => text.get(at).is_some_and(|c| items.iter().any(|(low, high)| low <= c && c <= high) != *negated) && then(at + 1),
        Node::Group(alternatives) => match_alternatives(alternatives, text, at, then),
        Node::Start => at == 0 && then(at),
        Node::End => at == text.len() && then(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).map(|r| r.is_full_match(text)).unwrap_or(false)
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
        assert!(Regex::new("(a").is_err());
    }
}
