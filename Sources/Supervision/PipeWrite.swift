#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of writing to a pipe or socket whose reader may be gone.
public enum PipeWriteResult: Equatable, Sendable {
    case written
    /// The reader is gone (EPIPE, ECONNRESET) or the descriptor is closed (EBADF).
    case peerGone(errno: Int32)
    /// Another error of write(2).
    case failed(errno: Int32)
}

/// Writes to a descriptor without a signal ever being raised for a reader that went away:
/// the result says so instead (`SignalPolicy` keeps SIGPIPE ignored).
public enum PipeWrite {
    /// Writes all of `bytes` to `descriptor`, retrying short writes and EINTR.
    public static func all(_ bytes: [UInt8], to descriptor: Int32) -> PipeWriteResult {
        SignalPolicy.installForSupervisor()
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if count >= 0 {
                offset += count
                continue
            }
            let error = errno
            switch error {
            case EINTR, EAGAIN: continue
            case EPIPE, ECONNRESET, EBADF: return .peerGone(errno: error)
            default: return .failed(errno: error)
            }
        }
        return .written
    }

    /// What `errno` says, in words.
    public static func describe(_ error: Int32) -> String {
        String(cString: strerror(error))
    }
}
