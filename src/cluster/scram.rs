//! SASL/SCRAM (RFC 5802) on the client side: the messages and proofs of
//! one exchange, and the direct login `plan` uses to tell whether a user's
//! live password is the desired one. The login costs one TCP connection and
//! one PBKDF2 over fink's protocol client ([`super::protocol`]), where a
//! librdkafka client costs threads and a slow teardown: plan checks
//! hundreds of users this way within its time budget.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::protocol::{Client, ProtocolError};
use super::Login;
use crate::config::ScramMechanism;

/// Most PBKDF2 iterations a broker may ask for (Kafka allows 16384).
pub const MAX_ITERATIONS: u32 = 100_000;

/// One SCRAM exchange, from the client's first message on.
pub(crate) struct Exchange {
    first_bare: String,
    cnonce: String,
}

impl Exchange {
    pub fn start(user: &str) -> std::io::Result<Exchange> {
        let cnonce = nonce()?;
        Ok(Exchange { first_bare: format!("n={},r={cnonce}", saslname(user)), cnonce })
    }

    /// `n,,n=USER,r=NONCE`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client's final message for the server's first one, and the
    /// server signature to expect.
    pub fn client_final(
        &self,
        mechanism: ScramMechanism,
        password: &str,
        server_first: &str,
    ) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let (snonce, salt, iterations) = server_first_fields(server_first, &self.cnonce)?;
        let final_bare = format!("c=biws,r={snonce}");
        let auth_message = format!("{},{server_first},{final_bare}", self.first_bare);
        let k = match mechanism {
            ScramMechanism::Sha256 => keys_sha256(password, &salt, iterations, &auth_message),
            ScramMechanism::Sha512 => keys_sha512(password, &salt, iterations, &auth_message),
        };
        Ok((format!("{final_bare},p={}", B64.encode(&k.client_proof)).into_bytes(), k.server_signature))
    }
}

/// The broker proves it knows the password too (mutual authentication).
pub(crate) fn verify_server_final(server_final: &str, signature: &[u8]) -> bool {
    server_final.strip_prefix("v=").and_then(|v| B64.decode(v).ok()).is_some_and(|sig| sig == signature)
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
    let mut c = match Client::connect(bootstrap, timeout) {
        Ok(c) => c,
        Err(ProtocolError::Unsupported { .. }) => return None,
        Err(e) => return Some(Login::Unreachable(e.to_string())),
    };
    match c.authenticate(mechanism, user, password) {
        Ok(outcome) => Some(outcome),
        // An old broker: let librdkafka negotiate instead.
        Err(ProtocolError::Unsupported { .. }) | Err(ProtocolError::Kafka { code: 35, .. }) => None,
        Err(e) => Some(Login::Unreachable(format!("{}: {e}", c.server()))),
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
