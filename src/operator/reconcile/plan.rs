//! What a pass does to the children, decided from the instance and the
//! Secrets it read: pure.

use crate::operator::build::properties::Rendered;
use crate::operator::build::{self, BuildInputs, Desired};
use crate::operator::crd::CanalInstance;
use crate::operator::status::Outcome;
use crate::operator::validate::Invalid;

use super::secrets::{self, ReadSecrets};

/// What the pass will do to the children.
pub(super) enum Plan {
    /// Leave them as they are, for this reason.
    Leave(Outcome),
    /// Apply these; `config_hash` goes into the status once they are.
    Apply {
        desired: Box<Desired>,
        config_hash: String,
    },
}

/// The plan for `instance`, validated as `validated`, whose Secrets (in
/// `namespace`) are `secrets`.
pub(super) fn plan(
    instance: &CanalInstance,
    validated: Result<Rendered, Invalid>,
    namespace: &str,
    secrets: &ReadSecrets,
    default_image: &str,
) -> Plan {
    let rendered = match validated {
        Ok(rendered) => rendered,
        Err(invalid) => {
            return Plan::Leave(Outcome::Invalid {
                reason: "InvalidSpec",
                message: invalid.to_string(),
            });
        }
    };
    let versions = match secrets::versions(instance, namespace, secrets) {
        Ok(versions) => versions,
        Err(missing) => {
            return Plan::Leave(Outcome::Invalid {
                reason: "SecretMissing",
                message: missing.to_string(),
            });
        }
    };
    if instance.spec.paused {
        return Plan::Leave(Outcome::Paused);
    }
    let config_hash = build::config_hash(&rendered, &versions);
    let inputs = BuildInputs {
        default_image: default_image.to_owned(),
        config_hash: config_hash.clone(),
    };
    Plan::Apply {
        desired: Box::new(build::build(instance, &rendered, &inputs)),
        config_hash,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::operator::validate::validate;

    fn instance() -> CanalInstance {
        let text = include_str!("../../../tests/fixtures/operator/orders.yaml");
        serde_saphyr::from_str(text).expect("fixture parses")
    }

    fn secret(name: &str) -> (String, Secret) {
        let data = ["username", "password"]
            .map(|key| (key.to_owned(), ByteString(b"canal".to_vec())))
            .into();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        (name.to_owned(), secret)
    }

    fn all_secrets() -> ReadSecrets {
        [secret("orders-replication"), secret("orders-clients")]
            .into_iter()
            .collect()
    }

    fn outcome(plan: Plan) -> Option<Outcome> {
        match plan {
            Plan::Leave(outcome) => Some(outcome),
            Plan::Apply { .. } => None,
        }
    }

    #[test]
    fn a_valid_spec_with_its_secrets_is_applied_with_their_hash() {
        let instance = instance();
        let rendered = validate(&instance).expect("fixture is valid");
        let Plan::Apply {
            desired,
            config_hash,
        } = plan(
            &instance,
            Ok(rendered),
            "shop",
            &all_secrets(),
            "image:test",
        )
        else {
            panic!("a valid spec is applied");
        };
        assert_eq!(config_hash.len(), 16);
        let annotations = desired
            .statefulset
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref()?.annotations.clone());
        assert!(
            annotations.is_some_and(|a| a.values().any(|v| *v == config_hash)),
            "the pod template carries the hash"
        );
    }

    #[test]
    fn the_spec_is_judged_before_the_secrets_and_pausing_last() {
        let mut instance = instance();
        let invalid = Invalid {
            problems: vec!["spec.replicas: too many".into()],
        };
        assert_eq!(
            outcome(plan(
                &instance,
                Err(invalid),
                "shop",
                &ReadSecrets::default(),
                "i"
            )),
            Some(Outcome::Invalid {
                reason: "InvalidSpec",
                message: "spec.replicas: too many".into()
            })
        );
        let rendered = validate(&instance).expect("fixture is valid");
        let only_one: ReadSecrets = [secret("orders-replication")].into_iter().collect();
        let missing = outcome(plan(
            &instance,
            Ok(rendered.clone()),
            "shop",
            &only_one,
            "i",
        ));
        assert!(
            matches!(&missing, Some(Outcome::Invalid { reason: "SecretMissing", message }) if message.contains("orders-clients")),
            "{missing:?}"
        );
        instance.spec.paused = true;
        assert_eq!(
            outcome(plan(&instance, Ok(rendered), "shop", &all_secrets(), "i")),
            Some(Outcome::Paused)
        );
    }
}
