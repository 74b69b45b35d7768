//! A Java `.properties` reader, as `java.util.Properties.load` reads a file
//! (its javadoc is the specification): `key=value`, `key: value` or
//! `key value`; `#` and `!` comment lines; a line ending in an odd number of
//! backslashes continues on the next, whose leading blanks are dropped;
//! `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<any>` escapes in keys and values.
//! Every entry keeps the line it starts on, for the import report.
//!
//! One departure, reported rather than hidden: Java has no trailing comments,
//! yet Kafka's own documentation writes `clusters = a, b   # aliases`. A value
//! holding blanks and then `#` is cut there and the cut is returned, so the
//! report can say that MirrorMaker 2 read it as part of the value.

/// One `key = value` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line the entry starts on.
    pub line: usize,
    /// A trailing `  # ...` cut from the value (Java keeps it in the value).
    pub trailing_comment: Option<String>,
}

/// Parses properties text. Never fails: Java accepts any text, and so does this.
/// A later entry with the same key replaces an earlier one (as Java does); the
/// earlier one is returned in `replaced` so it can be reported.
pub(crate) fn parse(text: &str) -> (Vec<Entry>, Vec<Entry>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut replaced = Vec::new();
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start_matches([' ', '\t', '\x0c']);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes.
        let mut logical = String::from(first);
        while ends_in_odd_backslashes(&logical) && i <= lines.len() {
            logical.pop();
            if i == lines.len() {
                break;
            }
            logical.push_str(lines[i].trim_start_matches([' ', '\t', '\x0c']));
            i += 1;
        }
        let (raw_key, raw_value) = split_key_value(&logical);
        let (raw_value, trailing_comment) = cut_trailing_comment(raw_value);
        let entry = Entry {
            key: unescape(raw_key),
            value: unescape(raw_value),
            line: start + 1,
            trailing_comment,
        };
        if let Some(pos) = entries.iter().position(|e| e.key == entry.key) {
            replaced.push(entries.remove(pos));
        }
        entries.push(entry);
    }
    (entries, replaced)
}

fn ends_in_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or blank; the value
/// starts after blanks and at most one `=`/`:` following them.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut k = 0;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' => k += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => k += 1,
        }
    }
    let k = k.min(bytes.len());
    let key = &line[..k];
    let mut v = k;
    while v < bytes.len() && matches!(bytes[v], b' ' | b'\t' | b'\x0c') {
        v += 1;
    }
    if v < bytes.len() && matches!(bytes[v], b'=' | b':') {
        v += 1;
        while v < bytes.len() && matches!(bytes[v], b' ' | b'\t' | b'\x0c') {
            v += 1;
        }
    }
    (key, &line[v..])
}

/// `value   # comment` → (`value`, Some(`# comment`)); a `#` with no blank
/// before it (`a#b`, a regex `[#]`) stays in the value.
fn cut_trailing_comment(value: &str) -> (&str, Option<String>) {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
            return (value[..i].trim_end(), Some(value[i..].to_string()));
        }
    }
    (value, None)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    // Java throws on a malformed \u; keep the text so the report shows it.
                    _ => out.push_str("\\u"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String, usize)> {
        parse(text).0.into_iter().map(|e| (e.key, e.value, e.line)).collect()
    }

    #[test]
    fn separators() {
        let got = kv("a=1\nb: 2\nc 3\nd = 4\ne\t:\t5\nf\ng=\nh  =  = x\n");
        let want = [
            ("a", "1", 1),
            ("b", "2", 2),
            ("c", "3", 3),
            ("d", "4", 4),
            ("e", "5", 5),
            ("f", "", 6),
            ("g", "", 7),
            ("h", "= x", 8),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2), w);
        }
    }

    #[test]
    fn comments_and_blank_lines() {
        let got = kv("# c\n! c\n   # indented\n\n  a = 1\n");
        assert_eq!(got, vec![("a".into(), "1".into(), 5)]);
    }

    #[test]
    fn continuations() {
        let got = kv("topics = a, \\\n    b, \\\n    c\nnext = x\\\\\nlast = \\\n");
        assert_eq!(got[0], ("topics".into(), "a, b, c".into(), 1));
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(got[1], ("next".into(), "x\\".into(), 4));
        // A continuation on the last line ends the value.
        assert_eq!(got[2], ("last".into(), "".into(), 5));
    }

    #[test]
    fn escapes() {
        let got = kv("k\\=ey\\ 1 = v\\tal\\u00e9\\\\\\x\nA->B.topics = .*\\\\.internal\nbad = \\u12\n");
        assert_eq!(got[0].0, "k=ey 1");
        assert_eq!(got[0].1, "v\talé\\x");
        assert_eq!(got[1], ("A->B.topics".into(), ".*\\.internal".into(), 2));
        assert_eq!(got[2].1, "\\u12");
    }

    #[test]
    fn crlf_and_duplicates() {
        let (entries, replaced) = parse("a = 1\r\nb = 2\r\na = 3\r\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[1].key.as_str(), entries[1].value.as_str(), entries[1].line),
            ("a", "3", 3)
        );
        assert_eq!(replaced[0].line, 1);
    }

    #[test]
    fn trailing_comments_are_cut_and_returned() {
        let (entries, _) = parse("clusters = a, b   # aliases\nx = [#]\ny = a#b\n");
        assert_eq!(entries[0].value, "a, b");
        assert_eq!(entries[0].trailing_comment.as_deref(), Some("# aliases"));
        assert_eq!(entries[1].value, "[#]");
        assert_eq!(entries[2].value, "a#b");
    }
}
