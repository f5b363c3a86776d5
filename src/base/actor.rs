//! Who asks for a change, and from where: the actor every use case takes and every audit
//! record names.

/// Who asked, for audit records and `created_by` / `added_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `key:<id> (<name>)`, `cli:<user>` or `system`.
    pub name: String,
    /// The client's address, or how it was asked (`cli`, `SIGHUP`, `expiry`).
    pub source: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: Option<String>) -> Actor {
        Actor {
            name: name.into(),
            source,
        }
    }

    /// warden itself, acting for `why` (`expiry`, `SIGHUP`, `bootstrap`).
    pub fn system(why: &str) -> Actor {
        Actor::new("system", Some(why.to_owned()))
    }

    /// The shell user running the command line: `cli:$SUDO_USER`, else `cli:$USER`.
    pub fn cli() -> Actor {
        Actor::new(format!("cli:{}", shell_user()), Some("cli".to_owned()))
    }
}

/// The shell user (`$SUDO_USER`, else `$USER`, else `unknown`).
pub fn shell_user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
