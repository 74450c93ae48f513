//! Maildir flags: the `:2,` info suffix of a file name (RFC-less but universal: cr.yp.to's
//! Maildir spec and Dovecot's extension) and Dovecot's `dovecot-keywords` file, which maps
//! the lowercase letters `a`..`z` to keyword names per folder.

use crate::model::{Flag, FlagSet};
use std::collections::BTreeMap;

/// The system flags and their letters (the letters in ASCII order, as a file name lists
/// them).
const SYSTEM: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Keyword letters: `a` is index 0 of `dovecot-keywords`.
pub const KEYWORD_LETTERS: usize = 26;

/// A folder's `dovecot-keywords`: letter index → keyword.
pub type Keywords = BTreeMap<usize, String>;

/// Parses `dovecot-keywords` (`<index> <name>` per line); lines that are not of that form
/// are skipped, as Dovecot does.
pub fn parse_keywords(text: &str) -> Keywords {
    text.lines()
        .filter_map(|l| {
            let (i, name) = l.trim_end().split_once(' ')?;
            let i: usize = i.parse().ok()?;
            (i < KEYWORD_LETTERS && !name.is_empty()).then(|| (i, name.to_string()))
        })
        .collect()
}

/// The base of a Maildir file name (without the `:2,...` info) and its flag letters.
pub fn split_name(file: &str) -> (&str, &str) {
    match file.split_once(':') {
        Some((base, info)) => (base, info.strip_prefix("2,").unwrap_or("")),
        None => (file, ""),
    }
}

/// What the flag letters of a file name mean. Unknown letters (`P`assed has no IMAP flag;
/// a keyword letter missing from `dovecot-keywords`) are returned apart, for a warning.
pub fn flags_of(letters: &str, keywords: &Keywords) -> (FlagSet, Vec<char>) {
    let mut flags = FlagSet::new();
    let mut unknown = Vec::new();
    for c in letters.chars() {
        let f = if let Some((_, f)) = SYSTEM.iter().find(|(l, _)| *l == c) {
            Flag::try_from(*f).ok()
        } else if c.is_ascii_lowercase() {
            keywords
                .get(&((c as u8 - b'a') as usize))
                .and_then(|k| Flag::try_from(k.as_str()).ok())
        } else {
            None
        };
        match f {
            Some(f) => {
                flags.insert(f);
            }
            None => unknown.push(c),
        }
    }
    (flags, unknown)
}

/// The flag letters for `flags`, sorted, assigning keywords their letters in `keywords`
/// (new ones get the next free letter). Keywords that find no letter are returned apart.
pub fn letters_of(flags: &FlagSet, keywords: &mut Keywords) -> (String, Vec<String>) {
    let mut letters = Vec::new();
    let mut lost = Vec::new();
    for f in flags {
        if let Some((l, _)) = SYSTEM.iter().find(|(_, s)| *s == f.as_str()) {
            letters.push(*l);
            continue;
        }
        let idx = match keywords.iter().find(|(_, k)| k.as_str() == f.as_str()) {
            Some((i, _)) => Some(*i),
            None => (0..KEYWORD_LETTERS)
                .find(|i| !keywords.contains_key(i))
                .inspect(|i| {
                    keywords.insert(*i, f.as_str().to_string());
                }),
        };
        match idx {
            Some(i) => letters.push((b'a' + i as u8) as char),
            None => lost.push(f.as_str().to_string()),
        }
    }
    letters.sort_unstable();
    (letters.into_iter().collect(), lost)
}

/// The text of a `dovecot-keywords` file.
pub fn keywords_file(keywords: &Keywords) -> String {
    keywords.iter().map(|(i, k)| format!("{i} {k}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip() {
        let kw = parse_keywords("0 $Work\n1 Junk\nbad line\n30 x\n");
        assert_eq!(kw.len(), 2);
        let (base, letters) = split_name("1700000000.M1P2.host,S=10:2,FRSab");
        assert_eq!(base, "1700000000.M1P2.host,S=10");
        let (flags, unknown) = flags_of(letters, &kw);
        let names: Vec<&str> = flags.iter().map(Flag::as_str).collect();
        assert_eq!(
            names,
            ["$Work", "Junk", "\\Answered", "\\Flagged", "\\Seen"]
        );
        assert!(unknown.is_empty());
        let (_, unknown) = flags_of("PSz", &kw);
        assert_eq!(unknown, ['P', 'z']);
        let mut out = Keywords::new();
        let (letters, lost) = letters_of(&flags, &mut out);
        assert_eq!(letters, "FRSab");
        assert!(lost.is_empty());
        assert_eq!(keywords_file(&out), "0 $Work\n1 Junk\n");
        assert_eq!(split_name("plain"), ("plain", ""));
    }

    #[test]
    fn at_most_26_keyword_letters() {
        let mut flags = FlagSet::new();
        for i in 0..30 {
            flags.insert(Flag::try_from(format!("k{i:02}").as_str()).unwrap());
        }
        let mut kw = Keywords::new();
        let (letters, lost) = letters_of(&flags, &mut kw);
        assert_eq!(letters.len(), 26);
        assert_eq!(lost.len(), 4);
    }
}
