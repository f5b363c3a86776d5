//! Outbound HTTP for sync out, followed actions and single sign-on (the Imperva MX, webhooks,
//! the console's OpenID Connect provider): one request per connection, HTTPS through rustls
//! verified against the system roots plus an optional CA file — or, for a server whose
//! certificate no CA vouches for (an MX's self-signed one), against exactly that certificate
//! by its SHA-256 fingerprint ([`Trust::Pin`]) — plain HTTP only where the caller allows it,
//! every exchange bounded by a timeout. Nothing here turns verification off.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::base::fingerprint::CertFingerprint;

/// Largest response body read from an MX or a webhook receiver (1 MiB): the answers warden
/// reads are small JSON documents, and a receiver must not make warden buffer without bound.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{0}")]
    Url(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("TLS failed: {0}")]
    PinMismatch(PinMismatch),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP failed: {0}")]
    Http(String),
    #[error("the response body exceeds MAX_RESPONSE_BYTES ({limit} bytes); not read further")]
    TooLarge { limit: usize },
}

/// What a TLS endpoint trusts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The system roots plus an optional CA file; the host name is checked.
    Roots(Option<&'a Path>),
    /// Exactly one certificate, the server's own, by the SHA-256 of its DER encoding. No CA,
    /// name or validity period enters: the operator approved that certificate. The handshake
    /// is still verified: the server signs it with the certificate's key, so a copy of the
    /// certificate alone does not pass.
    Pin(CertFingerprint),
}

/// A server certificate that is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server's certificate has SHA-256 fingerprint {found}, not the pinned {pinned} \
     (tls_pin); if the certificate was replaced, check the new one out of band before pinning it"
)]
pub struct PinMismatch {
    found: CertFingerprint,
    pinned: CertFingerprint,
}

/// Verifies a server by its pinned certificate ([`Trust::Pin`]).
#[derive(Debug)]
struct PinnedCertificate {
    pin: CertFingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        let mut found = [0u8; 32];
        found.copy_from_slice(digest.as_ref());
        let found = CertFingerprint::from_digest(found);
        if found == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch {
            found,
            pinned: self.pin,
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration that trusts exactly the pinned certificate.
fn pinned_config(pin: CertFingerprint) -> Result<Arc<rustls::ClientConfig>, OutboundError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertificate {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A failed TLS handshake, saying so plainly when the certificate was not the pinned one.
fn tls_error(e: std::io::Error) -> OutboundError {
    let mismatch = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinMismatch>()
            }
            _ => None,
        });
    match mismatch {
        Some(m) => OutboundError::PinMismatch(PinMismatch {
            found: m.found,
            pinned: m.pinned,
        }),
        None => OutboundError::Tls(e.to_string()),
    }
}

/// A stream: plain TCP (opt-in) or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where requests go: host, port, TLS, timeout.
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    /// The path part of the URL, requests' paths are appended to it.
    base_path: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    /// The largest response body read ([`MAX_RESPONSE_BYTES`] unless the caller says).
    max_response: usize,
}

/// Splits `https://host:port/path` into (tls, host, port, path).
pub fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} must start with https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((
        tls,
        host.to_owned(),
        port,
        path.trim_end_matches('/').to_owned(),
    ))
}

