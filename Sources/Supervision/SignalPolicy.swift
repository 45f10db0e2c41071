#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a Nestor process that supervises children and talks over pipes and sockets treats the
/// signals those peers can cause.
///
/// | signal | cause | what Nestor does |
/// | --- | --- | --- |
/// | SIGPIPE | a write to a pipe or socket whose reader is gone (an LPAR process that just died) | ignored: the write fails with EPIPE and the writer treats the peer as gone |
/// | SIGXFSZ | a write beyond RLIMIT_FSIZE (a disk image or a store growing past the limit) | ignored: the write fails with EFBIG, reported as that write's error |
/// | SIGCHLD | a child (an LPAR process) ended | left at its default (discarded): SIG_IGN would reap children by itself and leave the supervisor without their exit status |
/// | SIGTERM, SIGINT | the operator or the service manager | graceful shutdown (swift-service-lifecycle), LPAR processes stopped first |
/// | SIGHUP | the controlling terminal went away | left at its default (the process ends), as for any daemon started from a terminal; the systemd units start it without one |
/// | SIGTTOU, SIGTTIN | a background process touching its terminal | ignored: a supervisor started in the background never stops itself for its terminal |
/// | SIGSEGV, SIGBUS, SIGILL | a bug in this process | left at their default: the process ends; LPAR processes see their stdin close and stop |
///
/// An LPAR process cannot signal its supervisor through the pipes; the signals above are the
/// ones a child's death or a full disk cause by themselves.
public enum SignalPolicy {
    /// Installs the policy above; safe to call more than once and from any thread.
    public static func installForSupervisor() {
        _ = installed
    }

    private static let installed: Bool = {
        for number in [SIGPIPE, SIGXFSZ, SIGTTOU, SIGTTIN] { signal(number, SIG_IGN) }
        return true
    }()

    /// Whether SIGPIPE is ignored in this process now.
    public static var brokenPipeIgnored: Bool {
        var current = sigaction()
        sigaction(SIGPIPE, nil, &current)
        #if canImport(Glibc)
        let handler = current.__sigaction_handler.sa_handler
        #else
        let handler = current.__sigaction_u.__sa_handler
        #endif
        return unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }
}
