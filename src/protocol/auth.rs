//! canal's client authentication: a MySQL 4.1-style scramble over the
//! 8-byte seed the server sends in its handshake.
//!
//! The server keeps `canal.passwd` = hex(SHA1(SHA1(password))); a client
//! sends hex(SHA1(seed ‖ SHA1(SHA1(password))) XOR SHA1(password)); the
//! server recovers SHA1(password) from that and checks its SHA1.

use sha1::{Digest, Sha1};

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `canal.passwd` for a password: lowercase hex of SHA1(SHA1(password)).
pub fn server_secret(password: &str) -> String {
    hex::encode(sha1(&[&sha1(&[password.as_bytes()])]))
}

/// The token a client sends for `password` and `seed`.
pub fn client_token(password: &str, seed: &[u8]) -> String {
    let stage1 = sha1(&[password.as_bytes()]);
    let stage2 = sha1(&[&stage1]);
    let mixed = sha1(&[seed, &stage2]);
    let token: Vec<u8> = mixed.iter().zip(stage1).map(|(a, b)| a ^ b).collect();
    hex::encode(token)
}

/// The server's configured credentials (`canal.user`, `canal.passwd`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user clients must log in as (`canal.user`); unset or empty: any user name.
    pub user: Option<String>,
    /// hex(SHA1(SHA1(password))), lowercase or not.
    pub passwd: Option<String>,
}

impl Credentials {
    /// Whether `username` with `token` (the ClientAuth password bytes, a hex
    /// string) may connect after the server sent `seed`.
    pub fn accepts(&self, username: &str, token: &[u8], seed: &[u8]) -> bool {
        let user = self.user.as_deref().unwrap_or("");
        if !user.is_empty() && user != username {
            return false;
        }
        let Some(secret) = self.passwd.as_deref().filter(|p| !p.is_empty()) else {
            return true;
        };
        let (Ok(secret), Ok(token)) = (hex::decode(secret), hex::decode(token)) else {
            return false;
        };
        if secret.len() != 20 || token.len() != 20 {
            return false;
        }
        let mixed = sha1(&[seed, &secret]);
        let stage1: Vec<u8> = token.iter().zip(mixed).map(|(a, b)| a ^ b).collect();
        sha1(&[&stage1]).as_slice() == secret.as_slice()
    }
}

/// 8 random bytes for a handshake.
pub fn new_seed() -> [u8; 8] {
    let mut seed = [0u8; 8];
    // The OS random source failing is not recoverable in any useful way;
    // a zero seed would still authenticate correctly, only less safely.
    if getrandom::fill(&mut seed).is_err() {
        tracing::error!("the OS random source failed; using a time-derived handshake seed");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        seed = nanos.to_le_bytes();
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn protocol_test_vectors() {
        assert_eq!(
            server_secret("canal"),
            "e3619321c1a937c46a0d8bd1dac39f93b27d4458"
        );
        assert_eq!(
            server_secret("admin"),
            "4acfe3202a5ff5cf467898fc58aab1d615029441"
        );
        assert_eq!(
            client_token("canal", &SEED),
            "7de44690d8e53782cb61804a2455c284a3bbfb06"
        );
    }

    #[test]
    fn server_checks() {
        let creds = Credentials {
            user: Some("canal".into()),
            passwd: Some(server_secret("canal")),
        };
        let token = client_token("canal", &SEED);
        assert!(creds.accepts("canal", token.as_bytes(), &SEED));
        assert!(!creds.accepts("other", token.as_bytes(), &SEED));
        assert!(!creds.accepts("canal", client_token("wrong", &SEED).as_bytes(), &SEED));
        assert!(!creds.accepts("canal", b"", &SEED));
        assert!(!creds.accepts("canal", b"not hex", &SEED));
        assert!(
            !creds.accepts("canal", token.as_bytes(), &[9; 8]),
            "token is bound to the seed"
        );
        let open = Credentials::default();
        assert!(open.accepts("anyone", b"anything", &SEED));
        let user_only = Credentials {
            user: Some("canal".into()),
            passwd: None,
        };
        assert!(user_only.accepts("canal", b"", &SEED) && !user_only.accepts("x", b"", &SEED));
        let upper = Credentials {
            user: None,
            passwd: Some(server_secret("canal").to_uppercase()),
        };
        assert!(upper.accepts("whoever", token.as_bytes(), &SEED));
    }
}
