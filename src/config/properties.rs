//! Java `.properties` files, read the way `java.util.Properties.load` reads
//! them, so canal's own files load unchanged.
//!
//! - `key=value`, `key:value` and `key value` all work; whitespace around the
//!   separator is skipped, trailing whitespace of the value is kept.
//! - Lines whose first non-blank character is `#` or `!` are comments.
//! - A line ending in an odd number of backslashes continues on the next line,
//!   whose leading whitespace is skipped.
//! - Escapes: `\t \n \r \f \uXXXX`; any other `\x` is `x` (so `\\` is a
//!   backslash and `\=`, `\:`, `\ `, `\#`, `\!` are literal). canal's
//!   `canal.instance.filter.regex=.*\\..*` therefore means `.*\..*`.
//! - A key given twice keeps the later value.
//!
//! Java reads these files as ISO-8859-1; we read UTF-8 (what people write
//! today) and fall back to ISO-8859-1 when the bytes are not valid UTF-8.

use std::collections::HashMap;

/// One `key = value` pair and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, escapes resolved.
    pub key: String,
    /// The value, escapes resolved, leading blanks removed.
    pub value: String,
    /// The line the pair starts on.
    pub line: usize,
}

/// A malformed `\uXXXX` escape, the only thing Java refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: malformed \\uXXXX escape (expected four hexadecimal digits)")]
pub struct SyntaxError {
    /// The line of the escape.
    pub line: usize,
}

/// A parsed file: one entry per key in first-appearance order, the later value
/// winning for duplicates.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    entries: Vec<Property>,
    index: HashMap<String, usize>,
    /// Keys given more than once: (key, earlier line, later line).
    duplicates: Vec<(String, usize, usize)>,
}

impl Properties {
    /// Parses file contents (UTF-8, or ISO-8859-1 when not valid UTF-8).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SyntaxError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text),
            Err(_) => Self::parse(&bytes.iter().map(|&b| char::from(b)).collect::<String>()),
        }
    }

    /// Parses a file's text; a key set twice keeps the later value (Java's rule) and is remembered for a warning.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let mut props = Properties::default();
        for property in parse(text)? {
            match props.index.get(&property.key) {
                Some(&i) => {
                    let earlier = &mut props.entries[i];
                    props
                        .duplicates
                        .push((property.key.clone(), earlier.line, property.line));
                    *earlier = property;
                }
                None => {
                    props
                        .index
                        .insert(property.key.clone(), props.entries.len());
                    props.entries.push(property);
                }
            }
        }
        Ok(props)
    }

    /// The pair for `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Property> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    /// Every pair, in file order (a key set twice at its first place).
    pub fn iter(&self) -> impl Iterator<Item = &Property> {
        self.entries.iter()
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys given more than once: (key, earlier line, later (winning) line).
    pub fn duplicates(&self) -> &[(String, usize, usize)] {
        &self.duplicates
    }
}

/// Java's whitespace inside a properties line.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Every pair in file order, duplicates included.
pub fn parse(text: &str) -> Result<Vec<Property>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = natural_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start_line = i + 1;
        let first = lines[i].trim_start_matches(is_blank);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd run of trailing backslashes.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            let Some(next) = lines.get(i) else { break };
            i += 1;
            let next = next.trim_start_matches(is_blank);
            // An empty continuation line ends the logical line (as in Java).
            if next.is_empty() {
                break;
            }
            logical.push_str(next);
        }
        out.push(split_pair(&logical, start_line)?);
    }
    Ok(out)
}

