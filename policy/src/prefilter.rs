//! A fast first look for command rules.
//!
//! A rule's `\b` is a Unicode word boundary, which the regex crate's fast engines (the lazy
//! DFA) cannot decide on a line with non-ASCII text: there the slow PikeVM runs all patterns
//! at once, milliseconds per line with hundreds of rules — and a hostile user chooses the
//! line. So each pattern also gets a *superset*: the same pattern with its Unicode word
//! boundaries taken out. Dropping an assertion only ever lets more lines match, so a line no
//! superset matches meets no rule; only the rules whose superset matched are checked exactly,
//! one by one. The answer is the same as checking every rule exactly.

use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};

/// The pattern with its Unicode word-boundary assertions removed, or `None` when it has
/// none (it is its own superset) or does not parse (the exact check reports that).
pub fn superset(pattern: &str) -> Option<String> {
    let hir = regex_syntax::parse(pattern).ok()?;
    let mut changed = false;
    let wider = widen(hir, &mut changed);
    changed.then(|| wider.to_string())
}

fn is_unicode_word_look(look: Look) -> bool {
    matches!(
        look,
        Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode
    )
}

fn widen(hir: Hir, changed: &mut bool) -> Hir {
    match hir.into_kind() {
        HirKind::Look(look) if is_unicode_word_look(look) => {
            *changed = true;
            Hir::empty()
        }
        HirKind::Repetition(repetition) => Hir::repetition(Repetition {
            sub: Box::new(widen(*repetition.sub, changed)),
            ..repetition
        }),
        HirKind::Capture(capture) => Hir::capture(Capture {
            sub: Box::new(widen(*capture.sub, changed)),
            ..capture
        }),
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(|s| widen(s, changed)).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.into_iter().map(|s| widen(s, changed)).collect())
        }
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(literal) => Hir::literal(literal.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Look(look) => Hir::look(look),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_boundaries_go_and_nothing_else_changes() {
        assert_eq!(superset(r"^\s*tool1\s+-f"), None);
        let wide = superset(r"\bsecret-1\b").unwrap();
        let wide = regex::Regex::new(&wide).unwrap();
        assert!(wide.is_match("xsecret-1y"));
        assert!(!wide.is_match("secret-2"));
        let anchored = regex::Regex::new(&superset(r"^rm\b.*-rf").unwrap()).unwrap();
        assert!(anchored.is_match("rmx -rf"));
        assert!(!anchored.is_match(" rm -rf"), "other assertions stay");
        assert_eq!(superset("(unclosed"), None);
    }
}
