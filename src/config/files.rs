//! Where configuration files are read from: the disk, as the server reads
//! its `--conf` directory, or memory, as the operator checks the files it
//! renders before any pod reads them (its root file system is read-only,
//! and the check is a pure function of the resource).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The three questions configuration loading asks of a file system.
pub trait ConfigFiles {
    /// The bytes of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
    /// The names of the directories directly under `dir` (Unicode names
    /// only: a destination is named by its directory).
    fn directories(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// The real file system.
pub struct Disk;

impl ConfigFiles for Disk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn directories(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.path().is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

/// Files held in memory, by absolute path.
#[derive(Debug, Clone, Default)]
pub struct InMemory {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl InMemory {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl ConfigFiles for InMemory {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    fn directories(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|path| path.strip_prefix(dir).ok())
            .filter_map(|rest| {
                let mut parts = rest.components();
                let first = parts.next()?;
                // A directory: something lies below the first component.
                parts.next()?;
                first.as_os_str().to_str().map(str::to_owned)
            })
            .collect();
        names.dedup();
        if names.is_empty() && !self.files.keys().any(|p| p.starts_with(dir)) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory",
            ));
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_lists_directories_once_and_reads_files() {
        let files = InMemory::new()
            .with("/conf/canal.properties", "a=1")
            .with("/conf/orders/instance.properties", "b=2")
            .with("/conf/orders/other.txt", "")
            .with("/conf/users/instance.properties", "c=3");
        assert_eq!(
            files.directories(Path::new("/conf")).unwrap(),
            ["orders", "users"]
        );
        assert!(files.is_file(Path::new("/conf/orders/instance.properties")));
        assert!(!files.is_file(Path::new("/conf/orders")));
        assert_eq!(
            files.read(Path::new("/conf/canal.properties")).unwrap(),
            b"a=1"
        );
        assert_eq!(
            files.read(Path::new("/conf/missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(files.directories(Path::new("/elsewhere")).is_err());
    }
}
