//! Name globs (targets in roles, roles and targets in command rules, events forwarders
//! take): `*` matches any run of characters, `?` exactly one.
//!
//! Why not `globset`: its syntax is a path glob's (`[a-z]`, `{a,b}`, `**`, `\` escapes), so
//! patterns in existing configs would change meaning and need a compile step whose errors
//! the config check must report; it brings `globset` and `bstr` for what is thirty lines
//! here, linear in the name, with no state to build or cache.

/// Whether `text` matches `pattern`. Iterative with single-star backtracking, so it is linear
/// for the patterns operators write and never recurses.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_names() {
        assert!(matches("web01", "web01"));
        assert!(!matches("web01", "web02"));
        assert!(!matches("web01", "web011"));
        assert!(!matches("web011", "web01"));
    }

    #[test]
    fn stars_and_questions() {
        assert!(matches("web*", "web01"));
        assert!(matches("web*", "web"));
        assert!(matches("*", "anything"));
        assert!(matches("*-prod", "db-prod"));
        assert!(!matches("*-prod", "db-prod2"));
        assert!(matches("db-??", "db-01"));
        assert!(!matches("db-??", "db-1"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c-y-b"));
        assert!(matches("**x", "yx"));
        assert!(!matches("web*", "db01"));
    }
}
