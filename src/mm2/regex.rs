//! Java regexes of MirrorMaker 2's `topics`, `groups` and their excludes,
//! checked for strait (Rust `regex` syntax).
//!
//! MM2 splits each list on commas, compiles every entry with
//! `java.util.regex.Pattern` and matches whole names (`MirrorUtils.
//! compilePatternList`, `DefaultTopicFilter`); strait anchors each entry the
//! same way. Most patterns mean the same in both. Java features the `regex`
//! crate lacks are found here and reported, never rewritten into something
//! else: lookahead and lookbehind, backreferences, possessive quantifiers,
//! atomic groups. `\Q...\E` quoting is translated (escaped literally); every
//! other entry must then compile with the `regex` crate, anchored.

/// The entry as strait will hold it, or why it cannot be.
pub(crate) fn check(java: &str) -> Result<String, String> {
    let translated = translate(java)?;
    match regex::Regex::new(&format!("^(?:{translated})$")) {
        Ok(_) => Ok(translated),
        Err(e) => Err(format!(
            "not valid in Rust's regex syntax: {}",
            e.to_string().lines().last().unwrap_or("invalid").trim()
        )),
    }
}

/// Finds the Java-only constructs and expands `\Q...\E`.
fn translate(java: &str) -> Result<String, String> {
    let chars: Vec<char> = java.chars().collect();
    let mut out = String::with_capacity(java.len());
    let mut i = 0;
    let mut class_depth = 0usize;
    // The previous token was a quantifier (`*`, `+`, `?`, `{n,m}`).
    let mut after_quantifier = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                return Err("ends with a lone backslash".into());
            };
            if next == 'Q' {
                let end = (i + 2..chars.len())
                    .find(|&j| chars[j] == '\\' && chars.get(j + 1) == Some(&'E'))
                    .unwrap_or(chars.len());
                let quoted: String = chars[i + 2..end].iter().collect();
                out.push_str(&regex::escape(&quoted));
                i = (end + 2).min(chars.len());
                after_quantifier = false;
                continue;
            }
            if class_depth == 0 && next.is_ascii_digit() && next != '0' {
                return Err(format!("backreference `\\{next}` (the regex crate has none)"));
            }
            if class_depth == 0 && next == 'k' && chars.get(i + 2) == Some(&'<') {
                return Err("named backreference `\\k<...>` (the regex crate has none)".into());
            }
            out.push(c);
            out.push(next);
            i += 2;
            after_quantifier = false;
            continue;
        }
        if class_depth > 0 {
            match c {
                '[' => class_depth += 1,
                ']' => class_depth -= 1,
                _ => {}
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                class_depth = 1;
                out.push(c);
                i += 1;
                // A `]` or `^]` right after `[` is a literal.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
                after_quantifier = false;
                continue;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let tail: String = chars[i + 2..].iter().take(2).collect();
                let what = if tail.starts_with('=') {
                    Some("lookahead `(?=`")
                } else if tail.starts_with('!') {
                    Some("negative lookahead `(?!`")
                } else if tail.starts_with("<=") {
                    Some("lookbehind `(?<=`")
                } else if tail.starts_with("<!") {
                    Some("negative lookbehind `(?<!`")
                } else if tail.starts_with('>') {
                    Some("atomic group `(?>`")
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(format!("{what} (the regex crate has no lookaround or atomic groups)"));
                }
                out.push_str("(?");
                i += 2;
                after_quantifier = false;
                continue;
            }
            '+' if after_quantifier => {
                return Err(format!(
                    "possessive quantifier `{}+` (the regex crate has none)",
                    chars[i - 1]
                ));
            }
            // `x*?`: the `?` makes the quantifier lazy and ends it.
            '?' if after_quantifier => after_quantifier = false,
            '*' | '+' | '?' | '}' => after_quantifier = true,
            _ => after_quantifier = false,
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_patterns_pass_unchanged() {
        for p in [
            ".*",
            "foo.*",
            "orders\\..*",
            ".*[\\-\\.]internal",
            ".*\\.replica",
            "__.*",
            "console-consumer-.*",
            "a{1}",
            "(?i)Orders",
            "x+?",
            "x*?",
            "(?<name>a)b",
            "[a-z&&[^q]]+",
            "[]a]",
        ] {
            assert_eq!(check(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn quoting_is_translated() {
        assert_eq!(check("\\Qa.b\\E.*").as_deref(), Ok("a\\.b.*"));
        assert_eq!(check("x\\Q(y)").as_deref(), Ok("x\\(y\\)"));
        let r = regex::Regex::new(&format!("^(?:{})$", check("\\Qorders.v1\\E-.*").unwrap())).unwrap();
        assert!(r.is_match("orders.v1-eu") && !r.is_match("ordersXv1-eu"));
    }

    #[test]
    fn java_only_features_are_refused_by_name() {
        for (p, word) in [
            ("(?!internal).*", "negative lookahead"),
            ("foo(?=bar)", "lookahead"),
            ("(?<=a)b", "lookbehind"),
            ("(?<!a)b", "negative lookbehind"),
            ("(?>ab)c", "atomic group"),
            ("(a)\\1", "backreference"),
            ("(?<n>a)\\k<n>", "named backreference"),
            ("a*+", "possessive"),
            ("a++b", "possessive"),
            ("a?+", "possessive"),
            ("a{2}+", "possessive"),
        ] {
            let e = check(p).unwrap_err();
            assert!(e.contains(word), "{p}: {e}");
        }
    }

    #[test]
    fn escapes_and_classes_are_not_mistaken_for_features() {
        assert!(check("a\\+\\+").is_ok());
        assert!(check("[+*]+").is_ok());
        assert!(check("[(?=]x").is_ok());
        assert!(check("[\\d+]x").is_ok());
    }

    #[test]
    fn other_java_syntax_fails_to_compile_and_says_so() {
        let e = check("a\\Z").unwrap_err();
        assert!(e.starts_with("not valid in Rust's regex syntax"), "{e}");
        assert!(check("(unclosed").is_err());
        assert!(check("trailing\\").is_err());
    }
}
