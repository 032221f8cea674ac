//! A direct SASL/SCRAM login over Kafka's wire protocol (SaslHandshake v1 +
//! SaslAuthenticate v1), used by `plan` to tell whether a user's live
//! password is the desired one. It costs one TCP connection and one PBKDF2,
//! where a librdkafka client costs threads and a slow teardown: plan checks
//! hundreds of users this way within its time budget.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::Login;
use crate::config::ScramMechanism;

const API_SASL_HANDSHAKE: i16 = 17;
/// Most PBKDF2 iterations a broker may ask for (Kafka allows 16384).
pub const MAX_ITERATIONS: u32 = 100_000;
const API_SASL_AUTHENTICATE: i16 = 36;

struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn request(&mut self, api_key: i16, version: i16, body: &[u8]) -> std::io::Result<Vec<u8>> {
        self.correlation += 1;
        let client_id = b"fink-login-check";
        let mut msg = Vec::with_capacity(body.len() + 32);
        msg.extend_from_slice(&api_key.to_be_bytes());
        msg.extend_from_slice(&version.to_be_bytes());
        msg.extend_from_slice(&self.correlation.to_be_bytes());
        msg.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        msg.extend_from_slice(client_id);
        msg.extend_from_slice(body);
        let mut framed = (msg.len() as i32).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        self.stream.write_all(&framed)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(4..=1 << 20).contains(&len) {
            return Err(std::io::Error::other(format!("bad response size {len}")));
        }
        let mut resp = vec![0u8; len as usize];
        self.stream.read_exact(&mut resp)?;
        // Response header v0: correlation id only.
        Ok(resp.split_off(4))
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(std::io::Error::other("truncated response"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i16(&mut self) -> std::io::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> std::io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn nullable_string(&mut self) -> std::io::Result<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(self.take(n as usize)?).into_owned()))
    }
    fn bytes(&mut self) -> std::io::Result<Vec<u8>> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(n as usize)?.to_vec())
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as i16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// The client nonce: 24 bytes from the OS, URL-safe base64 (no ',' so it
/// is a valid SCRAM attribute). No randomness is an error, never a fixed
/// nonce.
fn nonce() -> std::io::Result<String> {
    nonce_from(getrandom::fill)
}

fn nonce_from(fill: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>) -> std::io::Result<String> {
    let mut b = [0u8; 24];
    fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness for the SCRAM nonce: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// RFC 5802 saslname: ',' and '=' are escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

struct Keys {
    client_proof: Vec<u8>,
    server_signature: Vec<u8>,
}

// One body for both hashes; the hmac/pbkdf2 generic bounds are long-winded.
macro_rules! scram_keys {
    ($name:ident, $hash:ty, $len:expr) => {
        fn $name(password: &str, salt: &[u8], iterations: u32, auth_message: &str) -> Keys {
            let mut salted = [0u8; $len];
            pbkdf2::pbkdf2_hmac::<$hash>(password.as_bytes(), salt, iterations, &mut salted);
            let hmac = |key: &[u8], data: &[u8]| -> Vec<u8> {
                let mut m = Hmac::<$hash>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            };
            let client_key = hmac(&salted, b"Client Key");
            let stored_key = <$hash>::digest(&client_key).to_vec();
            let client_sig = hmac(&stored_key, auth_message.as_bytes());
            let client_proof = client_key.iter().zip(client_sig).map(|(a, b)| a ^ b).collect();
            let server_key = hmac(&salted, b"Server Key");
            Keys { client_proof, server_signature: hmac(&server_key, auth_message.as_bytes()) }
        }
    };
}
scram_keys!(keys_sha256, Sha256, 32);
scram_keys!(keys_sha512, Sha512, 64);

/// Log in as `user` with `password` on the first reachable bootstrap server.
/// `None` means this path cannot decide (e.g. protocol version refused) and
/// the caller should fall back to a librdkafka client.
pub fn login(
    bootstrap: &str,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Option<Login> {
    let mut last_err = String::from("no bootstrap server");
    for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addrs = match server.to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                last_err = format!("{server}: {e}");
                continue;
            }
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(timeout));
                    let _ = stream.set_write_timeout(Some(timeout));
                    let _ = stream.set_nodelay(true);
                    return match exchange(Conn { stream, correlation: 0 }, mechanism, user, password) {
                        Ok(outcome) => outcome,
                        Err(e) => Some(Login::Unreachable(format!("{server}: {e}"))),
                    };
                }
                Err(e) => last_err = format!("{server}: {e}"),
            }
        }
    }
    Some(Login::Unreachable(last_err))
}

