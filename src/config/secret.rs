//! Secrets: where a password comes from, and a value type that never prints.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

/// A password as declared: inline (discouraged), from an environment variable,
/// or from a file. `generate = true` lets fink create the file with a random
/// password the first time it is needed (local admin, new users).
/// A secret: the value itself (discouraged), `{ env = "VAR" }` or
/// `{ file = "path" }` (`generate = true` creates it when missing).
#[derive(Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env {
        env: String,
    },
    File {
        file: String,
        #[serde(default)]
        generate: bool,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(sensitive)"),
            Secret::Env { env } => write!(f, "Secret::Env({env})"),
            Secret::File { file, generate } => {
                write!(f, "Secret::File({file}, generate={generate})")
            }
        }
    }
}

impl Serialize for Secret {
    // Serialising a config (e.g. `--output json` views) must not leak inline passwords.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::Inline(_) => s.serialize_str("(sensitive)"),
            Secret::Env { env } => s.serialize_str(&format!("env:{env}")),
            Secret::File { file, .. } => s.serialize_str(&format!("file:{file}")),
        }
    }
}

/// A resolved secret value. Debug and Display print `(sensitive)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(s: impl Into<String>) -> Self {
        SecretValue(s.into())
    }
    /// The only way to read the value: callers that hand it to Kafka.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}
impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("password file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("password file {0} is empty")]
    Empty(String),
}

impl Secret {
    pub fn is_inline(&self) -> bool {
        matches!(self, Secret::Inline(_))
    }

    /// Resolve the value. A missing `generate = true` file is created here.
    pub fn resolve(&self, base: &Path) -> Result<SecretValue, SecretError> {
        match self {
            Secret::Inline(s) => Ok(SecretValue(s.clone())),
            Secret::Env { env } => {
                std::env::var(env).map(SecretValue).map_err(|_| SecretError::EnvMissing(env.clone()))
            }
            Secret::File { file, generate } => {
                let path = base.join(file);
                if *generate && !path.exists() {
                    write_generated(&path)
                        .map_err(|e| SecretError::File { path: file.clone(), reason: format!("cannot create: {e}") })?;
                }
                read_secret_file(&path, file)
            }
        }
    }

    /// Check the secret can be resolved without creating anything.
    pub fn check(&self, base: &Path) -> Result<(), SecretError> {
        match self {
            Secret::File { file, generate } => {
                let path = base.join(file);
                if *generate && !path.exists() {
                    return Ok(());
                }
                read_secret_file(&path, file).map(|_| ())
            }
            other => other.resolve(base).map(|_| ()),
        }
    }
}

fn read_secret_file(path: &Path, shown: &str) -> Result<SecretValue, SecretError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SecretError::File { path: shown.to_string(), reason: io_reason(&e) })?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(SecretError::Empty(shown.to_string()));
    }
    Ok(SecretValue(value))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Random alphanumeric password, 32 characters, from the OS RNG.
pub fn random_password() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a password: {e}")))?;
    // 62 symbols: reject bytes >= 248 to keep the draw uniform.
    let pw: String =
        bytes.iter().filter(|b| **b < 248).take(32).map(|b| ALPHABET[(*b % 62) as usize] as char).collect();
    Ok(pw)
}

fn write_generated(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pw = random_password()?;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(f, "{pw}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_never_prints() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v}"), "(sensitive)");
        assert_eq!(format!("{v:?}"), "(sensitive)");
        let s = Secret::Inline("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
    }

    #[test]
    fn generated_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Secret::File { file: "sub/pw".into(), generate: true };
        assert!(s.check(dir.path()).is_ok());
        let a = s.resolve(dir.path()).unwrap();
        let b = s.resolve(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.expose().len(), 32);
        let mode = std::fs::metadata(dir.path().join("sub/pw")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secret::File { file: "nope".into(), generate: false };
        let e = s.check(dir.path()).unwrap_err().to_string();
        assert_eq!(e, "password file nope: not found");
    }
}
