//! Resource attribute keys produced by this module (OpenTelemetry semantic
//! conventions).

/// Logical name of the service (`OTEL_SERVICE_NAME`, else from
/// `OTEL_RESOURCE_ATTRIBUTES`, else the executable name).
pub const SERVICE_NAME: &str = "service.name";
/// Process identifier (host pid namespace), an integer.
pub const PROCESS_PID: &str = "process.pid";
/// Base name of the executable (or `comm` when the `exe` link is unreadable).
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
/// Full path of the executable, as the process sees it.
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
/// The command line, arguments joined by spaces (bounded).
pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
/// User name owning the process (host processes only).
pub const PROCESS_OWNER: &str = "process.owner";
/// Full (64 hex characters) container id.
pub const CONTAINER_ID: &str = "container.id";
/// Host name.
pub const HOST_NAME: &str = "host.name";
/// Machine id (`/etc/machine-id`).
pub const HOST_ID: &str = "host.id";
/// CPU architecture (`amd64`, `arm64`, ...).
pub const HOST_ARCH: &str = "host.arch";
/// Always `linux`.
pub const OS_TYPE: &str = "os.type";
/// Kernel release.
pub const OS_VERSION: &str = "os.version";
/// Human-readable OS description (`PRETTY_NAME` of os-release).
pub const OS_DESCRIPTION: &str = "os.description";
/// Name of the telemetry distribution: this agent.
pub const TELEMETRY_DISTRO_NAME: &str = "telemetry.distro.name";
/// Version of the telemetry distribution.
pub const TELEMETRY_DISTRO_VERSION: &str = "telemetry.distro.version";

/// Value of [`TELEMETRY_DISTRO_NAME`].
pub const DISTRO_NAME: &str = "agent";
/// Value of [`TELEMETRY_DISTRO_VERSION`].
pub const DISTRO_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a key from a process's `OTEL_RESOURCE_ATTRIBUTES` must be ignored
/// because the agent detects it itself (`service.name` is taken apart).
pub fn is_reserved(key: &str) -> bool {
    const PREFIXES: [&str; 4] = ["process.", "host.", "os.", "telemetry."];
    key == SERVICE_NAME || key == CONTAINER_ID || PREFIXES.iter().any(|p| key.starts_with(p))
}