impl Endpoint {
    /// An endpoint for `url`, verified against the system roots and `ca_file`. Reads the CA
    /// file (blocking I/O).
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        allow_insecure: bool,
        timeout: Duration,
    ) -> Result<Endpoint, OutboundError> {
        Endpoint::with_trust(url, Trust::Roots(ca_file), allow_insecure, timeout)
    }

    /// An endpoint for `url` whose TLS trusts `trust`. Reads a CA file (blocking I/O).
    pub fn with_trust(
        url: &str,
        trust: Trust<'_>,
        allow_insecure: bool,
        timeout: Duration,
    ) -> Result<Endpoint, OutboundError> {
        let (tls, host, port, base_path) = parse_url(url).map_err(OutboundError::Url)?;
        if !tls && !allow_insecure {
            return Err(OutboundError::Url(format!(
                "{url:?}: plain http needs allow_insecure = true; credentials and data would travel in clear"
            )));
        }
        let tls = if tls {
            let client = match trust {
                Trust::Roots(ca_file) => crate::directory::tls_config(ca_file)
                    .map_err(|e| OutboundError::Tls(e.to_string()))?,
                Trust::Pin(pin) => pinned_config(pin)?,
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| OutboundError::Url(format!("host {host:?}: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(client), name))
        } else {
            None
        };
        Ok(Endpoint {
            url: url.to_owned(),
            host,
            port,
            base_path,
            tls,
            timeout,
            max_response: MAX_RESPONSE_BYTES,
        })
    }

    /// Reads response bodies of up to `bytes` (an MX answers pages of records).
    pub fn with_response_limit(mut self, bytes: usize) -> Endpoint {
        self.max_response = bytes;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn connect(&self) -> Result<Box<dyn Io>, OutboundError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| OutboundError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(tls_error)?;
                Ok(Box::new(stream))
            }
        }
    }

    /// One request on a fresh connection, within the timeout. A JSON body sets the content
    /// type.
    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        json_body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), OutboundError> {
        let body = json_body.map(|b| ("application/json", b));
        self.send_body(method, path, headers, body).await
    }

    /// One request on a fresh connection, within the timeout, with a body of the given content
    /// type (an OpenID Connect token request is a form).
    pub async fn send_body(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&'static str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), OutboundError> {
        let exchange = async {
            let io = self.connect().await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| OutboundError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let target = format!("{}{path}", self.base_path);
            let target = if target.is_empty() {
                "/".to_owned()
            } else {
                target
            };
            let mut req = hyper::Request::builder()
                .method(method.clone())
                .uri(target)
                .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
                .header(hyper::header::ACCEPT, "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let (content_type, body) = match body {
                Some((content_type, body)) => (Some(content_type), body),
                None => (None, Bytes::new()),
            };
            if let Some(content_type) = content_type {
                req = req.header(hyper::header::CONTENT_TYPE, content_type);
            }
            let req = req
                .body(Full::new(body))
                .map_err(|e| OutboundError::Http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| OutboundError::Http(e.to_string()))?;
            let status = resp.status();
            let body = read_limited(resp.into_body(), self.max_response).await?;
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(self.timeout))?
    }
}

/// Reads a response body of at most `limit` bytes.
async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, OutboundError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(OutboundError::TooLarge { limit })
        }
        Err(e) => Err(OutboundError::Http(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A receiver answering with an endless body: the read stops at the limit and says so.
    #[tokio::test]
    async fn a_response_body_beyond_the_limit_is_refused_not_buffered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
            // 4 MiB at most, far beyond the limit; the client hangs up first.
            for _ in 0..64 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let endpoint = Endpoint::new(
            &format!("http://{addr}"),
            None,
            true,
            Duration::from_secs(10),
        )
        .unwrap();
        let err = endpoint
            .send(&Method::GET, "/", &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OutboundError::TooLarge { limit } if limit == MAX_RESPONSE_BYTES),
            "{err}"
        );
        assert!(err.to_string().contains("MAX_RESPONSE_BYTES"), "{err}");
    }

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let p = |u| parse_url(u).unwrap();
        assert_eq!(
            p("https://mx.example:8083"),
            (true, "mx.example".into(), 8083, String::new())
        );
        assert_eq!(
            p("https://mx.example"),
            (true, "mx.example".into(), 443, String::new())
        );
        assert_eq!(
            p("http://127.0.0.1:9/hook/"),
            (false, "127.0.0.1".into(), 9, "/hook".into())
        );
        assert_eq!(
            p("https://[::1]:8083"),
            (true, "::1".into(), 8083, String::new())
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("https://:80").is_err());
        assert!(parse_url("https://x:port").is_err());
    }
}
