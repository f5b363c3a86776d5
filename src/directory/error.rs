//! The directory error type. No variant ever holds the bind password: bind
//! failures carry a message built here, and server text is scrubbed of the
//! password before it is kept.

use std::path::PathBuf;
use std::time::Duration;

use crate::base::dn::DnError;

/// Errors from the directory client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The bind password could not be read from its file or environment variable.
    #[error("bind password: {source}")]
    BindPassword {
        /// Why it could not be read (never the secret itself).
        #[source]
        source: crate::base::secret::SecretError,
    },
    /// A setting is invalid; `field` names it.
    #[error("invalid directory setting `{field}`: {reason}")]
    Settings {
        /// The `DirectorySettings` field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Plain `ldap://` without StartTLS and without `allow_insecure`.
    #[error(
        "refusing unencrypted LDAP to {url}: use ldaps://, or set starttls = true, or set \
         allow_insecure = true to accept that the bind password and all data cross the network \
         in clear"
    )]
    InsecureRefused {
        /// The URL that was refused.
        url: String,
    },
    /// The CA file could not be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFileRead {
        /// The configured `ca_file`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file is not PEM, or holds no usable certificate.
    #[error("CA file {}: {reason}", path.display())]
    CaFileInvalid {
        /// The configured `ca_file`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The parser's or rustls' error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The TLS client configuration could not be built.
    #[error("TLS setup failed: {source}")]
    Tls {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// TCP connect, StartTLS or the TLS handshake (certificate verification
    /// included) failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// ldap3's error (I/O, TLS, StartTLS refusal).
        #[source]
        source: Box<ldap3::LdapError>,
    },
    /// Connecting (TCP, StartTLS and TLS handshake) took longer than `connect_timeout`.
    #[error("connecting to {url} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The server URL.
        url: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// The server refused the simple bind. For result 49 the message reads
    /// "invalid credentials for <bind_dn>".
    #[error("bind to {url} as {bind_dn} failed: {message}")]
    Bind {
        /// The server URL.
        url: String,
        /// The bind DN (never the password).
        bind_dn: String,
        /// What the server said, scrubbed of the password.
        message: String,
        /// The LDAP result code (49 for invalid credentials).
        code: u32,
    },
    /// An operation did not complete within its timeout.
    #[error("{op} {target}: timed out after {timeout:?}")]
    Timeout {
        /// The operation (`search`, `modify`, …).
        op: &'static str,
        /// The DN or base it was applied to.
        target: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection failed during an operation (closed, I/O error).
    #[error("{op} {target}: {source}")]
    Ldap {
        /// The operation (`search`, `modify`, …).
        op: &'static str,
        /// The DN or base it was applied to.
        target: String,
        /// ldap3's error.
        #[source]
        source: Box<ldap3::LdapError>,
    },
    /// The server answered an operation with an error result.
    #[error("{op} {target}: server returned {code} ({}){}", result_code_name(*code), fmt_message(message))]
    Server {
        /// The operation (`search`, `modify`, …).
        op: &'static str,
        /// The DN or base it was applied to.
        target: String,
        /// The LDAP result code.
        code: u32,
        /// The server's diagnostic message.
        message: String,
    },
    /// The server sent something this client cannot interpret.
    #[error("{op} {target}: malformed server response: {reason}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// The DN or base it was applied to.
        target: String,
        /// What was wrong.
        reason: String,
    },
    /// The entry does not exist.
    #[error("no such entry: {dn}")]
    NoSuchEntry {
        /// The DN that was read.
        dn: String,
    },
    /// A string given as a DN is not one.
    #[error("invalid DN {dn:?}: {source}")]
    InvalidDn {
        /// The string.
        dn: String,
        /// Why it is not a DN.
        #[source]
        source: DnError,
    },
    /// An attribute name argument is not a plain attribute description.
    #[error("invalid attribute name {name:?}")]
    InvalidAttribute {
        /// The name given.
        name: String,
    },
    /// A principal matched more than one entry.
    #[error("principal {principal:?} matches more than one entry under {base}")]
    AmbiguousPrincipal {
        /// The principal as written.
        principal: String,
        /// The search base.
        base: String,
    },
}

impl DirectoryError {
    /// The LDAP result code, for errors that carry one.
    pub fn result_code(&self) -> Option<u32> {
        match self {
            DirectoryError::Server { code, .. } | DirectoryError::Bind { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True if retrying later may succeed: connection failures, timeouts, and
    /// the server saying it is busy or unavailable.
    pub fn is_transient(&self) -> bool {
        match self {
            DirectoryError::Connect { .. }
            | DirectoryError::ConnectTimeout { .. }
            | DirectoryError::Timeout { .. }
            | DirectoryError::Ldap { .. } => true,
            // busy, unavailable, unwillingToPerform is not; other(80) often is a
            // transient server-side failure.
            DirectoryError::Server { code, .. } => matches!(code, 3 | 51 | 52 | 80),
            _ => false,
        }
    }
}

fn fmt_message(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// The RFC 4511 name of an LDAP result code.
pub fn result_code_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        5 => "compareFalse",
        6 => "compareTrue",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        14 => "saslBindInProgress",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        33 => "aliasProblem",
        34 => "invalidDNSyntax",
        36 => "aliasDereferencingProblem",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknown",
    }
}

/// Removes every occurrence of `secret` from `text` (defence in depth: no
/// known server echoes the password, but the message ends up in logs).
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        return text.to_owned();
    }
    text.replace(secret, "***")
}
