//! Where a key's value comes from: the environment, then the destination's
//! `instance.properties`, then `canal.properties` (canal's own precedence,
//! with its Docker image's environment variables on top), and the typed
//! readers that turn the text into values or a [`ConfigError`] naming it.
//!
//! Values may hold Spring-style `${name}` / `${name:default}` placeholders
//! (canal's stock `canal.file.data.dir = ${canal.conf.dir}`); they resolve
//! against the same layers, `canal.instance.destination` being the
//! destination's name.

use std::{collections::HashMap, path::Path};

use super::{
    error::{ConfigError, Origin},
    properties::Properties,
};

/// The placeholder canal's Spring files use for the destination's name.
const DESTINATION_PLACEHOLDER: &str = "canal.instance.destination";
/// Placeholders nest at most this deep (catches `a=${a}`).
const MAX_DEPTH: usize = 16;

/// One properties file and its path (for messages).
#[derive(Clone, Copy)]
pub(crate) struct File<'a> {
    pub path: &'a Path,
    pub props: &'a Properties,
}

/// A value found for a key, placeholders resolved, not yet trimmed.
pub(crate) struct Setting {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    pub fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.key.clone(),
            value: self.value.clone(),
            origin: self.origin.clone(),
            expected: expected.into(),
        }
    }
}

pub(crate) struct Layers<'a> {
    pub env: &'a HashMap<String, String>,
    pub instance: Option<File<'a>>,
    pub global: File<'a>,
    pub destination: Option<&'a str>,
}

enum Unresolved {
    Missing(String),
    TooDeep,
}

