//! Who a start-up message asks the server to be: every role name and application name the
//! gate decides on, taken as the server will take them. Pure, shared with
//! `fuzz/fuzz_targets/pg_startup.rs`.
//!
//! The server does not simply log in as `user`:
//! - it cuts `user` (and `database`) to `NAMEDATALEN - 1` = 63 bytes, byte-wise, before it
//!   looks the role up (`ProcessStartupPacket`), so `<a blocked 63-byte name>XYZ` logs in as the
//!   blocked role;
//! - any parameter that is not `user`, `database`, `options`, `replication` or `_pq_.*` sets a
//!   configuration parameter, and `options` is a command line whose `-c name=value` and
//!   `--name=value` do the same: `role` and `session_authorization` switch the session to another
//!   role before the first query.
//!
//! So the gate decides on the cut `user` and on every `role` / `session_authorization` the packet
//! asks for (cut the same way, and at a character boundary too, since identifiers set later are
//! cut there); the session is refused when any of them is blocked. A `SET ROLE` sent later inside
//! the session is outside what a login-level gate sees. Names are bytes on the wire; the decision
//! reads them as UTF-8 (the server's encoding in practice), a byte that is not UTF-8 becoming
//! U+FFFD, which no listed name contains.

/// The longest name the server keeps (`NAMEDATALEN - 1`).
pub const MAX_NAME: usize = 63;

/// Configuration parameters that make the session another role than `user`.
const ROLE_SETTINGS: [&str; 2] = ["role", "session_authorization"];

/// What one start-up message asks for, as the decision reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The role the server authenticates: `user` cut as the server cuts it.
    pub user: String,
    /// The database (`user` when not given), for the session list.
    pub database: String,
    /// Every other role name the packet asks to become (`role`, `session_authorization`, in
    /// parameters or in `options`), each with its cut forms; never `user` again.
    pub roles: Vec<String>,
    /// Every application name the packet sets (`application_name` and `-c application_name`).
    pub applications: Vec<String>,
}

impl Login {
    /// Reads a `StartupMessage`'s parameters; `None` without a (non-empty) `user`, which the
    /// server refuses too.
    pub fn read(params: &[(Vec<u8>, Vec<u8>)]) -> Option<Login> {
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v.as_slice())
        };
        let user = param("user").filter(|u| !u.is_empty())?;
        let database = param("database").filter(|d| !d.is_empty()).unwrap_or(user);
        let mut login = Login {
            user: lossy(cut(user)),
            database: lossy(cut(database)),
            roles: Vec::new(),
            applications: Vec::new(),
        };
        // The server applies `options` first, then the other parameters (which win); the gate
        // decides on all of them. The parameters come first here so that the application name
        // the session shows is the one the server keeps.
        let from_options = settings(&split_options(param("options").unwrap_or_default()));
        let from_params = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_slice(), b"user" | b"database" | b"options"))
            .map(|(k, v)| (setting_name(k), v.clone()));
        for (name, value) in from_params.chain(from_options) {
            if ROLE_SETTINGS.contains(&name.as_str()) {
                for role in server_names(&value) {
                    login.add_role(role);
                }
            } else if name == "application_name" {
                let app = lossy(&value);
                if !login.applications.contains(&app) {
                    login.applications.push(app);
                }
            }
        }
        Some(login)
    }

    /// `user` then every other role name, each once.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.user.as_str()).chain(self.roles.iter().map(String::as_str))
    }

    /// A role name the server reports for the session (`session_authorization`), decided on
    /// too: the server's own word for who logged in.
    pub fn add_role(&mut self, role: String) {
        if role != self.user && !self.roles.contains(&role) {
            self.roles.push(role);
        }
    }
}

/// The forms of a role name the server may look up: cut at 63 bytes (as the start-up `user`
/// is), and cut at the last whole UTF-8 character within 63 bytes (as identifiers are), once
/// each; the name itself when it is short enough.
pub fn server_names(name: &[u8]) -> Vec<String> {
    let bytes = lossy(cut(name));
    let mut out = vec![bytes];
    if name.len() > MAX_NAME
        && let Ok(text) = std::str::from_utf8(name)
    {
        let mut end = MAX_NAME;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let chars = text[..end].to_owned();
        if !out.contains(&chars) {
            out.push(chars);
        }
    }
    out
}

