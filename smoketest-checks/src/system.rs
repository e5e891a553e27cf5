//! System checks: [`DiskSpaceCheck`] (free disk under a path), [`MemoryCheck`] (available
//! memory, within the container's cgroup limit where Linux has one) and
//! [`WritableDirCheck`] (a directory really is writable).
//!
//! Everything that touches the system runs on tokio's blocking pool (`spawn_blocking`),
//! never on the async threads. Failures have kind `resource`; the message says what was
//! found and what the threshold is, and the measured values are observed.
//!
//! The writable-directory check writes a small uniquely named file, reads it back and
//! deletes it; the deletion is also registered with [`Context::defer`], so the file is
//! removed whatever happens to the check (failure, panic, timeout).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::system::{DiskSpaceCheck, MemoryCheck, WritableDirCheck};
//! use smoketest_core::{Context, Outcome, SmokeCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tmp = std::env::temp_dir();
//! let mut ctx = Context::detached("system", Duration::from_secs(5));
//! WritableDirCheck::new(&tmp).run(&mut ctx).await.unwrap();
//! assert!(ctx.finish().await.is_empty());
//!
//! let disk = DiskSpaceCheck::new(&tmp).min_free_bytes(1).min_free_percent(0.001);
//! assert_eq!(disk.run(&mut ctx).await.unwrap(), Outcome::Pass);
//! assert!(ctx.observed().contains_key("free_bytes"));
//!
//! let memory = MemoryCheck::new().min_available_bytes(1);
//! assert_eq!(memory.run(&mut ctx).await.unwrap(), Outcome::Pass);
//! # }
//! ```

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};

use crate::meta::{Meta, name_part};

/// `1.5 GiB`, `300 MiB`, `12 KiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn resource(message: String, suggestion: &'static str) -> CheckError {
    CheckError::new(ErrorKind::Resource, message).with_suggestion(suggestion)
}

/// Passes while the filesystem holding a path has enough free space. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct DiskSpaceCheck {
    meta: Meta,
    path: PathBuf,
    min_free_bytes: Option<u64>,
    min_free_percent: Option<f64>,
}

impl DiskSpaceCheck {
    /// Check the filesystem holding `path`; by default it must have 5 % free. Named
    /// `system::disk::{path}` (path components joined with `.`: `system::disk::var.lib.app`), tagged `system`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        DiskSpaceCheck {
            meta: Meta::new(
                format!("system::disk::{}", name_part(&path.to_string_lossy())),
                "system",
            ),
            path,
            min_free_bytes: None,
            min_free_percent: Some(5.0),
        }
    }

    /// Require at least this many bytes available to the service.
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = Some(bytes);
        self
    }

    /// Require at least this percentage (0–100) of the filesystem available.
    pub fn min_free_percent(mut self, percent: f64) -> Self {
        self.min_free_percent = Some(percent);
        self
    }
}

meta_builders!(DiskSpaceCheck);

/// (mount point, available, total) of the filesystem holding `path`.
fn disk_of(path: &Path) -> Result<(PathBuf, u64, u64), CheckError> {
    let canonical = path.canonicalize().map_err(|e| {
        resource(
            format!("cannot measure free disk under `{}`: {e}", path.display()),
            "Check that the path exists on this host (a missing volume mount?) and is readable by the service.",
        )
    })?;
    let disks = sysinfo::Disks::new_with_refreshed_list().map_err(|e| {
        resource(
            format!("cannot list the mounted filesystems: {e}"),
            "Check that /proc/mounts is readable in this container.",
        )
    })?;
    disks
        .iter()
        .filter(|d| canonical.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| {
            (
                d.mount_point().to_path_buf(),
                d.available_space(),
                d.total_space(),
            )
        })
        .ok_or_else(|| {
            resource(
                format!(
                    "no mounted filesystem found holding `{}`",
                    canonical.display()
                ),
                "Check the path and that /proc/mounts is readable in this container.",
            )
        })
}

#[async_trait::async_trait]
impl SmokeCheck for DiskSpaceCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let path = self.path.clone();
        let (mount, free, total) = tokio::task::spawn_blocking(move || disk_of(&path)).await??;
        let percent = if total == 0 {
            0.0
        } else {
            free as f64 * 100.0 / total as f64
        };
        ctx.observe("mount_point", mount.display().to_string());
        ctx.observe("free_bytes", free);
        ctx.observe("total_bytes", total);
        ctx.observe("free_percent", (percent * 10.0).round() / 10.0);
        let too_little = match (self.min_free_bytes, self.min_free_percent) {
            (Some(min), _) if free < min => Some(bytes(min)),
            (_, Some(min)) if percent < min => Some(format!("{min}%")),
            _ => None,
        };
        if let Some(want) = too_little {
            return Err(resource(
                format!(
                    "only {} free ({percent:.1}% of {}) on {} (holding `{}`), want at least {want}",
                    bytes(free),
                    bytes(total),
                    mount.display(),
                    self.path.display()
                ),
                "Free up space (old logs, caches, temporary files, unused images) or grow the volume before writes start failing.",
            ));
        }
        Ok(Outcome::Pass)
    }
}