impl Layers<'_> {
    /// The unresolved text of `key` and where it was set.
    pub fn raw(&self, key: &str) -> Option<(String, Origin)> {
        if let Some(value) = self.env.get(key) {
            return Some((
                value.clone(),
                Origin::Env {
                    key: key.to_owned(),
                },
            ));
        }
        [self.instance, Some(self.global)]
            .into_iter()
            .flatten()
            .find_map(|file| {
                file.props.get(key).map(|p| {
                    (
                        p.value.clone(),
                        Origin::File {
                            path: file.path.to_owned(),
                            line: p.line,
                        },
                    )
                })
            })
    }

    /// The value of `key` with placeholders resolved; `None` when no layer
    /// sets it (an empty value counts as set).
    pub fn get(&self, key: &str) -> Result<Option<Setting>, ConfigError> {
        let Some((raw, origin)) = self.raw(key) else {
            return Ok(None);
        };
        match self.resolve(&raw, 0) {
            Ok(value) => Ok(Some(Setting {
                key: key.to_owned(),
                value,
                origin,
            })),
            Err(Unresolved::Missing(name)) => Err(ConfigError::Placeholder {
                key: key.to_owned(),
                value: raw,
                origin,
                name,
            }),
            Err(Unresolved::TooDeep) => Err(ConfigError::Invalid {
                key: key.to_owned(),
                value: raw,
                origin,
                expected: "placeholders that do not refer to themselves".to_owned(),
            }),
        }
    }

    /// Resolves placeholders, unset ones becoming empty (for warnings only).
    pub fn resolve_lenient(&self, text: &str) -> String {
        self.resolve(text, 0).unwrap_or_default()
    }

    fn resolve(&self, text: &str, depth: usize) -> Result<String, Unresolved> {
        if !text.contains("${") {
            return Ok(text.to_owned());
        }
        if depth > MAX_DEPTH {
            return Err(Unresolved::TooDeep);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = placeholder_len(&rest[start..]) else {
                // No closing brace: literal text.
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let inner = &rest[start + 2..start + len - 1];
            let (name, default) = split_default(inner);
            let value = if name == DESTINATION_PLACEHOLDER && self.destination.is_some() {
                self.destination.map(str::to_owned)
            } else {
                self.raw(name).map(|(v, _)| v)
            };
            match (value, default) {
                (Some(v), _) | (None, Some(v)) => out.push_str(&self.resolve(&v, depth + 1)?),
                (None, None) => return Err(Unresolved::Missing(name.to_owned())),
            }
            rest = &rest[start + len..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A trimmed string; empty or unset is `None`.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self
            .get(key)?
            .map(|s| s.value.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// The trimmed value parsed by `parse`; empty or unset is `default`.
    pub fn parse<T>(
        &self,
        key: &str,
        default: T,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let Some(setting) = self.get(key)? else {
            return Ok(default);
        };
        let text = setting.value.trim();
        if text.is_empty() {
            return Ok(default);
        }
        parse(text).ok_or_else(|| setting.invalid(expected))
    }

    /// `true` / `false`, any case. (Java's `Boolean.valueOf` takes anything
    /// else as false; a typo there should stop start-up instead.)
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse(key, default, "true or false", |t| {
            if t.eq_ignore_ascii_case("true") {
                Some(true)
            } else if t.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        })
    }

    /// A whole number in `min..=max`.
    pub fn number(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
        expected: &str,
    ) -> Result<u64, ConfigError> {
        self.parse(key, default, expected, |t| {
            t.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
        })
    }

    pub fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        self.parse(key, default, "a TCP port number (1-65535)", parse_port)
    }

    /// Milliseconds as a [`std::time::Duration`], at least `min_ms`.
    pub fn millis(
        &self,
        key: &str,
        default_ms: u64,
        min_ms: u64,
    ) -> Result<std::time::Duration, ConfigError> {
        let expected = format!("a number of milliseconds (at least {min_ms})");
        self.number(key, default_ms, min_ms, u64::MAX, &expected)
            .map(std::time::Duration::from_millis)
    }
}

pub(crate) fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Walks `text` counting the `${` openers it passes; every other byte goes
/// to `stop` with the depth (which `stop` lowers at a closing brace).
/// Returns the index of the first byte `stop` accepts.
fn scan_nested(text: &str, mut stop: impl FnMut(u8, &mut usize) -> bool) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"${") {
            depth += 1;
            i += 2;
            continue;
        }
        if stop(bytes[i], &mut depth) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Length of the `${...}` at the start of `text`, nested placeholders
/// included; `None` when it is not closed.
fn placeholder_len(text: &str) -> Option<usize> {
    let end = scan_nested(text, |byte, depth| {
        if byte != b'}' {
            return false;
        }
        *depth -= 1;
        *depth == 0
    })?;
    Some(end + 1)
}

/// `name:default` split at the first colon outside nested placeholders.
fn split_default(inner: &str) -> (&str, Option<String>) {
    let colon = scan_nested(inner, |byte, depth| match byte {
        b'}' => {
            *depth = depth.saturating_sub(1);
            false
        }
        b':' => *depth == 0,
        _ => false,
    });
    match colon {
        Some(i) => (&inner[..i], Some(inner[i + 1..].to_owned())),
        None => (inner, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_layers<R>(global: &str, env: &[(&str, &str)], f: impl FnOnce(&Layers) -> R) -> R {
        let props = Properties::parse(global).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let layers = Layers {
            env: &env,
            instance: None,
            global: File {
                path: Path::new("/conf/canal.properties"),
                props: &props,
            },
            destination: Some("example"),
        };
        f(&layers)
    }

    #[test]
    fn placeholders() {
        let text = "canal.conf.dir=../conf\n\
                    canal.file.data.dir=${canal.conf.dir}\n\
                    tsdb=${canal.file.data.dir:x}/${canal.instance.destination:}/h2\n\
                    d=${unset:${canal.conf.dir}/y}\n\
                    open=${oops\n\
                    missing=${nope}\n\
                    loop=${loop}\n";
        with_layers(text, &[("canal.conf.dir", "/env")], |l| {
            let get = |k: &str| l.get(k).map(|s| s.map(|s| s.value));
            assert_eq!(get("canal.file.data.dir").unwrap().unwrap(), "/env");
            assert_eq!(get("tsdb").unwrap().unwrap(), "/env/example/h2");
            assert_eq!(get("d").unwrap().unwrap(), "/env/y");
            assert_eq!(get("open").unwrap().unwrap(), "${oops");
            let err = get("missing").unwrap_err().to_string();
            assert!(err.contains("${nope}") && err.contains("line 6"), "{err}");
            assert!(get("loop").is_err());
            assert_eq!(l.resolve_lenient("a${nope}b"), "");
        });
    }

    #[test]
    fn typed_values() {
        let text = "t=TRUE\nf=no\nn= 42 \nempty=\nport=11x11\n";
        with_layers(text, &[], |l| {
            assert!(l.bool("t", false).unwrap());
            let err = l.bool("f", false).unwrap_err().to_string();
            assert_eq!(
                err,
                "f = \"no\" in /conf/canal.properties line 2: expected true or false"
            );
            assert_eq!(l.number("n", 0, 0, 100, "n").unwrap(), 42);
            assert_eq!(l.number("empty", 7, 0, 100, "n").unwrap(), 7);
            assert_eq!(l.number("absent", 8, 0, 100, "n").unwrap(), 8);
            assert!(l.number("n", 0, 0, 10, "n").is_err());
            assert_eq!(l.string("empty").unwrap(), None);
            assert_eq!(
                l.port("port", 1).unwrap_err().to_string(),
                "port = \"11x11\" in /conf/canal.properties line 5: \
                 expected a TCP port number (1-65535)"
            );
        });
    }
}
