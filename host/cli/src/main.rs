//! `connector-host`: load a connector plugin, check its configuration, run it.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    connector_host_cli::main()
}

/// Pages of tens of megabytes are allocated on one thread and freed on another in a
/// pipelined run. glibc then keeps a heap per thread and holds on to freed pages:
/// with two arenas, peak RSS of a 1,000,000-row run fell from about 650 to 420 MiB
/// (connector-bench). The library leaves this choice to its embedder.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
