//! Outbound HTTP for sync out and followed actions (the Imperva MX, webhooks): one request per
//! connection, HTTPS through rustls verified against the system roots plus an optional CA
//! file, plain HTTP only where the caller allows it, every exchange bounded by a timeout.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

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
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP failed: {0}")]
    Http(String),
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
    /// An endpoint for `url`. Reads the CA file (blocking I/O).
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
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
            let client = crate::directory::tls_config(ca_file)
                .map_err(|e| OutboundError::Tls(e.to_string()))?;
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
        })
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
                    .map_err(|e| OutboundError::Tls(e.to_string()))?;
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
            if json_body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(json_body.unwrap_or_default()))
                .map_err(|e| OutboundError::Http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| OutboundError::Http(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| OutboundError::Http(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
