//! What observations and admin operations are keyed by, the checks on the
//! names that become ZooKeeper paths, and those paths.

use crate::{cursor::zk::DESTINATIONS, ha::zk_session::DigestAuth, store::ClientId};

/// Why a key, destination name or client id cannot be used in ZooKeeper;
/// each message says what a usable one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The destination is no single node name.
    #[error(
        "destination name {name:?} cannot be a ZooKeeper node name below {DESTINATIONS}: \
         it must be non-empty, not '.' or '..', without '/', '\\', whitespace or control \
         characters"
    )]
    Destination {
        /// The refused name.
        name: String,
    },
    /// The client id is not written the way canal-server writes it.
    #[error(
        "client id {id:?} is not a canal client id: a whole number from 0 to {max} written \
         without sign or leading zeros, such as 1001",
        max = ClientId::MAX
    )]
    ClientId {
        /// The refused id.
        id: String,
    },
    /// There is no ensemble to connect to.
    #[error("the ZooKeeper connect string is empty")]
    EmptyConnect,
    /// ZooKeeper's digest scheme cannot carry this user name.
    #[error(
        "ZooKeeper digest user {user:?} is not usable: it must be non-empty and contain no ':'"
    )]
    DigestUser {
        /// The refused user name.
        user: String,
    },
}

/// One destination on one ensemble, as one set of credentials sees it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObservedKey {
    /// The ZooKeeper connect string (`host:port,host:port[/chroot]`).
    pub connect: String,
    /// Digest credentials: (user, password).
    pub auth: Option<(String, String)>,
    /// The canal destination.
    pub destination: String,
}

impl ObservedKey {
    /// A key without credentials.
    pub fn new(connect: impl Into<String>, destination: impl Into<String>) -> ObservedKey {
        ObservedKey {
            connect: connect.into(),
            auth: None,
            destination: destination.into(),
        }
    }

    /// The same key, seen with digest credentials.
    pub fn with_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// The session this key is observed through; `Err` says what is wrong
    /// with the key.
    pub(crate) fn session_key(&self) -> Result<SessionKey, KeyError> {
        check_destination(&self.destination)?;
        if self.connect.trim().is_empty() {
            return Err(KeyError::EmptyConnect);
        }
        let auth = match &self.auth {
            None => None,
            Some((user, password)) => Some(
                DigestAuth::new(user, password)
                    .ok_or_else(|| KeyError::DigestUser { user: user.clone() })?,
            ),
        };
        Ok(SessionKey {
            connect: self.connect.trim().to_owned(),
            auth,
        })
    }
}

/// The password never reaches a log through `{:?}`.
impl std::fmt::Debug for ObservedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedKey")
            .field("connect", &self.connect)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<redacted>")),
            )
            .field("destination", &self.destination)
            .finish()
    }
}

impl std::fmt::Display for ObservedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "destination {} on {}", self.destination, self.connect)
    }
}

/// What sessions are shared by: one per ensemble and credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub connect: String,
    pub auth: Option<DigestAuth>,
}

/// A destination name usable as one ZooKeeper node name below
/// `/otter/canal/destinations` (the rule canal-server applies to
/// `canal.destinations`).
pub fn check_destination(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(KeyError::Destination {
            name: name.to_owned(),
        })
    }
}

/// A client id as canal-server writes it in paths: a short (`1001`), no
/// sign, no leading zeros.
pub fn check_client_id(id: &str) -> Result<(), KeyError> {
    match id.parse::<ClientId>() {
        Ok(n) if n >= 0 && n.to_string() == id => Ok(()),
        _ => Err(KeyError::ClientId { id: id.to_owned() }),
    }
}

/// canal's rule: every numeric child of `{dest}` is a client.
pub fn is_client_id(child: &str) -> bool {
    !child.is_empty() && child.bytes().all(|b| b.is_ascii_digit())
}

/// Client ids in numeric order (then as text, for ids beyond u64).
pub fn sort_client_ids(ids: &mut [String]) {
    ids.sort_by(|a, b| {
        (a.parse::<u64>().ok(), a.as_str()).cmp(&(b.parse::<u64>().ok(), b.as_str()))
    });
}

/// The nodes of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    pub destination: String,
    pub running: String,
    pub cluster: String,
}

impl Paths {
    pub fn new(destination: &str) -> Result<Paths, KeyError> {
        check_destination(destination)?;
        let base = format!("{DESTINATIONS}/{destination}");
        Ok(Paths {
            running: format!("{base}/running"),
            cluster: format!("{base}/cluster"),
            destination: base,
        })
    }

    pub fn client(&self, client_id: &str) -> String {
        format!("{}/{client_id}", self.destination)
    }

    pub fn cursor(&self, client_id: &str) -> String {
        format!("{}/{client_id}/cursor", self.destination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_names_stay_below_their_node() {
        for bad in ["", ".", "..", "a/b", "a b", "a\\b", "x\n"] {
            assert!(check_destination(bad).is_err(), "{bad:?}");
            assert!(Paths::new(bad).is_err(), "{bad:?}");
        }
        let paths = Paths::new("example").unwrap();
        assert_eq!(paths.destination, "/otter/canal/destinations/example");
        assert_eq!(paths.running, "/otter/canal/destinations/example/running");
        assert_eq!(paths.cluster, "/otter/canal/destinations/example/cluster");
        assert_eq!(
            paths.cursor("1001"),
            "/otter/canal/destinations/example/1001/cursor"
        );
    }

    #[test]
    fn client_ids() {
        assert!(check_client_id("1001").is_ok());
        assert!(check_client_id("0").is_ok());
        for bad in ["", "01", "+1", "-1", "1e3", "40000", "abc"] {
            assert!(check_client_id(bad).is_err(), "{bad:?}");
        }
        assert!(is_client_id("1001") && !is_client_id("running") && !is_client_id(""));
        let mut ids = vec!["1001".to_owned(), "999".to_owned(), "12".to_owned()];
        sort_client_ids(&mut ids);
        assert_eq!(ids, ["12", "999", "1001"]);
    }

    #[test]
    fn messages_say_what_a_usable_name_looks_like() {
        assert_eq!(
            check_destination("a/b").unwrap_err().to_string(),
            "destination name \"a/b\" cannot be a ZooKeeper node name below \
             /otter/canal/destinations: it must be non-empty, not '.' or '..', without '/', \
             '\\', whitespace or control characters"
        );
        assert_eq!(
            check_client_id("01").unwrap_err().to_string(),
            "client id \"01\" is not a canal client id: a whole number from 0 to 32767 written \
             without sign or leading zeros, such as 1001"
        );
        assert_eq!(
            ObservedKey::new("zk:2181", "example")
                .with_auth("a:b", "c")
                .session_key()
                .unwrap_err()
                .to_string(),
            "ZooKeeper digest user \"a:b\" is not usable: it must be non-empty and contain no ':'"
        );
    }

    #[test]
    fn keys_hide_the_password() {
        let key = ObservedKey::new("zk:2181", "example").with_auth("canal", "s3cret");
        let shown = format!("{key:?} {key}");
        assert!(
            shown.contains("canal") && !shown.contains("s3cret"),
            "{shown}"
        );
        let session = key.session_key().unwrap();
        assert_eq!(session.auth.unwrap().credentials(), b"canal:s3cret");
        assert!(
            ObservedKey::new("zk:2181", "example")
                .with_auth("a:b", "c")
                .session_key()
                .is_err()
        );
        assert!(ObservedKey::new(" ", "example").session_key().is_err());
        assert!(ObservedKey::new("zk:2181", "a/b").session_key().is_err());
    }
}