/// Passes while enough memory is available — within the cgroup limit when the service
/// runs under one (a container), else on the host. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct MemoryCheck {
    meta: Meta,
    min_available_bytes: Option<u64>,
    min_available_percent: Option<f64>,
}

impl MemoryCheck {
    /// By default at least 5 % must be available. Named `system::memory`, tagged `system`.
    pub fn new() -> Self {
        MemoryCheck {
            meta: Meta::new("system::memory", "system"),
            min_available_bytes: None,
            min_available_percent: Some(5.0),
        }
    }

    /// Require at least this many bytes available.
    pub fn min_available_bytes(mut self, bytes: u64) -> Self {
        self.min_available_bytes = Some(bytes);
        self
    }

    /// Require at least this percentage (0–100) of the memory limit available.
    pub fn min_available_percent(mut self, percent: f64) -> Self {
        self.min_available_percent = Some(percent);
        self
    }
}

impl Default for MemoryCheck {
    fn default() -> Self {
        Self::new()
    }
}

meta_builders!(MemoryCheck);

/// (available, total, limited by a cgroup).
fn memory() -> Result<(u64, u64, bool), CheckError> {
    let mut system = sysinfo::System::new().map_err(|e| {
        resource(
            format!("cannot read the memory statistics: {e}"),
            "Check that /proc/meminfo is readable in this container.",
        )
    })?;
    system.refresh_memory();
    let (available, total) = (system.available_memory(), system.total_memory());
    match system.cgroup_limits() {
        // A cgroup limit below the host's memory is the one the kernel enforces on us.
        Some(limits) if limits.total_memory > 0 && limits.total_memory < total => {
            Ok((limits.free_memory.min(available), limits.total_memory, true))
        }
        _ => Ok((available, total, false)),
    }
}

#[async_trait::async_trait]
impl SmokeCheck for MemoryCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let (available, total, cgroup) = tokio::task::spawn_blocking(memory).await??;
        let percent = if total == 0 {
            0.0
        } else {
            available as f64 * 100.0 / total as f64
        };
        ctx.observe("available_bytes", available);
        ctx.observe("total_bytes", total);
        ctx.observe("available_percent", (percent * 10.0).round() / 10.0);
        ctx.observe("cgroup_limited", cgroup);
        let too_little = match (self.min_available_bytes, self.min_available_percent) {
            (Some(min), _) if available < min => Some(bytes(min)),
            (_, Some(min)) if percent < min => Some(format!("{min}%")),
            _ => None,
        };
        if let Some(want) = too_little {
            let of = if cgroup {
                "of the container's limit"
            } else {
                "of the host's memory"
            };
            return Err(resource(
                format!(
                    "only {} memory available ({percent:.1}% {of}, {}), want at least {want}",
                    bytes(available),
                    bytes(total)
                ),
                "Find what holds the memory (this service's heap, caches, other processes), or raise the memory limit before the OOM killer acts.",
            ));
        }
        Ok(Outcome::Pass)
    }
}

/// Passes when a file can be created, written, read back and deleted in a directory. See
/// the [module documentation](self).
#[derive(Debug, Clone)]
pub struct WritableDirCheck {
    meta: Meta,
    dir: PathBuf,
}

impl WritableDirCheck {
    /// Check `dir`. Named `system::writable::{dir}` (`system::writable::tmp`), tagged `system`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        WritableDirCheck {
            meta: Meta::new(
                format!("system::writable::{}", name_part(&dir.to_string_lossy())),
                "system",
            ),
            dir,
        }
    }
}

meta_builders!(WritableDirCheck);

fn write_read_delete(path: &Path, payload: &[u8]) -> Result<(), (&'static str, io::Error)> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ("create a file", e))?;
    file.write_all(payload).map_err(|e| ("write", e))?;
    file.sync_all().map_err(|e| ("sync", e))?;
    drop(file);
    let mut read = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut read))
        .map_err(|e| ("read back", e))?;
    if read != payload {
        return Err((
            "read back",
            io::Error::other(format!(
                "got {} bytes that differ from the {} written",
                read.len(),
                payload.len()
            )),
        ));
    }
    std::fs::remove_file(path).map_err(|e| ("delete", e))
}

#[async_trait::async_trait]
impl SmokeCheck for WritableDirCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = self
            .dir
            .join(format!(".smoketest-{}-{nanos}", std::process::id()));
        let cleanup = path.clone();
        ctx.defer(async move {
            match tokio::fs::remove_file(&cleanup).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CheckError::new(
                    ErrorKind::Cleanup,
                    format!("could not delete `{}`: {e}", cleanup.display()),
                )),
                _ => Ok(()),
            }
        });
        let payload = format!("smoketest {nanos}\n").into_bytes();
        let file = path.clone();
        let result =
            tokio::task::spawn_blocking(move || write_read_delete(&file, &payload)).await?;
        if let Err((step, e)) = result {
            return Err(resource(
                format!(
                    "`{}` is not writable: could not {step} `{}`: {e}",
                    self.dir.display(),
                    path.display()
                ),
                "Check that the directory exists (a missing volume?), its owner and permissions for the service's user, free space and inodes, and that the filesystem is not mounted read-only.",
            ));
        }
        Ok(Outcome::Pass)
    }
}
