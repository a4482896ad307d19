//! Checks a CanalInstance beyond its schema before anything is built: the
//! CRD's CEL rules again (an API server may run an older CRD), the extra
//! properties, and the rendered configuration read back by canal-server's
//! own configuration loader, so a pod never starts with a configuration
//! the server refuses. Pure: the files are read back from memory (the
//! operator's root file system is read-only as the chart ships it).

use std::collections::HashMap;
use std::path::Path;

use super::build::labels::CONF_DIR;
use super::build::properties::{self, Rendered};
use super::crd::CanalInstance;
use crate::config::files::InMemory;
use crate::config::{self, INSTANCE_FILE, SERVER_FILE};

/// Everything wrong with an instance, each naming the field to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Invalid {
    /// One sentence per problem, each starting with the field to fix.
    pub problems: Vec<String>,
}

/// canal-server's own configuration loader refused the rendered files.
#[derive(Debug, thiserror::Error)]
#[error("canal-server would refuse this configuration: {0}")]
struct RefusedConfiguration(#[source] config::ConfigError);

/// The rendered configuration of `instance`, or everything wrong with it.
pub fn validate(instance: &CanalInstance) -> Result<Rendered, Invalid> {
    let mut problems = Vec::new();
    if let Err(errors) = instance.validate_cel() {
        problems.extend(errors.to_string().lines().map(str::to_owned));
    }
    for key in instance.spec.server.extra_properties.keys() {
        if let Err(why) = properties::check_extra_property(key) {
            problems.push(format!("spec.server.extraProperties: {why}"));
        }
    }
    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    let rendered = properties::render(instance);
    if let Err(refused) = load_rendered(&instance.destination(), &rendered) {
        problems.push(refused.to_string());
    }
    if problems.is_empty() {
        Ok(rendered)
    } else {
        Err(Invalid { problems })
    }
}

/// Reads the rendered files the way a pod will (from memory, at the paths
/// the pod mounts them), with stand-in values for the variables Secrets
/// fill.
fn load_rendered(destination: &str, rendered: &Rendered) -> Result<(), RefusedConfiguration> {
    let conf_dir = Path::new(CONF_DIR);
    let files = InMemory::new()
        .with(
            conf_dir.join(SERVER_FILE),
            rendered.canal_properties.as_str(),
        )
        .with(
            conf_dir.join(destination).join(INSTANCE_FILE),
            rendered.instance_properties.as_str(),
        );
    let env = HashMap::from([
        (
            "canal.instance.dbUsername".to_owned(),
            "from-secret".to_owned(),
        ),
        (
            "canal.instance.dbPassword".to_owned(),
            "from-secret".to_owned(),
        ),
    ]);
    config::load_from(&files, conf_dir, &env)
        .map(|_| ())
        .map_err(RefusedConfiguration)
}