fn exchange(mut c: Conn, mechanism: ScramMechanism, user: &str, password: &str) -> std::io::Result<Option<Login>> {
    let resp = c.request(API_SASL_HANDSHAKE, 1, &string(mechanism.as_str()))?;
    let mut r = Reader(&resp);
    match r.i16()? {
        0 => {}
        // UNSUPPORTED_VERSION: let librdkafka negotiate instead.
        35 => return Ok(None),
        33 => {
            return Ok(Some(Login::Refused(format!("mechanism {} is not enabled on the broker", mechanism.as_str()))))
        }
        code => return Err(std::io::Error::other(format!("SaslHandshake error code {code}"))),
    }

    let cnonce = nonce()?;
    let first_bare = format!("n={},r={cnonce}", saslname(user));
    let resp = c.request(API_SASL_AUTHENTICATE, 1, &bytes(format!("n,,{first_bare}").as_bytes()))?;
    let mut r = Reader(&resp);
    let code = r.i16()?;
    let msg = r.nullable_string()?;
    if code == 35 {
        return Ok(None);
    }
    if code != 0 {
        return Ok(Some(Login::Refused(msg.unwrap_or_else(|| format!("error code {code}")))));
    }
    let server_first = String::from_utf8_lossy(&r.bytes()?).into_owned();
    let (snonce, salt, iterations) = server_first_fields(&server_first, &cnonce)?;
    let final_bare = format!("c=biws,r={snonce}");
    let auth_message = format!("{first_bare},{server_first},{final_bare}");
    let k = match mechanism {
        ScramMechanism::Sha256 => keys_sha256(password, &salt, iterations, &auth_message),
        ScramMechanism::Sha512 => keys_sha512(password, &salt, iterations, &auth_message),
    };
    let client_final = format!("{final_bare},p={}", B64.encode(&k.client_proof));
    let resp = c.request(API_SASL_AUTHENTICATE, 1, &bytes(client_final.as_bytes()))?;
    let mut r = Reader(&resp);
    let code = r.i16()?;
    let msg = r.nullable_string()?;
    if code != 0 {
        return Ok(Some(Login::Refused(msg.unwrap_or_else(|| format!("error code {code}")))));
    }
    let server_final = String::from_utf8_lossy(&r.bytes()?).into_owned();
    // Check the broker knows the password too (mutual authentication).
    match server_final.strip_prefix("v=").and_then(|v| B64.decode(v).ok()) {
        Some(sig) if sig == k.server_signature => Ok(Some(Login::Accepted)),
        _ => Err(std::io::Error::other("the broker's SCRAM signature does not verify")),
    }
}

/// The server-first message's nonce, salt and iteration count, checked:
/// the nonce extends ours, and the count is one fink will compute.
fn server_first_fields(server_first: &str, cnonce: &str) -> std::io::Result<(String, Vec<u8>, u32)> {
    let mut snonce = None;
    let mut salt = None;
    let mut iterations = None;
    for part in server_first.split(',') {
        if let Some(v) = part.strip_prefix("r=") {
            snonce = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("s=") {
            salt = B64.decode(v).ok();
        } else if let Some(v) = part.strip_prefix("i=") {
            iterations = v.parse::<u32>().ok();
        }
    }
    let (Some(snonce), Some(salt), Some(iterations)) = (snonce, salt, iterations) else {
        return Err(std::io::Error::other("malformed SCRAM server-first message"));
    };
    // A broker's count sets how long PBKDF2 runs here: Kafka accepts
    // 4096..16384, so anything far above is refused, not computed for hours.
    if iterations > MAX_ITERATIONS {
        return Err(std::io::Error::other(format!(
            "the broker asks for {iterations} SCRAM iterations, more than the {MAX_ITERATIONS} fink accepts"
        )));
    }
    if !snonce.starts_with(cnonce) {
        return Err(std::io::Error::other("SCRAM server nonce does not extend ours"));
    }
    Ok((snonce, salt, iterations))
}

#[cfg(test)]
mod tests {
    /// A broker asking for an absurd iteration count is refused before
    /// any PBKDF2 runs; Kafka's own range passes.
    #[test]
    fn a_brokers_iteration_count_is_bounded() {
        let msg = |i: u64| format!("r=abcXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}");
        assert_eq!(super::server_first_fields(&msg(16384), "abc").unwrap().2, 16384);
        let e = super::server_first_fields(&msg(4_000_000_000), "abc").unwrap_err();
        assert!(e.to_string().contains("more than the 100000"), "{e}");
        let e = super::server_first_fields(&msg(4096), "zzz").unwrap_err();
        assert!(e.to_string().contains("does not extend ours"), "{e}");
    }

    #[test]
    fn nonces_are_random_and_a_failing_source_is_an_error() {
        let (a, b) = (super::nonce().unwrap(), super::nonce().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(!a.contains(','), "{a}");
        let e = super::nonce_from(|_| Err(getrandom::Error::UNSUPPORTED)).unwrap_err();
        assert!(e.to_string().contains("no randomness"), "{e}");
    }

    use super::*;

    /// RFC 7677's SCRAM-SHA-256 test vector.
    #[test]
    fn rfc7677_vector() {
        let first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_bare = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{first_bare},{server_first},{final_bare}");
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let k = keys_sha256("pencil", &salt, 4096, &auth);
        assert_eq!(B64.encode(&k.client_proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(B64.encode(&k.server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(saslname("a,b=c"), "a=2Cb=3Dc");
    }
}
