//! Secret lookups: the Secrets an instance names, read once per pass, and
//! what the pass makes of them: their versions (part of the configuration
//! hash, so a rotated Secret rolls the pods), what is missing, and the
//! ZooKeeper digest credentials.
//!
//! Each Secret is read by name with a GET, not kept in a cache. A cache of
//! whole Secrets would watch every Secret in the watched namespaces and
//! hold all their values in the operator's memory, where the controller's
//! Secret watch asks for metadata only and the values read here live for
//! one pass; least privilege in use matters more than the few GETs a pass
//! costs (one per named Secret, at most every 30 s per instance).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::operator::build::SecretVersion;
use crate::operator::crd::CanalInstance;
use crate::operator::zookeeper::ObservedKey;

/// A Secret an instance names: the keys the pods read from it and the spec
/// field that names it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SecretReference<'a> {
    pub name: &'a str,
    pub keys: Vec<&'a str>,
    pub field: &'static str,
}

/// Every Secret the spec names, in the spec's order.
pub(super) fn references(instance: &CanalInstance) -> Vec<SecretReference<'_>> {
    let spec = &instance.spec;
    let mut wanted = vec![SecretReference {
        name: &spec.source.credentials.secret_name,
        keys: vec![
            spec.source.credentials.username_key.as_str(),
            spec.source.credentials.password_key.as_str(),
        ],
        field: "spec.source.credentials",
    }];
    if let Some(auth) = &spec.server.client_auth {
        wanted.push(SecretReference {
            name: &auth.secret_name,
            keys: vec![auth.username_key.as_str(), auth.password_key.as_str()],
            field: "spec.server.clientAuth",
        });
    }
    if let Some(auth) = &spec.zookeeper.auth {
        wanted.push(SecretReference {
            name: &auth.secret_name,
            keys: vec![auth.key.as_str()],
            field: "spec.zookeeper.auth",
        });
    }
    wanted
}

/// The Secrets a pass reads, each once: the ZooKeeper auth Secret always
/// (the watch and the finalizer log in with it); the others only when
/// their versions are needed (a valid spec about to be built), so an
/// invalid spec is reported without touching them.
pub(super) fn names_to_read(instance: &CanalInstance, with_versions: bool) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let zookeeper = instance.spec.zookeeper.auth.as_ref();
    let others = references(instance).into_iter().map(|r| r.name);
    for name in zookeeper
        .map(|a| a.secret_name.as_str())
        .into_iter()
        .chain(others.filter(|_| with_versions))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The Secrets one pass read, by name; a name without a Secret does not
/// exist. Values included (for the ZooKeeper credentials): kept for one
/// pass only, and never printed (no `Debug`).
#[derive(Default)]
pub(super) struct ReadSecrets {
    by_name: BTreeMap<String, Secret>,
}

impl ReadSecrets {
    fn get(&self, name: &str) -> Option<&Secret> {
        self.by_name.get(name)
    }
}

impl FromIterator<(String, Secret)> for ReadSecrets {
    fn from_iter<I: IntoIterator<Item = (String, Secret)>>(secrets: I) -> Self {
        ReadSecrets {
            by_name: secrets.into_iter().collect(),
        }
    }
}

/// Reads `names` in `namespace`, one GET each.
pub(super) async fn read(
    client: &Client,
    namespace: &str,
    names: &[&str],
) -> kube::Result<ReadSecrets> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut read = ReadSecrets::default();
    for name in names {
        if let Some(secret) = secrets.get_opt(name).await? {
            read.by_name.insert((*name).to_owned(), secret);
        }
    }
    Ok(read)
}

/// The ZooKeeper key of an instance, with the digest credentials from its
/// Secret (`user:password`); `None` when that Secret or its key cannot be
/// read.
pub(super) fn zookeeper_key(
    instance: &CanalInstance,
    secrets: &ReadSecrets,
) -> Option<ObservedKey> {
    let zookeeper = &instance.spec.zookeeper;
    let auth = match &zookeeper.auth {
        None => None,
        Some(reference) => {
            let value = secrets
                .get(&reference.secret_name)
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(&reference.key))
                .and_then(|v| std::str::from_utf8(&v.0).ok());
            let (user, password) = value?.split_once(':')?;
            Some((user.to_owned(), password.to_owned()))
        }
    };
    Some(ObservedKey {
        connect: zookeeper.connect.clone(),
        auth,
        destination: instance.destination(),
    })
}

