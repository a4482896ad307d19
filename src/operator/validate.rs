//! Checks a CanalInstance beyond its schema before anything is built: the
//! CRD's CEL rules again (an API server may run an older CRD), the extra
//! properties, and the rendered configuration read back by canal-server's
//! own configuration loader, so a pod never starts with a configuration
//! the server refuses.

use std::collections::HashMap;
use std::path::PathBuf;

use super::build::properties::{self, Rendered};
use super::crd::CanalInstance;
use crate::config::{self, INSTANCE_FILE, SERVER_FILE};

/// Everything wrong with an instance, each naming the field to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Invalid {
    pub problems: Vec<String>,
}

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
    if let Err(problem) = load_rendered(&instance.destination(), &rendered) {
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(rendered)
    } else {
        Err(Invalid { problems })
    }
}

/// Reads the rendered files the way a pod will, with stand-in values for
/// the variables Secrets fill.
fn load_rendered(destination: &str, rendered: &Rendered) -> Result<(), String> {
    let dir = TempDir::new().map_err(|e| format!("cannot check the configuration: {e}"))?;
    let write = |path: PathBuf, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap_or(&dir.0))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot check the configuration: {e}"))
    };
    write(dir.0.join(SERVER_FILE), &rendered.canal_properties)?;
    write(
        dir.0.join(destination).join(INSTANCE_FILE),
        &rendered.instance_properties,
    )?;
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
    config::load(&dir.0, &env).map(|_| ()).map_err(|e| {
        format!(
            "canal-server would refuse this configuration: {}",
            strip_paths(&e.to_string(), &dir.0)
        )
    })
}

/// Messages name the file the pod reads, not the scratch directory.
fn strip_paths(message: &str, dir: &std::path::Path) -> String {
    message.replace(&format!("{}/", dir.display()), "")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "canal-operator-validate-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
