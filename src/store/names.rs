//! Validation of organisation and repository names before they become part of a path.

use crate::error::user;

/// GitHub owner logins: alphanumerics and single hyphens, at most 39 characters. Underscores are
/// accepted too because Enterprise Server and older accounts have them.
pub fn validate_org(name: &str) -> anyhow::Result<()> {
    check(name, "organisation", 39, |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_'
    })
}

/// GitHub repository names: alphanumerics, `-`, `_` and `.`, at most 100 characters, and never
/// `.` or `..` (which GitHub also refuses).
pub fn validate_repo(name: &str) -> anyhow::Result<()> {
    if name == "." || name == ".." {
        return Err(user(format!(
            "invalid repository name {name:?}: `.` and `..` are not names"
        )));
    }
    check(name, "repository", 100, |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
    })
}

fn check(name: &str, what: &str, max: usize, ok: impl Fn(char) -> bool) -> anyhow::Result<()> {
    if name.is_empty() {
        return Err(user(format!("invalid {what} name: it is empty")));
    }
    if name.len() > max {
        return Err(user(format!(
            "invalid {what} name {name:?}: longer than {max} characters"
        )));
    }
    if let Some(bad) = name.chars().find(|c| !ok(*c)) {
        return Err(user(format!(
            "invalid {what} name {name:?}: character {bad:?} is not allowed \
             (GitHub names use letters, digits, '-', '_'{})",
            if what == "repository" { " and '.'" } else { "" }
        )));
    }
    if name.contains("..") {
        return Err(user(format!("invalid {what} name {name:?}: contains `..`")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_names() {
        for org in ["replicatedhq", "rust-lang", "dotnet", "some_org", "a"] {
            validate_org(org).unwrap();
        }
        for repo in [
            "kots",
            "web-bugs",
            "corefx",
            "my_repo.rs",
            ".github",
            "a.b-c_d",
        ] {
            validate_repo(repo).unwrap();
        }
    }

    #[test]
    fn refuses_path_tricks() {
        for bad in ["../x", "a/b", "", "..", ".", "a\0b", "a b", "x..y", "a\\b"] {
            assert!(validate_repo(bad).is_err(), "{bad:?} accepted as repo");
            assert!(validate_org(bad).is_err(), "{bad:?} accepted as org");
        }
        assert!(validate_org(&"a".repeat(40)).is_err());
        assert!(validate_repo(&"a".repeat(101)).is_err());
    }
}
