//! An exclusive lock on an output path (`--out`), so two processes never write the
//! same run directory at once. The lock is the file `<out>.lock` beside the output
//! (not inside it: outputs are replaced atomically by renaming a temp dir over them).
//! It records the holder's pid; a lock whose pid is no longer alive (a killed run) is
//! stale and taken over, so `kill -9` never blocks a later `--resume`.

use anyhow::{bail, Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Held while alive; removes the lock file on drop.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
}

/// `<out>.lock`.
pub fn lock_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "out".into());
    name.push(".lock");
    out.with_file_name(name)
}

impl OutLock {
    /// Takes the lock on `out`, or fails naming the live process that holds it.
    pub fn acquire(out: &Path) -> Result<OutLock> {
        let path = lock_path(out);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
                    tracing::debug!("locked {}", path.display());
                    return Ok(OutLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid_alive(pid) => bail!(
                            "{} is in use by another onerec process (pid {pid}, lock file {}); wait for it to finish, \
                             or use another --out",
                            out.display(),
                            path.display()
                        ),
                        // A pid still being written: the holder is alive, it just started.
                        Err(_) if text.is_empty() && recently_modified(&path) => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        _ => {
                            tracing::warn!(
                                "removing stale lock {} (pid {:?} is not running)",
                                path.display(),
                                text.trim()
                            );
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create lock file {}", path.display())),
            }
        }
        bail!(
            "{}: could not take the lock {} (it keeps reappearing); is another onerec writing there?",
            out.display(),
            path.display()
        )
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn recently_modified(path: &Path) -> bool {
    let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    age.is_some_and(|a| a.as_secs() < 2)
}

/// Whether process `pid` exists (Linux: `/proc/<pid>`; elsewhere `kill -0`).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if Path::new("/proc/self").exists() {
        return proc_alive(pid);
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A zombie (killed but not yet reaped) counts as dead.
fn proc_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_refused_stale_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("run");
        let held = OutLock::acquire(&out).unwrap();
        let err = OutLock::acquire(&out).unwrap_err();
        assert!(format!("{err:#}").contains("in use by another onerec process"), "{err:#}");
        drop(held);
        assert!(!lock_path(&out).exists());
        // A dead pid: pid_max on Linux is at most 2^22.
        std::fs::write(lock_path(&out), "4194999\n").unwrap();
        let _l = OutLock::acquire(&out).unwrap();
        assert_eq!(std::fs::read_to_string(lock_path(&out)).unwrap().trim(), std::process::id().to_string());
    }
}
