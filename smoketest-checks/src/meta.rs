//! Name, tags, timeout and latency budget shared by every built-in check, and the builder
//! methods for them.

use std::time::Duration;

/// How a check is registered: its name, tags and own timeout.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) warn_after: Option<Duration>,
    /// Whether the check reaches a system outside the process: it then always reports the
    /// tag `external`, even after `.tags(…)` replaced the others, so that a liveness group
    /// refuses it (`smoketest::Group::allow_external_dependencies`).
    pub(crate) external: bool,
}

impl Meta {
    pub(crate) fn new(name: impl Into<String>, tag: &str) -> Self {
        Meta {
            name: name.into(),
            tags: vec![tag.to_string()],
            timeout: None,
            warn_after: None,
            external: false,
        }
    }

    /// A check of a network service, broker or database: tagged `tag` and `external`.
    pub(crate) fn external(name: impl Into<String>, tag: &str) -> Self {
        Meta {
            external: true,
            ..Meta::new(name, tag)
        }
    }

    pub(crate) fn tags(&self) -> Vec<String> {
        let mut tags = self.tags.clone();
        if self.external && !tags.iter().any(|t| t == "external") {
            tags.push("external".to_string());
        }
        tags
    }
}

/// A default name part made servable as `/smoketest/{name}`: a path's components joined
/// with `.` (`/var/lib/app` → `var.lib.app`, `/` → `root`), and white space, control
/// characters, `?` and `#` replaced by `_`.
pub(crate) fn name_part(text: &str) -> String {
    let joined = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join(".");
    let cleaned: String = joined
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '?' || c == '#' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "root".to_string()
    } else {
        cleaned
    }
}

/// Adds `.name()`, `.tag()`, `.tags()`, `.timeout()` and `.warn_after()` to a check type
/// with a `meta` field.
macro_rules! meta_builders {
    ($ty:ty) => {
        impl $ty {
            /// Set the check's name, as shown in reports and used in `/smoketest/{name}`.
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.meta.name = name.into();
                self
            }

            /// Add a tag, for `?tag=` selection.
            pub fn tag(mut self, tag: impl Into<String>) -> Self {
                self.meta.tags.push(tag.into());
                self
            }

            /// Replace the tags (the default is one tag naming the check's family). Checks of
            /// external systems (network, brokers) keep the tag `external` regardless.
            pub fn tags<I, T>(mut self, tags: I) -> Self
            where
                I: IntoIterator<Item = T>,
                T: Into<String>,
            {
                self.meta.tags = tags.into_iter().map(Into::into).collect();
                self
            }

            /// Set this check's own timeout (default: the registry's).
            pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
                self.meta.timeout = Some(timeout);
                self
            }

            /// Set this check's latency budget: a pass slower than `budget` is reported as
            /// `warn` with kind `slow` (default: the registry's).
            pub fn warn_after(mut self, budget: std::time::Duration) -> Self {
                self.meta.warn_after = Some(budget);
                self
            }
        }
    };
}

/// The three `SmokeCheck` metadata methods, read from the `meta` field.
macro_rules! meta_methods {
    () => {
        fn name(&self) -> &str {
            &self.meta.name
        }

        fn tags(&self) -> Vec<String> {
            self.meta.tags()
        }

        fn timeout(&self) -> Option<std::time::Duration> {
            self.meta.timeout
        }

        fn warn_after(&self) -> Option<std::time::Duration> {
            self.meta.warn_after
        }
    };
}

/// The time a check may spend on its own work: what is left before the deadline, less a
/// margin so the check reports its own diagnosis before the runner's timeout cancels it.
#[allow(dead_code)]
pub(crate) fn budget(ctx: &smoketest_core::Context) -> Duration {
    let remaining = ctx.remaining();
    remaining.saturating_sub((remaining / 10).min(Duration::from_millis(100)))
}

/// Milliseconds as the report shows them.
#[allow(dead_code)]
pub(crate) fn ms(d: Duration) -> f64 {
    smoketest_core::report::millis(d)
}

/// A duration for messages: `300ms`, `2s`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::name_part;

    #[test]
    fn name_parts_are_servable() {
        assert_eq!(name_part("/var/lib/app/"), "var.lib.app");
        assert_eq!(name_part("/"), "root");
        assert_eq!(name_part("db.internal:5432"), "db.internal:5432");
        assert_eq!(name_part("a b?c#d"), "a_b_c_d");
    }
}