/// Lines split on `\n`, `\r\n` or `\r`.
fn natural_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(pos) => {
                lines.push(&rest[..pos]);
                let skip = if rest[pos..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[pos + skip..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    lines
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits a logical line into key and value, then unescapes both.
fn split_pair(line: &str, line_no: usize) -> Result<Property, SyntaxError> {
    let chars: Vec<char> = line.chars().collect();
    let mut key_end = chars.len();
    let mut value_start = chars.len();
    let mut has_separator = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if !escaped && (c == '=' || c == ':') {
            key_end = i;
            value_start = i + 1;
            has_separator = true;
            break;
        }
        if !escaped && is_blank(c) {
            key_end = i;
            value_start = i + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    // Skip blanks, and one `=`/`:` after a blank separator.
    while let Some(&c) = chars.get(value_start) {
        if is_blank(c) {
            value_start += 1;
        } else if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            value_start += 1;
        } else {
            break;
        }
    }
    Ok(Property {
        key: unescape(&chars[..key_end], line_no)?,
        value: unescape(&chars[value_start..], line_no)?,
        line: line_no,
    })
}

fn unescape(chars: &[char], line: usize) -> Result<String, SyntaxError> {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&next) = chars.get(i) else {
            // A lone trailing backslash (end of file) is dropped, as in Java.
            break;
        };
        i += 1;
        match next {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'f' => out.push('\x0c'),
            'u' => {
                let hex: String = chars
                    .get(i..i + 4)
                    .ok_or(SyntaxError { line })?
                    .iter()
                    .collect();
                let unit = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.chars().all(|c| c.is_ascii_hexdigit()))
                    .ok_or(SyntaxError { line })?;
                i += 4;
                push_utf16_unit(&mut out, unit, chars, &mut i);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Java strings are UTF-16: `\uD83D\uDE00` is one character. A lone
/// surrogate becomes U+FFFD.
fn push_utf16_unit(out: &mut String, unit: u32, chars: &[char], i: &mut usize) {
    if (0xD800..0xDC00).contains(&unit) {
        let low = chars
            .get(*i..*i + 6)
            .filter(|s| s[0] == '\\' && s[1] == 'u')
            .and_then(|s| u32::from_str_radix(&s[2..].iter().collect::<String>(), 16).ok())
            .filter(|low| (0xDC00..0xE000).contains(low));
        if let Some(low) = low {
            *i += 6;
            let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
            return;
        }
    }
    out.push(char::from_u32(unit).unwrap_or('\u{fffd}'));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value, p.line))
            .collect()
    }

    fn p(k: &str, v: &str, line: usize) -> (String, String, usize) {
        (k.to_owned(), v.to_owned(), line)
    }

    #[test]
    fn separators_and_comments() {
        let text = "# comment\n\
                    ! also a comment\n\
                    \n\
                    a=1\n\
                    b : 2\n\
                    \t  c 3\n\
                    d   =   4  \n\
                    e\n\
                    f=\n\
                    g = x=y:z\n\
                    h   : = v\n";
        assert_eq!(
            pairs(text),
            vec![
                p("a", "1", 4),
                p("b", "2", 5),
                p("c", "3", 6),
                p("d", "4  ", 7),
                p("e", "", 8),
                p("f", "", 9),
                p("g", "x=y:z", 10),
                p("h", "= v", 11),
            ]
        );
    }

    #[test]
    fn continuation_lines() {
        let text = "list = a,\\\n     b,\\\r\n\tc\nnext=1\nodd=x\\\\\nlast=y\\";
        assert_eq!(
            pairs(text),
            vec![
                p("list", "a,b,c", 1),
                p("next", "1", 4),
                p("odd", "x\\", 5),
                p("last", "y", 6),
            ]
        );
        // A comment line is never continued; a continued line may start with #.
        assert_eq!(
            pairs("# c \\\nk=v\\\n  #not comment\n"),
            vec![p("k", "v#not comment", 2)]
        );
        // An empty continuation line ends the value.
        assert_eq!(pairs("k=v\\\n\nx=1"), vec![p("k", "v", 1), p("x", "1", 3)]);
    }

    #[test]
    fn escapes() {
        let text = r"canal.instance.filter.regex=.*\\..*
black=mysql\\.slave_.*
plain=a\.b
k\=ey\:x\ y=v
tabs=\t\n\r\f|
uni=\u00e9\u4E2D\uD83D\uDE00
\#hash=1
\!bang=2
";
        assert_eq!(
            pairs(text),
            vec![
                p("canal.instance.filter.regex", r".*\..*", 1),
                p("black", r"mysql\.slave_.*", 2),
                p("plain", "a.b", 3),
                p("k=ey:x y", "v", 4),
                p("tabs", "\t\n\r\x0c|", 5),
                p("uni", "é中😀", 6),
                p("#hash", "1", 7),
                p("!bang", "2", 8),
            ]
        );
        assert_eq!(parse("a=\\u12").unwrap_err(), SyntaxError { line: 1 });
        assert_eq!(parse("\n\nb=\\uzzzz").unwrap_err(), SyntaxError { line: 3 });
    }

    #[test]
    fn duplicates_later_wins() {
        let props = Properties::parse("a=1\nb=2\na=3\n").unwrap();
        assert_eq!(props.len(), 2);
        let a = props.get("a").unwrap();
        assert_eq!((a.value.as_str(), a.line), ("3", 3));
        assert_eq!(props.iter().next().unwrap().key, "a");
        assert_eq!(props.duplicates(), &[("a".to_owned(), 1, 3)]);
    }

    #[test]
    fn latin1_fallback_and_bom() {
        let props = Properties::parse_bytes(b"name=caf\xe9\n").unwrap();
        assert_eq!(props.get("name").unwrap().value, "café");
        let props = Properties::parse_bytes("\u{feff}k=é".as_bytes()).unwrap();
        assert_eq!(props.get("k").unwrap().value, "é");
    }
}