/// What is wrong with one Secret reference.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum SecretProblem {
    #[error("{field}: Secret {namespace}/{name} does not exist")]
    Absent {
        field: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{field}: Secret {namespace}/{name} has no key {key:?}")]
    NoKey {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
}

/// Named Secrets, or keys in them, that do not exist: the spec cannot be
/// applied until someone creates them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub(super) struct MissingSecrets {
    pub problems: Vec<SecretProblem>,
}

/// The versions of every Secret the pods read (from `secrets`, which must
/// hold what [`names_to_read`] named with versions), or what is missing.
pub(super) fn versions(
    instance: &CanalInstance,
    namespace: &str,
    secrets: &ReadSecrets,
) -> Result<Vec<SecretVersion>, MissingSecrets> {
    let mut versions = Vec::new();
    let mut problems = Vec::new();
    for SecretReference { name, keys, field } in references(instance) {
        let Some(secret) = secrets.get(name) else {
            problems.push(SecretProblem::Absent {
                field,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
            continue;
        };
        let has = |key: &str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key))
        };
        for key in keys.into_iter().filter(|k| !has(k)) {
            problems.push(SecretProblem::NoKey {
                field,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key: key.to_owned(),
            });
        }
        versions.push(SecretVersion {
            name: name.to_owned(),
            uid: secret.metadata.uid.clone().unwrap_or_default(),
            resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
        });
    }
    if problems.is_empty() {
        Ok(versions)
    } else {
        Err(MissingSecrets { problems })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::operator::crd::SecretKeyRef;

    fn instance() -> CanalInstance {
        let text = include_str!("../../../tests/fixtures/operator/orders.yaml");
        serde_saphyr::from_str(text).expect("fixture parses")
    }

    fn with_zookeeper_auth(secret_name: &str) -> CanalInstance {
        let mut instance = instance();
        instance.spec.zookeeper.auth = Some(SecretKeyRef {
            secret_name: secret_name.into(),
            key: "digest".into(),
        });
        instance
    }

    fn secret(name: &str, version: &str, data: &[(&str, &str)]) -> (String, Secret) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        (name.to_owned(), secret)
    }

    #[test]
    fn the_zookeeper_secret_is_read_once_even_when_named_twice() {
        let instance = with_zookeeper_auth("orders-replication");
        assert_eq!(
            names_to_read(&instance, true),
            ["orders-replication", "orders-clients"]
        );
        assert_eq!(names_to_read(&instance, false), ["orders-replication"]);
        assert!(names_to_read(&self::instance(), false).is_empty());
    }

    #[test]
    fn versions_name_every_reference_and_the_problems_each_field() {
        let instance = with_zookeeper_auth("zk");
        let secrets: ReadSecrets = [
            secret(
                "orders-replication",
                "7",
                &[("username", "u"), ("password", "p")],
            ),
            secret("zk", "9", &[("other", "x")]),
        ]
        .into_iter()
        .collect();
        let missing = versions(&instance, "shop", &secrets).expect_err("problems");
        assert_eq!(
            missing.to_string(),
            "spec.server.clientAuth: Secret shop/orders-clients does not exist; \
             spec.zookeeper.auth: Secret shop/zk has no key \"digest\""
        );
        let secrets: ReadSecrets = [
            secret(
                "orders-replication",
                "7",
                &[("username", "u"), ("password", "p")],
            ),
            secret(
                "orders-clients",
                "8",
                &[("username", "u"), ("password", "p")],
            ),
            secret("zk", "9", &[("digest", "canal:secret")]),
        ]
        .into_iter()
        .collect();
        let found = versions(&instance, "shop", &secrets).expect("all there");
        let names: Vec<_> = found
            .iter()
            .map(|v| (v.name.as_str(), v.resource_version.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("orders-replication", "7"),
                ("orders-clients", "8"),
                ("zk", "9")
            ]
        );
    }

    #[test]
    fn the_zookeeper_key_carries_the_digest_credentials_or_is_unknown() {
        let plain = zookeeper_key(&instance(), &ReadSecrets::default()).expect("no auth needed");
        assert_eq!(plain.auth, None);
        assert_eq!(plain.destination, instance().destination());

        let instance = with_zookeeper_auth("zk");
        assert!(zookeeper_key(&instance, &ReadSecrets::default()).is_none());
        let malformed: ReadSecrets = [secret("zk", "1", &[("digest", "no-colon")])]
            .into_iter()
            .collect();
        assert!(zookeeper_key(&instance, &malformed).is_none());
        let good: ReadSecrets = [secret("zk", "1", &[("digest", "canal:pa:ss")])]
            .into_iter()
            .collect();
        let key = zookeeper_key(&instance, &good).expect("credentials");
        assert_eq!(key.auth, Some(("canal".into(), "pa:ss".into())));
    }
}