/// The first 63 bytes, as `ProcessStartupPacket` keeps them.
fn cut(name: &[u8]) -> &[u8] {
    &name[..name.len().min(MAX_NAME)]
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration parameter's name as the server matches it: case-insensitive, and `-` as `_`
/// (`ParseLongOption` turns dashes into underscores).
fn setting_name(name: &[u8]) -> String {
    lossy(name).to_ascii_lowercase().replace('-', "_")
}

/// `pg_split_opts`: words separated by ASCII white space, a backslash taking the next byte as
/// it is (so `\ ` is a space inside a word and `\\` a backslash).
pub fn split_options(options: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut rest = options.iter().copied().peekable();
    loop {
        while rest.next_if(|b| is_space(*b)).is_some() {}
        if rest.peek().is_none() {
            return words;
        }
        let mut word = Vec::new();
        let mut escaped = false;
        while let Some(b) = rest.next_if(|b| escaped || !is_space(*b)) {
            if !escaped && b == b'\\' {
                escaped = true;
            } else {
                escaped = false;
                word.push(b);
            }
        }
        words.push(word);
    }
}

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The switches of the server's command line (`process_postgres_switches`) that take a value.
const SWITCHES_WITH_VALUE: &[u8] = b"BCcDdfhkNprStvW-";

/// The `-c name=value` and `--name=value` settings of an `options` command line, read as the
/// server's `getopt` reads it: switches may be grouped (`-ec role=x`), a switch's value is the
/// rest of its word or the next word, non-switch words are skipped (GNU `getopt` moves them to
/// the end, where the server refuses them), and `--` ends the switches. A setting without `=`
/// is left out: the server refuses it.
pub fn settings(words: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word.as_slice() == b"--" {
            break;
        }
        let Some(switches) = word.strip_prefix(b"-").filter(|s| !s.is_empty()) else {
            continue;
        };
        for (at, switch) in switches.iter().enumerate() {
            if !SWITCHES_WITH_VALUE.contains(switch) {
                continue;
            }
            let attached = &switches[at + 1..];
            let value = if !attached.is_empty() {
                attached.to_vec()
            } else if let Some(next) = words.get(i) {
                i += 1;
                next.clone()
            } else {
                break;
            };
            if matches!(switch, b'c' | b'-')
                && let Some(eq) = value.iter().position(|b| *b == b'=')
            {
                out.push((setting_name(&value[..eq]), value[eq + 1..].to_vec()));
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn login(params: &[(&str, &[u8])]) -> Option<Login> {
        let params: Vec<(Vec<u8>, Vec<u8>)> = params
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect();
        Login::read(&params)
    }

    fn words(s: &[u8]) -> Vec<String> {
        split_options(s)
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn options_split_as_the_server_splits_them() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"", &[]),
            (b"   ", &[]),
            (b"-c role=alice", &["-c", "role=alice"]),
            (b"  -c\trole=alice \n", &["-c", "role=alice"]),
            (b"-c role=a\\ b", &["-c", "role=a b"]),
            (b"-c role=a\\\\ b", &["-c", "role=a\\", "b"]),
            (b"-crole=\\alice", &["-crole=alice"]),
            (b"x\\", &["x"]),
        ];
        for (input, want) in cases {
            assert_eq!(words(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn settings_as_the_servers_getopt_reads_them() {
        type Case<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (b"-c role=alice", &[("role", "alice")]),
            (b"-crole=alice", &[("role", "alice")]),
            (b"--role=alice", &[("role", "alice")]),
            (b"-c ROLE=alice", &[("role", "alice")]),
            (
                b"-c session-authorization=alice",
                &[("session_authorization", "alice")],
            ),
            (
                b"--session_authorization=alice",
                &[("session_authorization", "alice")],
            ),
            // Grouped switches: -e takes no value, -c takes the next word.
            (b"-ec role=alice", &[("role", "alice")]),
            // -B takes a value, so `-c` here is -B's value, and role=alice a stray word.
            (b"-B -c role=alice", &[]),
            (b"stray -c role=alice", &[("role", "alice")]),
            (b"-c role=alice -- -c role=bob", &[("role", "alice")]),
            (b"-c role", &[]),
            (b"-c", &[]),
            (
                b"-c search_path=x -c application_name=tool",
                &[("search_path", "x"), ("application_name", "tool")],
            ),
            (b"-c role=al\\ ice", &[("role", "al ice")]),
        ];
        for (input, want) in cases {
            let got: Vec<(String, String)> = settings(&split_options(input))
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn names_are_cut_as_the_server_cuts_them() {
        let blocked = "b".repeat(63);
        assert_eq!(server_names(blocked.as_bytes()), vec![blocked.clone()]);
        assert_eq!(
            server_names(format!("{blocked}XYZ").as_bytes()),
            vec![blocked.clone()]
        );
        // A two-byte character across byte 63: the byte cut keeps half of it, the identifier
        // cut drops it.
        let long = format!("{}é", "a".repeat(62));
        assert_eq!(
            server_names(long.as_bytes()),
            vec![format!("{}\u{fffd}", "a".repeat(62)), "a".repeat(62)]
        );
        assert_eq!(server_names(b"caf\xe9"), vec!["caf\u{fffd}".to_owned()]);
    }

    #[test]
    fn every_role_the_packet_asks_for_is_decided_on() {
        let l = login(&[
            ("user", b"carol"),
            ("database", b"appdb"),
            ("options", b"-c role=alice --session-authorization=dave"),
            ("ROLE", b"erin"),
            ("application_name", b"caf\xe9"),
        ])
        .unwrap();
        assert_eq!(l.user, "carol");
        assert_eq!(l.database, "appdb");
        assert_eq!(l.roles, vec!["erin", "alice", "dave"]);
        assert_eq!(l.applications, vec!["caf\u{fffd}"]);
        assert_eq!(
            l.names().collect::<Vec<_>>(),
            vec!["carol", "erin", "alice", "dave"]
        );
        let long = format!("{}XYZ", "b".repeat(63));
        let l = login(&[("user", long.as_bytes())]).unwrap();
        assert_eq!(l.user, "b".repeat(63));
        assert_eq!(l.database, "b".repeat(63));
        assert!(l.roles.is_empty());
        assert_eq!(login(&[("user", b"")]), None);
        assert_eq!(login(&[("database", b"appdb")]), None);
    }
}
