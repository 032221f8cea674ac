//! The few libc calls fink makes, each behind a safe function. Together
//! with `cluster/ffi.rs` this is the only place with `unsafe` code.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Start `cmd` in a session of its own: a child that outlives fink (a
/// Kafka broker) then ignores the terminal's ^C and hang-up.
pub fn detach_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls
    // only setsid(2), which is async-signal-safe and touches no memory of
    // the parent; its failure (already a group leader) is harmless.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Send `signal` to process `pid`; false if it could not be sent (no such
/// process, not ours).
pub fn send_signal(pid: i32, signal: i32) -> bool {
    if pid <= 0 {
        // 0 and negative pids address process groups: never meant here.
        return false;
    }
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// End the process now with `code`, after flushing stdout, without running
/// atexit handlers. `fink run` ends this way: a reload job the supervisor
/// did not wait for (it never waits for one) may still hold librdkafka
/// clients, and OpenSSL's atexit cleanup under their threads can crash the
/// process after its work is done, turning a clean stop into a signal.
pub fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit(2) takes an integer and never returns; what it skips
    // (atexit handlers, destructors) holds nothing fink still needs:
    // checkpoints and the summary are written before this call.
    unsafe { libc::_exit(code as i32) }
}

/// Whether a process with this pid exists (it may be a zombie).
pub fn process_exists(pid: i32) -> bool {
    send_signal(pid, 0)
}

pub use libc::{SIGKILL, SIGTERM};

/// Die quietly on a closed pipe (`fink topics | head`), like other CLIs,
/// instead of panicking on the failed write.
pub fn default_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE installs no
    // handler of ours; called once at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// glibc gives each thread that allocates its own malloc arena; with a
/// thread per stream plus librdkafka's, freed buffers stay spread over many
/// arenas and peak RSS grows with the number of streams (ten streams, when
/// Rust's allocations went through glibc too: 470 MB with the default, 389
/// MB with two arenas). Rust's now go through jemalloc (`main.rs`); this
/// still bounds librdkafka's C allocations (its batches and compression
/// buffers). An explicit `MALLOC_ARENA_MAX` in the environment wins.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; called before
        // the stream threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_reach_only_real_single_processes() {
        assert!(process_exists(std::process::id() as i32));
        assert!(!send_signal(0, 0), "process groups are refused");
        assert!(!send_signal(-1, 0));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(send_signal(child.id() as i32, SIGTERM));
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
