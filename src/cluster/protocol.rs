//! A Kafka protocol client for the APIs librdkafka lacks (client quotas,
//! KIP-546; partition reassignment, KIP-455): messages encoded and decoded
//! by the `kafka-protocol` crate (generated from Kafka's message specs),
//! over one blocking connection authenticated with SASL/SCRAM. fink only
//! frames and sends them; it never hand-writes a message encoding.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes};

use crate::config::ScramMechanism;

/// Largest response fink reads (a describe of every quota or partition of
/// a big cluster stays far below).
const MAX_RESPONSE: usize = 64 << 20;

/// Why a request got no answer fink can use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(String),
    /// The broker does not know this API (or no version fink speaks).
    #[error("the broker does not support {api} (it needs Kafka {min_kafka} or later)")]
    Unsupported { api: &'static str, min_kafka: &'static str },
    #[error("{api}: {message} (Kafka error code {code})")]
    Kafka { api: &'static str, code: i16, message: String },
    #[error("SASL authentication as {user:?} failed: {message}")]
    Auth { user: String, message: String },
}

fn io(server: &str, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Io(format!("{server}: {e}"))
}

/// The socket: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// TLS settings: the CA file clients trust (`[cluster] ssl_ca_location`),
/// or the system's roots.
pub fn tls_config(ca: Option<&std::path::Path>) -> Result<std::sync::Arc<rustls::ClientConfig>, ProtocolError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| ProtocolError::Io(format!("CA file {}: {e}", path.display())))?;
            for c in certs {
                let c = c.map_err(|e| ProtocolError::Io(format!("CA file {}: {e}", path.display())))?;
                roots.add(c).map_err(|e| ProtocolError::Io(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProtocolError::Io(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// One authenticated connection to a broker.
pub struct Client {
    stream: Stream,
    server: String,
    correlation: i32,
    /// API key -> (min, max) versions the broker accepts.
    versions: BTreeMap<i16, (i16, i16)>,
}

/// The Kafka release that brought an API, for the refusal message.
fn min_kafka(key: ApiKey) -> &'static str {
    match key {
        ApiKey::DescribeClientQuotas | ApiKey::AlterClientQuotas => "2.6",
        ApiKey::AlterPartitionReassignments | ApiKey::ListPartitionReassignments => "2.4",
        _ => "2.0",
    }
}

impl Client {
    /// Connect to the first reachable server of `bootstrap` and learn its
    /// API versions.
    pub fn connect(bootstrap: &str, timeout: Duration) -> Result<Client, ProtocolError> {
        Client::connect_with(bootstrap, timeout, None)
    }

    /// [`Client::connect`], over TLS when `tls` is given (the broker's
    /// certificate checked against its host name).
    pub fn connect_with(
        bootstrap: &str,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Client, ProtocolError> {
        let mut last = ProtocolError::Io("no bootstrap server".into());
        for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let addrs = match server.to_socket_addrs() {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    last = io(server, e);
                    continue;
                }
            };
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(tcp) => {
                        let _ = tcp.set_read_timeout(Some(timeout));
                        let _ = tcp.set_write_timeout(Some(timeout));
                        let _ = tcp.set_nodelay(true);
                        let stream = match &tls {
                            None => Stream::Plain(tcp),
                            Some(cfg) => {
                                let host = server.rsplit_once(':').map(|(h, _)| h).unwrap_or(server);
                                let name = rustls_pki_types::ServerName::try_from(host.to_string())
                                    .map_err(|e| io(server, format!("not a TLS server name: {e}")))?;
                                let conn = rustls::ClientConnection::new(cfg.clone(), name)
                                    .map_err(|e| io(server, format!("TLS: {e}")))?;
                                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
                            }
                        };
                        let mut c =
                            Client { stream, server: server.to_string(), correlation: 0, versions: BTreeMap::new() };
                        c.api_versions()?;
                        return Ok(c);
                    }
                    Err(e) => last = io(server, e),
                }
            }
        }
        Err(last)
    }

    /// Connect (over TLS when `tls` is given) and log in with SCRAM.
    pub fn login(
        bootstrap: &str,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<Client, ProtocolError> {
        let mut c = Client::connect_with(bootstrap, timeout, tls)?;
        match c.authenticate(mechanism, user, password)? {
            super::Login::Accepted => Ok(c),
            super::Login::Refused(m) | super::Login::Unreachable(m) => {
                Err(ProtocolError::Auth { user: user.to_string(), message: m })
            }
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    fn api_versions(&mut self) -> Result<(), ProtocolError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("fink"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know it answers in v0 with its range.
        let resp: ApiVersionsResponse = self.send_raw(&req, 3)?;
        let resp = if resp.error_code == 35 { self.send_raw(&ApiVersionsRequest::default(), 0)? } else { resp };
        if resp.error_code != 0 {
            return Err(ProtocolError::Kafka {
                api: "ApiVersions",
                code: resp.error_code,
                message: "the broker refused the version handshake".into(),
            });
        }
        self.versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    /// The highest version of `R` both sides speak.
    pub fn version<R: Request>(&self) -> Result<i16, ProtocolError> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| ProtocolError::Io(format!("unknown API key {}", R::KEY)))?;
        let api = api_name(key);
        let (bmin, bmax) =
            *self.versions.get(&R::KEY).ok_or(ProtocolError::Unsupported { api, min_kafka: min_kafka(key) })?;
        let (cmin, cmax) = (R::VERSIONS.min, R::VERSIONS.max);
        let v = bmax.min(cmax);
        if v < bmin.max(cmin) {
            return Err(ProtocolError::Unsupported { api, min_kafka: min_kafka(key) });
        }
        Ok(v)
    }

    /// Send `req` at the highest common version.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<R::Response, ProtocolError> {
        let v = self.version::<R>()?;
        self.send_raw(req, v)
    }

    fn send_raw<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, ProtocolError> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("fink")));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &header).map_err(|e| ProtocolError::Io(e.to_string()))?;
        req.encode(&mut buf, version).map_err(|e| ProtocolError::Io(e.to_string()))?;
        let mut framed = Vec::with_capacity(buf.len() + 4);
        framed.extend_from_slice(&(buf.len() as i32).to_be_bytes());
        framed.extend_from_slice(&buf);
        let server = self.server.clone();
        self.stream.write_all(&framed).map_err(|e| io(&server, e))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| io(&server, e))?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_RESPONSE {
            return Err(io(&server, format!("bad response size {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).map_err(|e| io(&server, e))?;
        let mut bytes = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))
            .map_err(|e| io(&server, format!("undecodable response header: {e}")))?;
        if rh.correlation_id != self.correlation {
            return Err(io(&server, "a response to another request"));
        }
        R::Response::decode(&mut bytes, version).map_err(|e| io(&server, format!("undecodable response: {e}")))
    }

    /// SaslHandshake + SaslAuthenticate with SCRAM (RFC 5802), the broker's
    /// signature checked. `Refused`: wrong password or mechanism.
    pub fn authenticate(
        &mut self,
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<super::Login, ProtocolError> {
        use super::Login;
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.as_str().into()));
        let resp = self.send_raw(&hs, 1)?;
        match resp.error_code {
            0 => {}
            33 => return Ok(Login::Refused(format!("mechanism {} is not enabled on the broker", mechanism.as_str()))),
            code => {
                return Err(ProtocolError::Kafka { api: "SaslHandshake", code, message: "handshake refused".into() })
            }
        }
        let version = self.version::<SaslAuthenticateRequest>()?;
        let scram = super::scram::Exchange::start(user).map_err(|e| ProtocolError::Io(e.to_string()))?;
        let first = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(scram.client_first()));
        let resp = self.send_raw(&first, version)?;
        if resp.error_code != 0 {
            return Ok(Login::Refused(resp.error_message.map(|m| m.to_string()).unwrap_or_default()));
        }
        let server_first = String::from_utf8_lossy(&resp.auth_bytes).into_owned();
        let (client_final, signature) =
            scram.client_final(mechanism, password, &server_first).map_err(|e| ProtocolError::Io(e.to_string()))?;
        let resp =
            self.send_raw(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(client_final)), version)?;
        if resp.error_code != 0 {
            return Ok(Login::Refused(
                resp.error_message.map(|m| m.to_string()).unwrap_or_else(|| format!("error code {}", resp.error_code)),
            ));
        }
        let server_final = String::from_utf8_lossy(&resp.auth_bytes).into_owned();
        if super::scram::verify_server_final(&server_final, &signature) {
            Ok(Login::Accepted)
        } else {
            Err(ProtocolError::Io(format!("{}: the broker's SCRAM signature does not verify", self.server)))
        }
    }
}

fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::ApiVersions => "ApiVersions",
        _ => "a Kafka API",
    }
}
