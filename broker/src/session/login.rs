//! Login names: `USER+TARGET` reaches a target, `USER` alone the bastion's own menu.

use portcullis_config::validate::is_valid_name;

/// Where a login asks to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// No target: the bastion's own command interface.
    Menu,
    /// A target by name.
    Target(String),
    /// Something after `+` that cannot be a target name; the string says why.
    Malformed(String),
}

/// A parsed login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The person (the part before `+`).
    pub user: String,
    /// Where they want to go.
    pub destination: Destination,
}

/// Splits a login name. Only the part after `+` can be malformed here: the user part is
/// checked by authentication, which refuses names it does not know.
pub fn parse(raw: &str) -> Login {
    let Some((user, target)) = raw.split_once('+') else {
        return Login {
            user: raw.to_owned(),
            destination: Destination::Menu,
        };
    };
    let destination = if is_valid_name(target) {
        Destination::Target(target.to_owned())
    } else {
        Destination::Malformed(format!(
            "malformed login \"{}\": expected USER+TARGET, e.g. {}+web01",
            crate::text::Shown(raw),
            crate::text::Shown(user)
        ))
    };
    Login {
        user: user.to_owned(),
        destination,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_plus_target() {
        assert_eq!(
            parse("alice+web01"),
            Login {
                user: "alice".into(),
                destination: Destination::Target("web01".into())
            }
        );
    }

    #[test]
    fn user_alone_is_the_menu() {
        assert_eq!(parse("alice").destination, Destination::Menu);
    }

    #[test]
    fn malformed_targets_are_named() {
        for raw in ["alice+", "alice+web01+db01", "alice+we b", "alice+../x"] {
            let login = parse(raw);
            assert_eq!(login.user, "alice");
            assert!(
                matches!(&login.destination, Destination::Malformed(m) if m.contains("malformed login")),
                "{raw}: {login:?}"
            );
        }
    }
}
